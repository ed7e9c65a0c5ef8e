//! Stocktakes in the UI: the list (and opening one), a stocktake's page (progress per cabinet,
//! the missing and unexpected lists, close, the report), and the scan page made for a phone and
//! a barcode scanner (the scanning itself is `assets/app.js` posting to the REST API). The rules
//! live in `service::stocktakes`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{CurrentUser, Layout, Posted};
use crate::auth::Role;
use crate::service::audit_log;
use crate::service::stocktakes::{self, NewStocktake, Stocktake};
use crate::web::error::WebError;
use crate::web::{WebState, templates};

#[derive(Serialize)]
struct ListPage {
    layout: Layout,
    stocktakes: Vec<Stocktake>,
}

/// `GET /stocktakes`.
pub async fn list(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let page =
        ListPage { layout: user.layout(&state, "stocktakes"), stocktakes: stocktakes::list(&state.app.db).await? };
    Ok(templates::render("stocktakes.html", &page)?.into_response())
}

/// The form that opens a stocktake: a name and the list filters of its scope.
#[derive(Debug, Deserialize)]
pub struct OpenForm {
    name: String,
    #[serde(default)]
    idc: String,
    #[serde(default)]
    q: String,
}

/// `POST /stocktakes` (editor).
pub async fn open(State(state): State<Arc<WebState>>, posted: Posted<OpenForm>) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Editor)?;
    let mut scope = Map::new();
    for (key, value) in [("idc", &posted.form.idc), ("q", &posted.form.q)] {
        if !value.trim().is_empty() {
            scope.insert(key.to_owned(), Value::String(value.trim().to_owned()));
        }
    }
    let source = user.session.principal().source();
    let opened =
        stocktakes::open(&state.app.db, NewStocktake { name: posted.form.name.clone(), scope }, &source).await?;
    let detail = format!("{} ({}): {} expected", opened.id, opened.name, opened.counts.expected);
    audit_log::record_from(&state.app.db, &user.session.name, "stocktake.open", &detail, user.client_ip.as_deref())
        .await?;
    Ok(Redirect::to(&format!("/stocktakes/{}/scan", opened.id)).into_response())
}

#[derive(Serialize)]
struct DetailPage {
    layout: Layout,
    stocktake: Stocktake,
    cabinets: Vec<(String, i64, i64)>,
    can_close: bool,
}

/// `GET /stocktakes/{id}`.
pub async fn detail(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let stocktake = stocktakes::get(&state.app.db, id).await?;
    let source = user.session.principal().source();
    let can_close = stocktake.closed_at.is_none()
        && (user.session.role >= Role::Admin || (user.session.role >= Role::Editor && stocktake.opened_by == source));
    let page = DetailPage {
        layout: user.layout(&state, "stocktakes"),
        cabinets: stocktakes::progress_by_cabinet(&stocktake),
        stocktake,
        can_close,
    };
    Ok(templates::render("stocktake.html", &page)?.into_response())
}

/// `POST /stocktakes/{id}/close`.
pub async fn close(
    State(state): State<Arc<WebState>>,
    Path(id): Path<i64>,
    posted: Posted<Map<String, Value>>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Editor)?;
    let source = user.session.principal().source();
    let closed = stocktakes::close(&state.app.db, id, &source, user.session.role >= Role::Admin).await?;
    let detail = format!("{} ({})", closed.id, closed.name);
    audit_log::record_from(&state.app.db, &user.session.name, "stocktake.close", &detail, user.client_ip.as_deref())
        .await?;
    Ok(Redirect::to(&format!("/stocktakes/{id}")).into_response())
}

#[derive(Serialize)]
struct ScanPage {
    layout: Layout,
    stocktake: Stocktake,
}

/// `GET /stocktakes/{id}/scan`: the scan page (editor).
pub async fn scan(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    user.require(Role::Editor)?;
    let mut stocktake = stocktakes::get(&state.app.db, id).await?;
    // The page needs the counts, not every item.
    stocktake.items.clear();
    stocktake.sightings.clear();
    let page = ScanPage { layout: user.layout(&state, "stocktakes"), stocktake };
    Ok(templates::render("stocktake_scan.html", &page)?.into_response())
}
