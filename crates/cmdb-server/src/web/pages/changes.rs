//! The change log across all assets, newest first, with filters (date range, asset, section,
//! action, source) and keyset paging. One query per page: the host name comes from a JOIN.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::assets::ChangeLine;
use super::{CurrentUser, Layout, parse_query};
use crate::auth::Role;
use crate::store::sql::{Param, Sql};
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

/// One page of changes, newest first, with each asset's host name (a JOIN, not a query per row).
/// With `sources`, one indexed arm per source, merged by UNION ALL.
fn page_query(filters: &[(String, Param)], sources: Option<&[String]>, before: i64) -> Sql {
    let inner: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
    let outer: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
    let mut q = Sql::new(format!("SELECT {}, a.hostname FROM (", outer.join(", ")));
    let arm = |q: &mut Sql, source: Option<&str>, index: usize| {
        q.push(&format!("SELECT * FROM (SELECT {} FROM changes c WHERE c.id < ", inner.join(", ")));
        q.bind(before);
        if let Some(source) = source {
            q.push(" AND c.source = ").bind(source);
        }
        for (text, value) in filters {
            q.push(text).bind(value.clone());
        }
        q.push(" ORDER BY c.id DESC LIMIT ").bind(PAGE);
        q.push(&format!(") s{index}"));
    };
    match sources {
        None => arm(&mut q, None, 0),
        Some([]) => {
            arm(&mut q, None, 0);
            q.push(" WHERE 1 = 0");
        }
        Some(list) => {
            for (index, source) in list.iter().enumerate() {
                if index > 0 {
                    q.push(" UNION ALL ");
                }
                arm(&mut q, Some(source), index);
            }
        }
    }
    q.push(") u JOIN assets a ON a.id = u.asset_id ORDER BY u.id DESC LIMIT ").bind(PAGE);
    q
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
    let cal = &state.app.calendar;
    // The filters other than the source, on the changes table aliased `c`.
    let mut filters: Vec<(String, Param)> = Vec::new();
    if let Some(from) = params.from.as_deref() {
        filters.push((" AND c.recorded_at >= ".to_owned(), cal.lower_bound("from", from)?.timestamp_micros().into()));
    }
    if let Some(to) = params.to.as_deref() {
        // "to" is inclusive: up to the end of that day.
        filters.push((" AND c.recorded_at <= ".to_owned(), cal.upper_bound("to", to)?.timestamp_micros().into()));
    }
    if let Some(asset) = params.asset.as_deref().map(str::trim) {
        match asset.parse::<i64>() {
            Ok(id) => {
                filters.push((" AND c.asset_id = ".to_owned(), id.into()));
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
                // No such host: a condition nothing meets; several (renamed, retired): any of them.
                if ids.is_empty() {
                    filters.push((" AND c.asset_id = ".to_owned(), Param::Int(None)));
                }
                for (index, id) in ids.iter().enumerate() {
                    let text = match (index, ids.len()) {
                        (0, 1) => " AND c.asset_id = ",
                        (0, _) => " AND (c.asset_id = ",
                        _ => " OR c.asset_id = ",
                    };
                    filters.push((text.to_owned(), (*id).into()));
                }
                if ids.len() > 1 {
                    filters.push((") AND 1 = ".to_owned(), 1_i64.into()));
                }
            }
        }
    }
    if let Some(section) = params.section.as_deref().map(str::trim) {
        filters.push((" AND c.section = ".to_owned(), section.into()));
    }
    if let Some(action) = params.action.as_deref() {
        filters.push((" AND c.action = ".to_owned(), action.into()));
    }
    let sources: Option<Vec<String>> = match params.source.as_deref().map(str::trim) {
        Some("user") => {
            // People's edits are a small share of all changes. A range over `source` cannot be read
            // in id order, which would sort every edit ever made; instead each person's edits are
            // read newest first from the (source, id) index and the lists merged, in one query.
            // The distinct sources are few (agent, ssh, salt, legacy, one per person): walk them
            // with one index seek each (a loose index scan), whatever the collation, and keep
            // the people's.
            let names: Vec<String> = sqlx::query(
                "WITH RECURSIVE s(source) AS (SELECT MIN(source) FROM changes \
                 UNION ALL SELECT (SELECT MIN(c.source) FROM changes c WHERE c.source > s.source) FROM s \
                 WHERE s.source IS NOT NULL) SELECT source FROM s WHERE source IS NOT NULL",
            )
            .fetch_all(db.reader())
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|source| source.starts_with("user:"))
            .collect();
            Some(names)
        }
        Some(source) => Some(vec![source.to_owned()]),
        None => None,
    };
    let before = params.before.unwrap_or(i64::MAX);
    let q = page_query(&filters, sources.as_deref(), before);
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
