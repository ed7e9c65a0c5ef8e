//! The managed lists (IDC, business unit, tag) in the UI: everyone reads them, editors add and
//! describe values, admins remove unused ones. The rules live in `service::lists`; this page
//! only calls them.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::{CurrentUser, Layout, Posted};
use crate::auth::Role;
use crate::service::audit_log;
use crate::service::lists::{self, ListKind, ManagedValue};
use crate::web::error::WebError;
use crate::web::{WebState, templates};

#[derive(Serialize)]
struct ListView {
    kind: &'static str,
    title: &'static str,
    filter: &'static str,
    values: Vec<ManagedValue>,
}

#[derive(Serialize)]
struct ListsPage {
    layout: Layout,
    lists: Vec<ListView>,
}

fn title(kind: ListKind) -> (&'static str, &'static str) {
    match kind {
        ListKind::Idc => ("IDCs", "idc"),
        ListKind::BusinessUnit => ("Business units", "business_unit"),
        ListKind::Tag => ("Tags", "tag"),
    }
}

/// `GET /lists`.
pub async fn page(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let mut views = Vec::new();
    for kind in ListKind::ALL {
        let (title, filter) = title(kind);
        views.push(ListView { kind: kind.as_str(), title, filter, values: lists::values(&state.app.db, kind).await? });
    }
    let page = ListsPage { layout: user.layout(&state, "lists"), lists: views };
    Ok(templates::render("lists.html", &page)?.into_response())
}

/// The lists form: `action` = add, describe or remove.
#[derive(Debug, Deserialize)]
pub struct ListForm {
    action: String,
    list: String,
    value: String,
    #[serde(default)]
    description: String,
}

/// `POST /lists`.
pub async fn change(State(state): State<Arc<WebState>>, posted: Posted<ListForm>) -> Result<Response, WebError> {
    let user = &posted.user;
    let form = &posted.form;
    let kind = ListKind::parse(&form.list)?;
    let db = &state.app.db;
    match form.action.as_str() {
        "add" => {
            user.require(Role::Editor)?;
            lists::add(db, kind, &form.value, &form.description, &user.session.name).await?;
        }
        "describe" => {
            user.require(Role::Editor)?;
            lists::describe(db, kind, &form.value, &form.description).await?;
        }
        "remove" => {
            user.require(Role::Admin)?;
            lists::remove(db, kind, &form.value).await?;
        }
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    }
    // The same audit entries as the REST API's list edits.
    let detail = format!("{}: {}", kind.as_str(), form.value.trim());
    audit_log::record_from(
        db,
        &user.session.name,
        &format!("list.{}", form.action),
        &detail,
        user.client_ip.as_deref(),
    )
    .await?;
    tracing::info!(user = %user.session.name, list = kind.as_str(), action = %form.action, "managed list changed");
    Ok(Redirect::to(&format!("/lists#list-{}", kind.as_str())).into_response())
}
