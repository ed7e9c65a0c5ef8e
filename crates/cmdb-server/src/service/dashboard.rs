//! The figures of the dashboard and the list's filter counts: assets per status, OS, manufacturer,
//! business unit, IDC and tag, changes per day, and the hosts that stopped reporting.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::db::{Db, from_us};
use crate::service::assets::NOT_DELETED;
use crate::service::{Calendar, ServiceError};

/// How many assets have a value (`None`: no value).
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    /// The value.
    pub value: Option<String>,
    /// Assets with it.
    pub count: i64,
}

/// Assets per value of each list column.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// By business status.
    pub status: Vec<Count>,
    /// By OS name.
    pub os: Vec<Count>,
    /// By manufacturer.
    pub manufacturer: Vec<Count>,
    /// By business unit.
    pub business_unit: Vec<Count>,
    /// By IDC.
    pub idc: Vec<Count>,
    /// By tag.
    pub tags: Vec<Count>,
    /// By owner.
    pub owner: Vec<Count>,
}

async fn group_by(db: &Db, column: &str) -> Result<Vec<Count>, ServiceError> {
    // `column` is one of our literals (see callers), never input.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {column}, COUNT(*) FROM assets WHERE {NOT_DELETED} GROUP BY {column} ORDER BY 2 DESC, 1"
    )))
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .iter()
        .map(|row| Ok(Count { value: row.try_get(0)?, count: row.try_get(1)? }))
        .collect::<Result<Vec<_>, sqlx::Error>>()?)
}

/// Every count: seven GROUP BY queries, whatever the asset count.
pub async fn counts(db: &Db) -> Result<Counts, ServiceError> {
    let status = group_by(db, "status").await?;
    let os = group_by(db, "os_name").await?;
    let manufacturer = group_by(db, "manufacturer").await?;
    let business_unit = group_by(db, "business_unit").await?;
    let idc = group_by(db, "idc").await?;
    let owner = group_by(db, "owner").await?;
    // Tags are stored as ",a,b,": count each combination in SQL, then split.
    let mut tag_counts: BTreeMap<String, i64> = BTreeMap::new();
    for row in sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT tags, COUNT(*) FROM assets WHERE tags <> '' AND {NOT_DELETED} GROUP BY tags"
    )))
    .fetch_all(db.reader())
    .await?
    {
        let tags: String = row.try_get(0)?;
        let count: i64 = row.try_get(1)?;
        for tag in tags.split(',').filter(|t| !t.is_empty()) {
            *tag_counts.entry(tag.to_owned()).or_default() += count;
        }
    }
    let mut tags: Vec<Count> = tag_counts.into_iter().map(|(t, count)| Count { value: Some(t), count }).collect();
    tags.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    Ok(Counts { status, os, manufacturer, business_unit, idc, tags, owner })
}

/// Counts of `values` (one per asset; a tag list counts each tag), most common first, then by value.
pub fn count_values<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<Count> {
    let mut by_value: BTreeMap<Option<&str>, i64> = BTreeMap::new();
    for value in values {
        *by_value.entry(value).or_default() += 1;
    }
    let mut counts: Vec<Count> =
        by_value.into_iter().map(|(value, count)| Count { value: value.map(str::to_owned), count }).collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    counts
}

/// Grouping unit for changes per day: 15 minutes divides every time zone offset in use.
const BUCKET_US: i64 = 900_000_000;

/// Change records per local day from `first_day` to today (in the calendar's zone), oldest first:
/// one range scan grouped in 15-minute buckets, which every zone's days are made of.
pub async fn changes_per_day(db: &Db, calendar: &Calendar, first_day: NaiveDate) -> Result<Vec<i64>, ServiceError> {
    let start = calendar.start_of(first_day)?;
    let days = (calendar.today(Utc::now()) - first_day).num_days().max(0) + 1;
    let rows = sqlx::query("SELECT recorded_at / 900000000, COUNT(*) FROM changes WHERE recorded_at >= $1 GROUP BY 1")
        .bind(start.timestamp_micros())
        .fetch_all(db.reader())
        .await?;
    let mut per_day = vec![0_i64; usize::try_from(days).unwrap_or(0)];
    for row in rows {
        let bucket: i64 = row.try_get(0)?;
        let count: i64 = row.try_get(1)?;
        let day = calendar.date_of(from_us(bucket * BUCKET_US));
        if let Ok(index) = usize::try_from((day - first_day).num_days())
            && let Some(slot) = per_day.get_mut(index)
        {
            *slot += count;
        }
    }
    Ok(per_day)
}

/// An online host that has not reported since a cutoff.
#[derive(Debug, Serialize)]
pub struct StaleHost {
    /// Asset id.
    pub id: i64,
    /// Host name.
    pub hostname: String,
    /// IDC.
    pub idc: Option<String>,
    /// Business unit.
    pub business_unit: Option<String>,
    /// Last report, if any.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Online hosts (the ones collectors should reach) not seen since `cutoff`: how many, and the
/// `limit` longest silent. (status, last_seen_at) is indexed.
pub async fn stale_hosts(db: &Db, cutoff: DateTime<Utc>, limit: i64) -> Result<(i64, Vec<StaleHost>), ServiceError> {
    let cutoff = cutoff.timestamp_micros();
    let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM assets WHERE status = 'online' AND {NOT_DELETED} AND (last_seen_at IS NULL OR last_seen_at < $1)"
    )))
    .bind(cutoff)
    .fetch_one(db.reader())
    .await?
    .try_get(0)?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, hostname, idc, business_unit, last_seen_at FROM assets \
         WHERE status = 'online' AND {NOT_DELETED} AND (last_seen_at IS NULL OR last_seen_at < $1) \
         ORDER BY last_seen_at, id LIMIT $2"
    )))
    .bind(cutoff)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    let hosts = rows
        .iter()
        .map(|row| {
            Ok(StaleHost {
                id: row.try_get(0)?,
                hostname: row.try_get(1)?,
                idc: row.try_get(2)?,
                business_unit: row.try_get(3)?,
                last_seen_at: row.try_get::<Option<i64>, _>(4)?.map(from_us),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((total, hosts))
}

/// An asset whose warranty ends soon.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WarrantyEnding {
    /// Asset id.
    pub id: i64,
    /// Host name.
    pub hostname: String,
    /// Asset tag.
    pub asset_tag: Option<String>,
    /// The last day of the warranty (`YYYY-MM-DD`).
    pub warranty_end: String,
}

/// Assets (not deleted) whose `warranty_end` custom field falls in [`from`, `from` + `days`],
/// soonest first; at most `limit`. Dates are stored as `YYYY-MM-DD`, so text order is date order.
pub async fn warranties_ending(
    db: &Db,
    from: chrono::NaiveDate,
    days: i64,
    limit: i64,
) -> Result<Vec<WarrantyEnding>, ServiceError> {
    let end = crate::service::custom_fields::value_sql(db.backend(), "warranty_end");
    let sql = format!(
        "SELECT id, hostname, asset_tag, {end} FROM assets WHERE {NOT_DELETED} AND {end} >= $1 AND {end} <= $2 \
         ORDER BY 4, id LIMIT $3"
    );
    let last = from + chrono::Duration::days(days);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from.format("%Y-%m-%d").to_string())
        .bind(last.format("%Y-%m-%d").to_string())
        .bind(limit)
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(WarrantyEnding {
                id: row.try_get(0)?,
                hostname: row.try_get(1)?,
                asset_tag: row.try_get(2)?,
                warranty_end: row.try_get(3)?,
            })
        })
        .collect()
}
