//! The change log across all assets, newest first, with filters (date range, asset, section,
//! action, source) and keyset paging. One query per page: the host name comes from a JOIN.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::assets::ChangeLine;
use super::{CurrentUser, Layout, parse_instant, parse_query, start_of};
use crate::auth::Role;
use crate::store::sql::Sql;
use crate::store::{CHANGE_COLUMNS, change_row};
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

fn day_start(text: &str, tz: chrono_tz::Tz) -> Result<i64, WebError> {
    match chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        Ok(day) => Ok(start_of(day, tz)?.timestamp_micros()),
        Err(_) => Ok(parse_instant(text, tz)?.timestamp_micros()),
    }
}

/// `GET /changes`.
pub async fn page(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params: ChangeParams = parse_query(raw.as_deref())?;
    let db = &state.app.db;
    let tz = state.app.config.tz();
    let columns: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
    let mut q = Sql::new(format!(
        "SELECT {}, a.hostname FROM changes c JOIN assets a ON a.id = c.asset_id WHERE c.id < ",
        columns.join(", ")
    ));
    q.bind(params.before.unwrap_or(i64::MAX));
    if let Some(from) = params.from.as_deref() {
        q.push(" AND c.recorded_at >= ").bind(day_start(from, tz)?);
    }
    if let Some(to) = params.to.as_deref() {
        // "to" is inclusive: up to the end of that day.
        q.push(" AND c.recorded_at <= ").bind(parse_instant(to, tz)?.timestamp_micros());
    }
    if let Some(asset) = params.asset.as_deref().map(str::trim) {
        match asset.parse::<i64>() {
            Ok(id) => {
                q.push(" AND c.asset_id = ").bind(id);
            }
            Err(_) => {
                // Resolve the name first: the asset index then drives the scan of changes.
                let ids: Vec<i64> = sqlx::query("SELECT id FROM assets WHERE hostname = $1")
                    .bind(asset.to_owned())
                    .fetch_all(db.reader())
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                if ids.is_empty() {
                    q.push(" AND 1 = 0");
                } else {
                    q.push(" AND c.asset_id IN (");
                    for (index, id) in ids.iter().enumerate() {
                        if index > 0 {
                            q.push(", ");
                        }
                        q.bind(*id);
                    }
                    q.push(")");
                }
            }
        }
    }
    if let Some(section) = params.section.as_deref().map(str::trim) {
        q.push(" AND c.section = ").bind(section);
    }
    if let Some(action) = params.action.as_deref() {
        q.push(" AND c.action = ").bind(action);
    }
    match params.source.as_deref().map(str::trim) {
        Some("user") => {
            q.push(" AND c.source >= 'user:' AND c.source < 'user;'");
        }
        Some(source) => {
            q.push(" AND c.source = ").bind(source);
        }
        None => {}
    }
    q.push(" ORDER BY c.id DESC LIMIT ").bind(PAGE);
    let rows = q.query().fetch_all(db.reader()).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(ChangeLine::from_record(change_row(row)?, Some(row.try_get(14)?)));
    }
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
