//! The collection error log: which host failed to collect which section, and why; newest first.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{CurrentUser, Layout, parse_query};
use crate::auth::Role;
use crate::service::collection_errors::{self, CollectionError, ErrorFilter};
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
    items: Vec<CollectionError>,
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
    let span = state.app.calendar.span(params.from.as_deref(), params.to.as_deref())?;
    let filter = ErrorFilter {
        hostname: params.hostname.clone(),
        asset_id: params.asset_id,
        section: params.section.clone(),
        source: params.source.clone(),
        from: span.from,
        to: span.to,
        before: params.before,
    };
    let items = collection_errors::list(&state.app.db, &filter, PAGE).await?;
    let next = (items.len() as i64 == PAGE).then(|| {
        let before = items.last().map(|e| e.id);
        format!("/errors?{}", serde_urlencoded::to_string(ErrorParams { before, ..params.clone() }).unwrap_or_default())
    });
    let page = ErrorsPage { layout: user.layout(&state, "errors"), params, items, next };
    Ok(templates::render("errors.html", &page)?.into_response())
}
