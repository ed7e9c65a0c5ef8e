//! The change log across all assets, newest first, with filters (date range, asset, section,
//! action, source) and keyset paging. One query per page: the host name comes from a JOIN.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::assets::ChangeLine;
use super::{CurrentUser, Layout, parse_query};
use crate::auth::Role;
use crate::service::history::{self, ChangeFilter};
use crate::web::error::WebError;
use crate::web::{WebState, templates};

/// The change log's filters as they appear in the URL.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ChangeParams {
    /// First day (inclusive), YYYY-MM-DD in the server's time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Last day (inclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Asset id or host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// added, removed or changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// agent, ssh, salt, legacy, `user` (any person) or `user:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Only records with a smaller id (the next page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

const PAGE: i64 = 100;

#[derive(Serialize)]
struct ChangesPage {
    layout: Layout,
    params: ChangeParams,
    items: Vec<ChangeLine>,
    next: Option<String>,
    actions: [&'static str; 3],
    sources: [&'static str; 5],
}

/// `GET /changes`.
pub async fn page(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params: ChangeParams = parse_query(raw.as_deref())?;
    let cal = &state.app.calendar;
    let filter = ChangeFilter {
        from: params.from.as_deref().map(|t| cal.lower_bound("from", t)).transpose()?,
        // "to" is inclusive: up to the end of that day.
        to: params.to.as_deref().map(|t| cal.upper_bound("to", t)).transpose()?,
        asset: params.asset.clone(),
        section: params.section.clone(),
        action: params.action.clone(),
        source: params.source.clone(),
        before: params.before,
    };
    let items: Vec<ChangeLine> = history::change_log(&state.app.db, &filter, PAGE)
        .await?
        .into_iter()
        .map(|line| ChangeLine::from_record(line.record, Some(line.hostname)))
        .collect();
    let next = (items.len() as i64 == PAGE).then(|| {
        let before = items.last().map(|c| c.id);
        let query = serde_urlencoded::to_string(ChangeParams { before, ..params.clone() }).unwrap_or_default();
        format!("/changes?{query}")
    });
    let page = ChangesPage {
        layout: user.layout(&state, "changes"),
        params,
        items,
        next,
        actions: ["added", "removed", "changed"],
        sources: ["agent", "ssh", "salt", "legacy", "user"],
    };
    Ok(templates::render("changes.html", &page)?.into_response())
}
