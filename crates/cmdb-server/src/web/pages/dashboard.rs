//! The dashboard: counts by status, OS, manufacturer, business unit and IDC (one GROUP BY each),
//! changes per day over 30 days (one GROUP BY), hosts not seen for N days, the latest collection
//! errors. The GROUP BY figures are reused for [`super::super::WebSettings::dashboard_cache`]; the
//! lists are read live.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{CurrentUser, Layout, parse_query};
use crate::auth::Role;
use crate::db::Db;
use crate::service::collection_errors::{self, CollectionError, ErrorFilter};
use crate::service::dashboard::{self, StaleHost};
use crate::web::WebState;
use crate::web::error::WebError;
use crate::web::templates;

pub use crate::service::dashboard::Count;

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
    /// Assets per value of each list column (flattened: `figures.os`, `figures.idc`, ...).
    #[serde(flatten)]
    pub counts: dashboard::Counts,
    /// Assets that share a board serial or UUID with another (possible duplicates), sorted.
    pub duplicate_ids: Vec<i64>,
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
/// How far ahead the dashboard lists warranties that end.
const WARRANTY_DAYS: i64 = 90;

/// Computes every aggregate: six GROUP BY queries and one range scan, whatever the asset count.
pub async fn compute(db: &Db, calendar: &crate::service::Calendar) -> Result<Figures, WebError> {
    let counts = dashboard::counts(db).await?;
    let total = counts.status.iter().map(|c| c.count).sum();
    let now = Utc::now();
    let first_day = calendar.today(now) - Duration::days(DAYS - 1);
    let per_day_counts = dashboard::changes_per_day(db, calendar, first_day).await?;
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
        counts,
        duplicate_ids: crate::service::duplicates::all(db).await?.into_keys().collect(),
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
    errors: Vec<CollectionError>,
    warranties: Vec<dashboard::WarrantyEnding>,
    /// Webhook endpoints whose delivery gave up (admins only; empty for anyone else).
    webhooks_given_up: Vec<crate::service::webhooks::Endpoint>,
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
    let cutoff = Utc::now() - Duration::days(stale_days);
    let (stale_total, stale) = dashboard::stale_hosts(db, cutoff, 20).await?;
    let errors = collection_errors::list(db, &ErrorFilter::default(), 10).await?;
    let today = state.app.calendar.today(Utc::now());
    let warranties = dashboard::warranties_ending(db, today, WARRANTY_DAYS, 50).await?;
    let webhooks_given_up =
        if user.session.role >= Role::Admin { crate::service::webhooks::given_up(db).await? } else { Vec::new() };
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
        warranties,
        webhooks_given_up,
    };
    Ok(templates::render("dashboard.html", &page)?.into_response())
}
