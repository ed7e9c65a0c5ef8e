//! The dashboard: counts by status, OS, manufacturer, business unit and IDC (one GROUP BY each),
//! changes per day over 30 days (one GROUP BY), hosts not seen for N days, the latest collection
//! errors. The GROUP BY figures are reused for [`super::super::WebSettings::dashboard_cache`]; the
//! lists are read live.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{CurrentUser, Layout, parse_query};
use crate::auth::Role;
use crate::db::{Db, from_us, now_us};
use crate::web::WebState;
use crate::web::error::WebError;
use crate::web::templates;

/// One value and how many assets have it.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    /// The value (`None`: not set).
    pub value: Option<String>,
    /// Assets with it.
    pub count: i64,
}

/// One bar of the changes-per-day chart (geometry precomputed: templates only print numbers).
#[derive(Debug, Clone, Serialize)]
pub struct DayBar {
    /// The local date.
    pub day: String,
    /// Change records recorded that day.
    pub count: i64,
    /// Bar's left edge.
    pub x: i64,
    /// Bar's top edge.
    pub y: i64,
    /// Bar's height.
    pub height: i64,
    /// Bar's width.
    pub width: i64,
    /// Label under every fifth bar.
    pub label: Option<String>,
}

/// The aggregate figures (cached briefly).
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// When they were computed.
    pub computed_at: DateTime<Utc>,
    /// Assets in all.
    pub total: i64,
    /// By status.
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
    /// Changes per day, oldest first.
    pub per_day: Vec<DayBar>,
    /// Change records in the 30 days.
    pub changes_30d: i64,
    /// The largest day's count (the chart's scale).
    pub max_per_day: i64,
}

/// Chart size (SVG user units, about screen pixels on a desktop) and the margin that keeps the
/// first and last date labels inside.
const CHART_WIDTH: i64 = 1200;
const CHART_HEIGHT: i64 = 150;
const CHART_MARGIN: i64 = 24;
const DAYS: i64 = 30;
/// Grouping unit for changes per day: 15 minutes divides every time zone offset in use.
const BUCKET_US: i64 = 900_000_000;

async fn group_by(db: &Db, column: &str) -> Result<Vec<Count>, sqlx::Error> {
    // `column` is one of our literals (see callers), never input.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {column}, COUNT(*) FROM assets GROUP BY {column} ORDER BY 2 DESC, 1"
    )))
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(|row| Ok(Count { value: row.try_get(0)?, count: row.try_get(1)? })).collect()
}

/// Computes every aggregate: six GROUP BY queries and one range scan, whatever the asset count.
pub async fn compute(db: &Db, calendar: &crate::service::Calendar) -> Result<Figures, WebError> {
    let tz = calendar.tz;
    let status = group_by(db, "status").await?;
    let os = group_by(db, "os_name").await?;
    let manufacturer = group_by(db, "manufacturer").await?;
    let business_unit = group_by(db, "business_unit").await?;
    let idc = group_by(db, "idc").await?;
    // Tags are stored as ",a,b,": count each combination in SQL, then split.
    let mut tag_counts: BTreeMap<String, i64> = BTreeMap::new();
    for row in
        sqlx::query("SELECT tags, COUNT(*) FROM assets WHERE tags <> '' GROUP BY tags").fetch_all(db.reader()).await?
    {
        let tags: String = row.try_get(0)?;
        let count: i64 = row.try_get(1)?;
        for tag in tags.split(',').filter(|t| !t.is_empty()) {
            *tag_counts.entry(tag.to_owned()).or_default() += count;
        }
    }
    let mut tags: Vec<Count> = tag_counts.into_iter().map(|(t, count)| Count { value: Some(t), count }).collect();
    tags.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    let total = status.iter().map(|c| c.count).sum();

    let now = Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let first_day = today - Duration::days(DAYS - 1);
    let start = calendar.start_of(first_day)?;
    let rows = sqlx::query("SELECT recorded_at / 900000000, COUNT(*) FROM changes WHERE recorded_at >= $1 GROUP BY 1")
        .bind(start.timestamp_micros())
        .fetch_all(db.reader())
        .await?;
    let mut per_day_counts = vec![0_i64; DAYS as usize];
    for row in rows {
        let bucket: i64 = row.try_get(0)?;
        let count: i64 = row.try_get(1)?;
        let day = from_us(bucket * BUCKET_US).with_timezone(&tz).date_naive();
        if let Ok(index) = usize::try_from((day - first_day).num_days())
            && let Some(slot) = per_day_counts.get_mut(index)
        {
            *slot += count;
        }
    }
    let max_per_day = per_day_counts.iter().copied().max().unwrap_or(0);
    let slot = CHART_WIDTH / DAYS;
    let per_day = per_day_counts
        .iter()
        .enumerate()
        .map(|(index, &count)| {
            let day = first_day + Duration::days(index as i64);
            let height =
                if max_per_day == 0 { 0 } else { (count * (CHART_HEIGHT - 4) / max_per_day).max(i64::from(count > 0)) };
            DayBar {
                day: day.format("%Y-%m-%d").to_string(),
                count,
                x: CHART_MARGIN + index as i64 * slot + 3,
                width: slot - 6,
                y: CHART_HEIGHT - height,
                height,
                label: (index % 5 == 4 || index == 0).then(|| day.format("%m-%d").to_string()),
            }
        })
        .collect();
    Ok(Figures {
        computed_at: now,
        total,
        status,
        os,
        manufacturer,
        business_unit,
        idc,
        tags,
        per_day,
        changes_30d: per_day_counts.iter().sum(),
        max_per_day,
    })
}

impl WebState {
    /// The aggregate figures, computed at most once per cache period.
    pub(crate) async fn figures(&self) -> Result<Arc<Figures>, WebError> {
        if let Ok(cached) = self.dashboard.lock()
            && let Some((at, figures)) = cached.as_ref()
            && at.elapsed() < self.settings.dashboard_cache
        {
            return Ok(figures.clone());
        }
        let figures = Arc::new(compute(&self.app.db, &self.app.calendar).await?);
        if let Ok(mut cached) = self.dashboard.lock() {
            *cached = Some((Instant::now(), figures.clone()));
        }
        Ok(figures)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DashboardQuery {
    stale_days: Option<i64>,
}

/// A host that has not reported for a while.
#[derive(Debug, Serialize)]
struct StaleHost {
    id: i64,
    hostname: String,
    idc: Option<String>,
    business_unit: Option<String>,
    last_seen_at: Option<DateTime<Utc>>,
}

/// A recent collection error.
#[derive(Debug, Serialize)]
pub struct ErrorLine {
    /// Row id.
    pub id: i64,
    /// The asset, when known.
    pub asset_id: Option<i64>,
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
    /// When recorded.
    pub recorded_at: DateTime<Utc>,
}

/// Decodes `id, asset_id, hostname, source, section, message, collected_at, recorded_at`.
pub fn error_line(row: &sqlx::any::AnyRow) -> Result<ErrorLine, sqlx::Error> {
    Ok(ErrorLine {
        id: row.try_get(0)?,
        asset_id: row.try_get(1)?,
        hostname: row.try_get(2)?,
        source: row.try_get(3)?,
        section: row.try_get(4)?,
        message: row.try_get(5)?,
        collected_at: row.try_get::<Option<i64>, _>(6)?.map(from_us),
        recorded_at: from_us(row.try_get(7)?),
    })
}

#[derive(Serialize)]
struct DashboardPage {
    layout: Layout,
    figures: Arc<Figures>,
    chart_width: i64,
    chart_height: i64,
    chart_margin: i64,
    stale_days: i64,
    stale_total: i64,
    stale: Vec<StaleHost>,
    errors: Vec<ErrorLine>,
}

/// `GET /`.
pub async fn page(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let query: DashboardQuery = parse_query(raw.as_deref())?;
    let stale_days = query.stale_days.unwrap_or(7).clamp(1, 3650);
    let db = &state.app.db;
    let figures = state.figures().await?;
    let cutoff = now_us() - stale_days * 86_400_000_000;
    // Online hosts are the ones collectors should reach; (status, last_seen_at) is indexed.
    let stale_total: i64 = sqlx::query(
        "SELECT COUNT(*) FROM assets WHERE status = 'online' AND (last_seen_at IS NULL OR last_seen_at < $1)",
    )
    .bind(cutoff)
    .fetch_one(db.reader())
    .await?
    .try_get(0)?;
    let rows = sqlx::query(
        "SELECT id, hostname, idc, business_unit, last_seen_at FROM assets \
         WHERE status = 'online' AND (last_seen_at IS NULL OR last_seen_at < $1) ORDER BY last_seen_at, id LIMIT 20",
    )
    .bind(cutoff)
    .fetch_all(db.reader())
    .await?;
    let stale = rows
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
    let rows = sqlx::query(
        "SELECT id, asset_id, hostname, source, section, message, collected_at, recorded_at \
         FROM collection_errors ORDER BY id DESC LIMIT 10",
    )
    .fetch_all(db.reader())
    .await?;
    let errors = rows.iter().map(error_line).collect::<Result<Vec<_>, _>>()?;
    let page = DashboardPage {
        layout: user.layout(&state, "dashboard"),
        figures,
        chart_width: CHART_WIDTH,
        chart_height: CHART_HEIGHT,
        chart_margin: CHART_MARGIN,
        stale_days,
        stale_total,
        stale,
        errors,
    };
    Ok(templates::render("dashboard.html", &page)?.into_response())
}
