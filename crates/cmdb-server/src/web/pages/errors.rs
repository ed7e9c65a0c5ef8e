//! The collection error log: which host failed to collect which section, and why; newest first.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::dashboard::{ErrorLine, error_line};
use super::{CurrentUser, Layout, parse_query};
use crate::auth::Role;
use crate::store::sql::Sql;
use crate::web::error::WebError;
use crate::web::{WebState, templates};

/// The error log's filters.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ErrorParams {
    /// Host name as reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Asset id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<i64>,
    /// Section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// agent, ssh, salt, legacy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// First day (inclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Last day (inclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Only rows with a smaller id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

const PAGE: i64 = 100;

#[derive(Serialize)]
struct ErrorsPage {
    layout: Layout,
    params: ErrorParams,
    items: Vec<ErrorLine>,
    next: Option<String>,
}

/// `GET /errors`.
pub async fn page(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params: ErrorParams = parse_query(raw.as_deref())?;
    let cal = &state.app.calendar;
    let mut q = Sql::new(
        "SELECT id, asset_id, hostname, source, section, message, collected_at, recorded_at FROM collection_errors WHERE id < ",
    );
    q.bind(params.before.unwrap_or(i64::MAX));
    if let Some(hostname) = params.hostname.as_deref().map(str::trim) {
        q.push(" AND hostname = ").bind(hostname);
    }
    if let Some(asset_id) = params.asset_id {
        q.push(" AND asset_id = ").bind(asset_id);
    }
    if let Some(section) = params.section.as_deref().map(str::trim) {
        q.push(" AND section = ").bind(section);
    }
    if let Some(source) = params.source.as_deref().map(str::trim) {
        q.push(" AND source = ").bind(source);
    }
    if let Some(from) = params.from.as_deref() {
        q.push(" AND recorded_at >= ").bind(cal.lower_bound("from", from)?.timestamp_micros());
    }
    if let Some(to) = params.to.as_deref() {
        q.push(" AND recorded_at <= ").bind(cal.upper_bound("to", to)?.timestamp_micros());
    }
    q.push(" ORDER BY id DESC LIMIT ").bind(PAGE);
    let rows = q.query().fetch_all(state.app.db.reader()).await?;
    let items = rows.iter().map(error_line).collect::<Result<Vec<_>, _>>()?;
    let next = (items.len() as i64 == PAGE).then(|| {
        let before = items.last().map(|e| e.id);
        format!("/errors?{}", serde_urlencoded::to_string(ErrorParams { before, ..params.clone() }).unwrap_or_default())
    });
    let page = ErrorsPage { layout: user.layout(&state, "errors"), params, items, next };
    Ok(templates::render("errors.html", &page)?.into_response())
}
