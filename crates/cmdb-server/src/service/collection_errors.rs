//! The collection errors agents reported (a section that failed on a host), newest first, for the
//! error log, the dashboard, an asset's page and the REST API.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::db::{Db, from_us};
use crate::service::ServiceError;
use crate::store::sql::Sql;

/// One collection error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CollectionError {
    /// Row id.
    pub id: i64,
    /// The asset, when known.
    pub asset_id: Option<i64>,
    /// The report.
    pub report_id: Option<String>,
    /// Host name as reported.
    pub hostname: String,
    /// agent, ssh, salt, legacy.
    pub source: String,
    /// The failed section.
    pub section: String,
    /// The collector's message.
    pub message: String,
    /// When collected.
    pub collected_at: Option<DateTime<Utc>>,
    /// When received.
    pub recorded_at: DateTime<Utc>,
}

/// Which errors to list.
#[derive(Debug, Clone, Default)]
pub struct ErrorFilter {
    /// Host name as reported.
    pub hostname: Option<String>,
    /// Asset id.
    pub asset_id: Option<i64>,
    /// Section.
    pub section: Option<String>,
    /// agent, ssh, salt, legacy.
    pub source: Option<String>,
    /// Recorded at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Recorded at or before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Only rows with a smaller id (the next page).
    pub before: Option<i64>,
}

/// The errors `filter` selects, newest first, at most `limit`.
pub async fn list(db: &Db, filter: &ErrorFilter, limit: i64) -> Result<Vec<CollectionError>, ServiceError> {
    let mut q = Sql::new(
        "SELECT id, asset_id, report_id, hostname, source, section, message, collected_at, recorded_at \
         FROM collection_errors WHERE id < ",
    );
    q.bind(filter.before.unwrap_or(i64::MAX));
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    if let Some(hostname) = text(&filter.hostname) {
        q.push(" AND hostname = ").bind(hostname);
    }
    if let Some(asset_id) = filter.asset_id {
        q.push(" AND asset_id = ").bind(asset_id);
    }
    if let Some(section) = text(&filter.section) {
        q.push(" AND section = ").bind(section);
    }
    if let Some(source) = text(&filter.source) {
        q.push(" AND source = ").bind(source);
    }
    if let Some(from) = filter.from {
        q.push(" AND recorded_at >= ").bind(from.timestamp_micros());
    }
    if let Some(to) = filter.to {
        q.push(" AND recorded_at <= ").bind(to.timestamp_micros());
    }
    q.push(" ORDER BY id DESC LIMIT ").bind(limit);
    let rows = q.query().fetch_all(db.reader()).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(CollectionError {
            id: row.try_get(0)?,
            asset_id: row.try_get(1)?,
            report_id: row.try_get(2)?,
            hostname: row.try_get(3)?,
            source: row.try_get(4)?,
            section: row.try_get(5)?,
            message: row.try_get(6)?,
            collected_at: row.try_get::<Option<i64>, _>(7)?.map(from_us),
            recorded_at: from_us(row.try_get(8)?),
        });
    }
    Ok(items)
}
