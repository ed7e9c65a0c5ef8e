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
    /// added, removed or changed; several are given as repeated `action=` (read apart, as the
    /// query parser takes one value per name).
    #[serde(skip)]
    pub action: Vec<String>,
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
    selected_actions: Vec<String>,
    items: Vec<history::Grouped<ChangeLine>>,
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
    // Repeated `action=` (one checkbox per action) are read apart from the other filters.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| WebError::BadRequest(format!("malformed query string: {e}")))?;
    let (actions, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(name, _)| name == "action");
    let rest = serde_urlencoded::to_string(&rest).unwrap_or_default();
    let mut params: ChangeParams = parse_query(Some(&rest))?;
    params.action = actions.into_iter().map(|(_, v)| v).filter(|v| !v.is_empty()).collect();
    let actions = history::parse_actions(params.action.iter().map(String::as_str)).map_err(WebError::BadRequest)?;
    let cal = &state.app.calendar;
    let filter = ChangeFilter {
        // "to" is inclusive: up to the end of that day.
        span: cal.span(params.from.as_deref(), params.to.as_deref())?,
        asset: params.asset.clone(),
        section: params.section.clone(),
        actions,
        source: params.source.clone(),
        before: params.before,
    };
    let logged = history::change_log(&state.app.db, &filter, PAGE).await?;
    let full = logged.len() as i64 == PAGE;
    let before = logged.last().map(|c| c.record.id);
    let assets: Vec<i64> = logged.iter().map(|c| c.record.asset_id).collect();
    let firsts = history::first_reports(&state.app.db, &assets).await?;
    let items = history::group_first_reports(logged, |c| &c.record, &firsts)
        .into_iter()
        .map(|g| g.map(|c| ChangeLine::from_record(c.record, Some(c.hostname))))
        .collect();
    let next = full.then(|| {
        let mut query = serde_urlencoded::to_string(ChangeParams { before, ..params.clone() }).unwrap_or_default();
        for action in &params.action {
            query.push_str(&format!(
                "&action={}",
                serde_urlencoded::to_string([("", action)]).unwrap_or_default().trim_start_matches('=')
            ));
        }
        format!("/changes?{query}")
    });
    let page = ChangesPage {
        layout: user.layout(&state, "changes"),
        selected_actions: params.action.clone(),
        params,
        items,
        next,
        actions: ["added", "removed", "changed"],
        sources: ["agent", "ssh", "salt", "legacy", "user"],
    };
    Ok(templates::render("changes.html", &page)?.into_response())
}
