//! REST adapters of the year-end audit over the service layer: the as-of view, snapshots, exports,
//! the CSV import, managed lists, and the OpenAPI document. Every date goes through
//! [`crate::service::Calendar`], the same rule the pages use.
//!
//! Routes (all under `/api/v1` but the docs page; roles via bearer tokens):
//! - `GET /audit/assets?as_of=`, `GET /audit/assets/{id}?as_of=`: the as-of view (viewer).
//! - `GET|POST /audit/snapshots`: snapshots (viewer reads, admin takes one).
//! - `GET /audit/export.xlsx?as_of=&from=&to=` and `/audit/{assets,components,changes}.csv`.
//! - `GET /export/assets.csv|.xlsx?<list filters>[&as_of=]`: the list export.
//! - `POST /import/csv?dry_run=`: CSV import (editor).
//! - `GET /lists`, `GET|POST /lists/{list}`, `PATCH|DELETE /lists/{list}/{value}`.
//! - `GET /openapi.json` and `GET /api/docs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, patch, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::openapi;
use crate::api::{Shared, require};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::error::responses::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, TooLarge, Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::service::assets::{AssetDetail, AssetPage, ListFilters, ListQuery};
use crate::service::time::{AsOf, AuditPeriod, DayEnd};
use crate::service::{asof, export, import, lists};
use crate::state::AppState;

/// Routes of the audit API.
pub fn router(state: Arc<AppState>) -> crate::routing::Routes {
    crate::routing::Routes::new()
        .route("/api/v1/audit/assets", get(audit_assets))
        .route("/api/v1/audit/assets/{id}", get(audit_asset))
        .route("/api/v1/audit/snapshots", get(list_snapshots).post(take_snapshot))
        .route("/api/v1/audit/digest", get(audit_digest))
        .route("/api/v1/audit/export.xlsx", get(audit_workbook))
        .route("/api/v1/audit/assets.csv", get(audit_assets_csv))
        .route("/api/v1/audit/components.csv", get(audit_components_csv))
        .route("/api/v1/audit/changes.csv", get(audit_changes_csv))
        .route("/api/v1/export/assets.csv", get(export_assets_csv))
        .route("/api/v1/export/assets.xlsx", get(export_assets_xlsx))
        .route("/api/v1/import", post(import_sheet))
        .route("/api/v1/import/csv", post(import_csv))
        .route("/api/v1/lists", get(all_lists))
        .route("/api/v1/lists/{list}", get(one_list).post(add_value))
        .route("/api/v1/lists/{list}/{value}", patch(describe_value).delete(remove_value))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/docs", get(api_docs))
        .map(|router| router.route_layer(axum::middleware::from_fn(crate::api::strict_query::reject_unknown)))
        .with_state(state)
}

/// The `as_of` query parameter, where it is optional (absent: now).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct AsOfParam {
    /// The moment to rebuild: an instant (RFC 3339, 2025-12-31T23:59:59Z), a local date-time, or a
    /// date (2025-12-31 = the end of that day in the configured zone). Follows the time the server
    /// recorded each change.
    pub as_of: Option<String>,
}

/// The `as_of` query parameter, where it is required (read like [`AsOfParam`], but must be given).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct RequiredAsOf {
    /// The moment to rebuild: an instant (RFC 3339, 2025-12-31T23:59:59Z), a local date-time, or a
    /// date (2025-12-31 = the end of that day in the configured zone). Follows the time the server
    /// recorded each change.
    #[param(required = true)]
    pub as_of: Option<String>,
}

impl RequiredAsOf {
    /// The as-of, which must be given.
    pub fn required(&self, state: &AppState) -> Result<AsOf, ApiError> {
        Ok(state.calendar.required_as_of(self.as_of.as_deref())?)
    }
}

impl AsOfParam {
    /// The as-of, when given, resolved by the server's calendar.
    pub fn resolve(&self, state: &AppState) -> Result<Option<AsOf>, ApiError> {
        Ok(state.calendar.optional_as_of(self.as_of.as_deref())?)
    }
}

/// `GET /api/v1/audit/assets?as_of=`: the list as it stood then.
#[utoipa::path(
    get,
    path = "/api/v1/audit/assets",
    operation_id = "listAssetsAsOf",
    tag = "audit",
    summary = "The asset list as it stood at as_of, rebuilt from history; filters and paging as the live list.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(RequiredAsOf, ListQuery, crate::service::assets::CustomFilterParams),
    responses((status = 200, description = "One page.", body = AssetPage), BadRequest, Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn audit_assets(
    State(state): State<Shared>,
    principal: Principal,
    crate::api::ListQueryParams(query): crate::api::ListQueryParams,
    Query(at): Query<RequiredAsOf>,
) -> Result<Json<AssetPage>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(asof::list_as_of(&state.db, &state.snapshot_rows, at.required(&state)?, &query).await?))
}

/// `GET /api/v1/audit/assets/{id}?as_of=`: one asset as it stood then.
#[utoipa::path(
    get,
    path = "/api/v1/audit/assets/{id}",
    operation_id = "getAssetAsOf",
    tag = "audit",
    summary = "One asset as it stood at as_of (404 when it did not exist yet).",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(("id" = i64, Path, description = "Asset id."), RequiredAsOf),
    responses((status = 200, description = "The asset.", body = AssetDetail), BadRequest, Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub(crate) async fn audit_asset(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(at): Query<RequiredAsOf>,
) -> Result<Json<AssetDetail>, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.required(&state)?;
    asof::asset_as_of(&state.db, id, at)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("asset {id} did not exist at {}", at.stated().at)))
}

/// `GET /api/v1/audit/digest?as_of=`: the digest of the history as of an instant.
#[utoipa::path(
    get,
    path = "/api/v1/audit/digest",
    operation_id = "historyDigest",
    tag = "audit",
    summary = "The digest of every asset's change chain head as of as_of (default: now, settled): keep it outside cmdb; `cmdb-server verify --as-of --expect` proves the history up to then unchanged.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(AsOfParam),
    responses((status = 200, description = "The digest.", body = crate::service::chains::HistoryDigest), BadRequest, Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn audit_digest(
    State(state): State<Shared>,
    principal: Principal,
    Query(at): Query<AsOfParam>,
) -> Result<Json<crate::service::chains::HistoryDigest>, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = match at.resolve(&state)? {
        Some(at) => at,
        None => state.calendar.settle(chrono::Utc::now(), chrono::Utc::now()),
    };
    Ok(Json(crate::service::chains::digest(&state.db, at).await?))
}

/// `GET /api/v1/audit/snapshots`.
/// The answer of `GET /api/v1/audit/snapshots`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SnapshotList {
    /// Newest first.
    items: Vec<asof::Snapshot>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/snapshots",
    operation_id = "listSnapshots",
    tag = "audit",
    summary = "The snapshots the as-of view starts from.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    responses((status = 200, description = "Newest first.", body = SnapshotList), Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn list_snapshots(
    State(state): State<Shared>,
    principal: Principal,
) -> Result<Json<SnapshotList>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(SnapshotList { items: asof::snapshots(&state.db).await? }))
}

/// The optional body of `POST /api/v1/audit/snapshots`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotBody {
    /// The moment to capture: RFC 3339 or a date; at least two minutes ago. Default: two minutes
    /// ago.
    at: Option<String>,
}

/// Reads an optional JSON body into `T`: empty is `T::default()`.
pub(crate) fn json_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    optional: bool,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BadRequest("request body too large".to_owned())
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })?;
    if optional && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, not {:?}",
            if content_type.is_empty() { "(none)" } else { content_type }
        )));
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    serde_json::from_value(value).map_err(|e| ApiError::Invalid { pointer: String::new(), message: e.to_string() })
}

/// `POST /api/v1/audit/snapshots` (admin): take a snapshot.
#[utoipa::path(
    post,
    path = "/api/v1/audit/snapshots",
    operation_id = "takeSnapshot",
    tag = "audit",
    summary = "Take a snapshot now (of two minutes ago) or at a past time; one a day is taken automatically.",
    description = "Needs the admin role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    request_body(content = Option<SnapshotBody>, content_type = "application/json", description = "Optional: an empty body takes one of two minutes ago."),
    responses((status = 200, description = "The snapshot.", body = asof::SnapshotInfo), BadRequest, Unauthorized, Forbidden, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn take_snapshot(
    State(state): State<Shared>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<asof::SnapshotInfo>, ApiError> {
    require(&principal, Role::Admin)?;
    let body: SnapshotBody = json_body(&headers, body, true)?;
    let at = match body.at.as_deref() {
        Some(text) => state.calendar.parse("at", text, DayEnd::End)?.0,
        None => Utc::now() - chrono::Duration::seconds(asof::SETTLE_SECS),
    };
    let info = asof::snapshot(&state.db, at, &format!("manual:{}", principal.name)).await?;
    audit(&state, &principal, "snapshot.take", &format!("snapshot {} at {}", info.id, info.taken_at.to_rfc3339()))
        .await;
    Ok(Json(info))
}

/// Records an audited action; a failure to record is logged, not fatal to the request.
pub(crate) async fn audit(state: &Shared, principal: &Principal, action: &str, detail: &str) {
    if let Err(e) = crate::service::audit_log::record(&state.db, &principal.name, action, detail).await {
        tracing::warn!(error = %e, action, "cannot write the audit log");
    }
}

use crate::download::{CSV, XLSX, bytes as download};

/// Streams an export file.
async fn stream(file: tempfile::NamedTempFile, content_type: &'static str, name: &str) -> Result<Response, ApiError> {
    crate::download::file(file, content_type, name)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot read the export back: {e}")))
}

/// An audit CSV answer with the history digest as of `at` in its headers (a CSV has no place of
/// its own for it): `X-Cmdb-History-Digest` and `X-Cmdb-History-Digest-As-Of`.
async fn with_digest(state: &AppState, mut response: Response, at: AsOf) -> Result<Response, ApiError> {
    let digest = crate::service::chains::digest(&state.db, at).await?;
    let headers = response.headers_mut();
    for (name, value) in [("x-cmdb-history-digest", digest.digest), ("x-cmdb-history-digest-as-of", digest.as_of.at)] {
        let value = axum::http::HeaderValue::from_str(&value)
            .map_err(|e| ApiError::Internal(format!("a digest header does not encode: {e}")))?;
        headers.insert(name, value);
    }
    Ok(response)
}

/// Describes list filters for the audit log.
fn describe_filters(query: &ListQuery, at: Option<AsOf>) -> String {
    let mut parts = Vec::new();
    for (name, value) in [
        ("q", &query.q),
        ("status", &query.status),
        ("idc", &query.idc),
        ("business_unit", &query.business_unit),
        ("tag", &query.tag),
        ("os", &query.os),
        ("manufacturer", &query.manufacturer),
        ("owner", &query.owner),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{name}={value}"));
        }
    }
    if let Some(at) = at {
        parts.push(format!("as_of={}", at.stated().at));
    }
    if parts.is_empty() { "all assets".to_owned() } else { parts.join(" ") }
}

/// The file name stamp: the effective as-of, or now, in the configured zone with its offset.
fn stamp(state: &AppState, at: Option<AsOf>) -> String {
    match at {
        Some(at) => at.file_stamp(),
        None => state.calendar.file_stamp(Utc::now()),
    }
}

/// `GET /api/v1/export/assets.csv`.
#[utoipa::path(
    get,
    path = "/api/v1/export/assets.csv",
    operation_id = "exportAssetsCsv",
    tag = "export",
    summary = "Every asset the filters select (all pages), live or as of as_of, as CSV.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(AsOfParam, ListFilters),
    responses((status = 200, description = "CSV.", content_type = "text/csv", body = inline(crate::download::FileBody)), BadRequest, Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn export_assets_csv(
    State(state): State<Shared>,
    principal: Principal,
    crate::api::ListQueryParams(query): crate::api::ListQueryParams,
    Query(at): Query<AsOfParam>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.resolve(&state)?;
    let items = match at {
        Some(at) => asof::list_items_as_of(&state.db, &state.snapshot_rows, at.effective, &query).await?,
        None => export::list_items(&state.db, &query).await?,
    };
    let bytes = export::items_csv(&state.db, &items, state.calendar.tz).await?;
    audit(&state, &principal, "export.csv", &format!("{} assets: {}", items.len(), describe_filters(&query, at))).await;
    Ok(download(bytes, CSV, &format!("cmdb-assets-{}.csv", stamp(&state, at))))
}

/// `GET /api/v1/export/assets.xlsx`.
#[utoipa::path(
    get,
    path = "/api/v1/export/assets.xlsx",
    operation_id = "exportAssetsXlsx",
    tag = "export",
    summary = "Every asset the filters select (all pages), live or as of as_of, as XLSX.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(AsOfParam, ListFilters),
    responses((status = 200, description = "The workbook.", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = inline(crate::download::FileBody)), BadRequest, Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn export_assets_xlsx(
    State(state): State<Shared>,
    principal: Principal,
    crate::api::ListQueryParams(query): crate::api::ListQueryParams,
    Query(at): Query<AsOfParam>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.resolve(&state)?;
    let items = match at {
        Some(at) => asof::list_items_as_of(&state.db, &state.snapshot_rows, at.effective, &query).await?,
        None => export::list_items(&state.db, &query).await?,
    };
    let bytes = export::items_xlsx(&state.db, &items, state.calendar.tz).await?;
    audit(&state, &principal, "export.xlsx", &format!("{} assets: {}", items.len(), describe_filters(&query, at)))
        .await;
    Ok(download(bytes, XLSX, &format!("cmdb-assets-{}.xlsx", stamp(&state, at))))
}

/// Query of the audit exports.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct AuditParams {
    /// The moment the asset and component sheets show: an instant (RFC 3339), a local date-time,
    /// or a date (the end of that day in the configured zone).
    #[param(required = true)]
    as_of: Option<String>,
    /// Start of the change period, inclusive (RFC 3339 or a date = its start). Default: the start
    /// of as_of's year.
    from: Option<String>,
    /// End of the change period, inclusive (RFC 3339, or a date = all of it). Default: as_of.
    to: Option<String>,
}

/// Query of the change CSV: a period, and optionally one asset.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct ChangesCsvParams {
    /// Sets the default period (the start of its year to it) when from and to are absent; not
    /// needed when either is given.
    as_of: Option<String>,
    /// Start of the period, inclusive (RFC 3339, or a date = its first instant).
    from: Option<String>,
    /// End of the period, inclusive (RFC 3339, or a date = all of it). Default: as_of, or now.
    to: Option<String>,
    /// Only this asset's changes.
    asset_id: Option<i64>,
}

impl AuditParams {
    /// The period: as_of is required; see [`crate::service::Calendar::audit_period`].
    fn resolve(&self, state: &AppState) -> Result<AuditPeriod, ApiError> {
        Ok(state.calendar.audit_period(self.as_of.as_deref(), self.from.as_deref(), self.to.as_deref())?)
    }
}

/// `GET /api/v1/audit/export.xlsx`.
#[utoipa::path(
    get,
    path = "/api/v1/audit/export.xlsx",
    operation_id = "auditWorkbook",
    tag = "audit",
    summary = "The audit workbook: About, Assets and Components as of as_of, and every Change recorded in [from, to). Long tables continue on numbered sheets.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(AuditParams),
    responses((status = 200, description = "The workbook.", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = inline(crate::download::FileBody)), BadRequest, Unauthorized, Forbidden, Invalid, Unavailable),
)]
pub(crate) async fn audit_workbook(
    State(state): State<Shared>,
    principal: Principal,
    Query(params): Query<AuditParams>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let period = params.resolve(&state)?;
    let file = export::audit_workbook(&state.db, &period).await?;
    audit(&state, &principal, export::AUDIT_ACTION, &export::describe_audit(&period)).await;
    stream(file, XLSX, &export::audit_file_name(&period)).await
}

/// `GET /api/v1/audit/assets.csv`.
#[utoipa::path(
    get,
    path = "/api/v1/audit/assets.csv",
    operation_id = "auditAssetsCsv",
    tag = "audit",
    summary = "The audit's asset sheet as CSV.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(RequiredAsOf),
    responses((status = 200, description = "CSV.", content_type = "text/csv", body = inline(crate::download::FileBody)), BadRequest, Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn audit_assets_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(at): Query<RequiredAsOf>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.required(&state)?;
    let file = export::audit_assets_csv(&state.db, at).await?;
    audit(&state, &principal, export::AUDIT_ACTION, &format!("audit assets CSV as of {}", at.stated().at)).await;
    let response = stream(file, CSV, &format!("cmdb-audit-assets-{}.csv", at.file_stamp())).await?;
    with_digest(&state, response, at).await
}

/// `GET /api/v1/audit/components.csv`.
#[utoipa::path(
    get,
    path = "/api/v1/audit/components.csv",
    operation_id = "auditComponentsCsv",
    tag = "audit",
    summary = "The audit's component sheet as CSV.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(RequiredAsOf),
    responses((status = 200, description = "CSV.", content_type = "text/csv", body = inline(crate::download::FileBody)), BadRequest, Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn audit_components_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(at): Query<RequiredAsOf>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.required(&state)?;
    let file = export::audit_components_csv(&state.db, at).await?;
    audit(&state, &principal, export::AUDIT_ACTION, &format!("audit components CSV as of {}", at.stated().at)).await;
    let response = stream(file, CSV, &format!("cmdb-audit-components-{}.csv", at.file_stamp())).await?;
    with_digest(&state, response, at).await
}

/// `GET /api/v1/audit/changes.csv`.
#[utoipa::path(
    get,
    path = "/api/v1/audit/changes.csv",
    operation_id = "auditChangesCsv",
    tag = "audit",
    summary = "The audit's change sheet as CSV: the changes recorded from..to (as_of, or to, sets the default period).",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(ChangesCsvParams),
    responses((status = 200, description = "CSV.", content_type = "text/csv", body = inline(crate::download::FileBody)), BadRequest, Unauthorized, Forbidden, Invalid, Unavailable),
)]
pub(crate) async fn audit_changes_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(params): Query<ChangesCsvParams>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    // A period of changes needs no as-of: from and/or to are enough.
    let period = state.calendar.change_period(params.as_of.as_deref(), params.from.as_deref(), params.to.as_deref())?;
    let file = export::audit_changes_csv(&state.db, &period, params.asset_id).await?;
    let cal = &state.calendar;
    let detail = format!("audit changes CSV from {} to {}", cal.state(period.from).at, cal.state(period.to).at);
    audit(&state, &principal, export::AUDIT_ACTION, &detail).await;
    let response = stream(file, CSV, &format!("cmdb-audit-changes-{}.csv", period.as_of.file_stamp())).await?;
    // The history behind the changes listed: as of the end of their period (settled).
    let through = state.calendar.settle(period.to, chrono::Utc::now());
    with_digest(&state, response, through).await
}

/// Query of the CSV import.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct ImportParams {
    /// true (default) to only check; false to apply.
    dry_run: Option<bool>,
    /// Import the sheet as a baseline: the state on this date (an instant, a local date-time, or
    /// a date = the end of that day in the configured zone). Admin only. No asset is edited;
    /// each row becomes a baseline record the as-of view reads before the asset's first change.
    as_of: Option<String>,
    /// The file's name, kept with a baseline (default: upload.csv or upload.xlsx).
    file_name: Option<String>,
}

/// The import both paths serve: the format from the Content-Type, the rows checked, applied or
/// reported.
async fn run_import(
    state: &Shared,
    principal: &Principal,
    params: ImportParams,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(principal, Role::Editor)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(state.config.body_limit_bytes)
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let format = match essence.as_str() {
        "text/csv" | "application/csv" | "text/plain" => import::ImportFormat::Csv,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/vnd.ms-excel"
        | "application/vnd.oasis.opendocument.spreadsheet"
        | "application/octet-stream" => import::ImportFormat::Workbook,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type must be text/csv or application/vnd.openxmlformats-officedocument.spreadsheetml.sheet (XLSX), not {:?}",
                if content_type.is_empty() { "(none)" } else { content_type }
            )));
        }
    };
    let baseline = match params.as_of.as_deref() {
        None => None,
        Some(text) => {
            require(principal, Role::Admin)?;
            let default_name = if format == import::ImportFormat::Csv { "upload.csv" } else { "upload.xlsx" };
            Some(import::Baseline::on(&state.calendar, text, params.file_name.as_deref().unwrap_or(default_name))?)
        }
    };
    // Safe by default: a forgotten parameter checks, it does not write.
    let options = import::ImportOptions { dry_run: params.dry_run.unwrap_or(true), baseline };
    let action = options.audit_action();
    let report = match import::import(&state.db, &principal.source(), format, &body, &options).await {
        Ok(report) => report,
        Err(failure) => {
            tracing::warn!(error = %failure, "import failed; nothing applied");
            audit(state, principal, action, &format!("failed: {failure}")).await;
            return Err(match failure.source {
                crate::service::ServiceError::Conflict(m) => {
                    ApiError::Conflict(format!("line {}: {m}; nothing was applied", failure.line))
                }
                other => other.into(),
            });
        }
    };
    if report.applied {
        audit(
            state,
            principal,
            action,
            &format!(
                "{} lines applied ({} created){}",
                report.lines,
                report.results.iter().filter(|r| r.action == "create").count(),
                options
                    .baseline
                    .as_ref()
                    .map(|b| format!(", baseline {} as of {}", b.file_name, b.effective.to_rfc3339()))
                    .unwrap_or_default()
            ),
        )
        .await;
    }
    let status =
        if !report.dry_run && !report.errors.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok((status, Json(report)).into_response())
}

/// `POST /api/v1/import?dry_run=&as_of=` (editor; a baseline: admin).
#[utoipa::path(
    post,
    path = "/api/v1/import",
    operation_id = "importSheet",
    tag = "import",
    summary = "Import the old spreadsheet (CSV or XLSX): hosts, asset tags, business and custom fields by column header. Rows match by id, asset tag, (manufacturer and) serial, then host name. Checks every row first; a dry run (the default) writes nothing; a real run with any invalid row applies nothing (422). With as_of, the sheet is a baseline: the state on that date.",
    description = "Needs the editor role or above; a baseline (as_of) needs the admin role.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    params(ImportParams),
    request_body(content = String, content_type = "text/csv", description = "The sheet: CSV (text/csv) or XLSX (application/vnd.openxmlformats-officedocument.spreadsheetml.sheet); a header row naming the columns, then one asset a row."),
    responses((status = 200, description = "What each row does (or did).", body = import::ImportReport), (status = 422, description = "A real run with invalid rows: nothing applied; what each row would do, with the errors (or an Error when the request itself is invalid).", body = import::ImportReport), BadRequest, Unauthorized, Forbidden, Conflict, TooLarge, UnsupportedMediaType, Unavailable),
)]
pub(crate) async fn import_sheet(
    State(state): State<Shared>,
    principal: Principal,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run_import(&state, &principal, params, &headers, body).await
}

/// `POST /api/v1/import/csv?dry_run=` (editor).
#[utoipa::path(
    post,
    path = "/api/v1/import/csv",
    operation_id = "importCsv",
    tag = "import",
    summary = "The same as POST /api/v1/import (kept for scripts written against it).",
    description = "Needs the editor role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    params(ImportParams),
    request_body(content = String, content_type = "text/csv", description = "The CSV: a header line naming the columns, then one host a line."),
    responses((status = 200, description = "What each line does (or did).", body = import::ImportReport), (status = 422, description = "A real run with invalid lines: nothing applied; what each line would do, with the errors (or an Error when the request itself is invalid).", body = import::ImportReport), BadRequest, Unauthorized, Forbidden, Conflict, TooLarge, UnsupportedMediaType, Unavailable),
)]
pub(crate) async fn import_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run_import(&state, &principal, params, &headers, body).await
}

/// `GET /api/v1/lists`.
#[utoipa::path(
    get,
    path = "/api/v1/lists",
    operation_id = "managedLists",
    tag = "lists",
    summary = "Every managed list (idc, business_unit, tag) with its values.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    responses((status = 200, description = "Lists by name.", body = BTreeMap<String, Vec<lists::ManagedValue>>), Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn all_lists(
    State(state): State<Shared>,
    principal: Principal,
) -> Result<Json<BTreeMap<String, Vec<lists::ManagedValue>>>, ApiError> {
    require(&principal, Role::Viewer)?;
    let mut out = BTreeMap::new();
    for kind in lists::ListKind::ALL {
        out.insert(kind.as_str().to_owned(), lists::values(&state.db, kind).await?);
    }
    Ok(Json(out))
}

/// One managed list's values.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ManagedList {
    /// The values, with how many assets use each.
    items: Vec<lists::ManagedValue>,
}

/// `GET /api/v1/lists/{list}`.
#[utoipa::path(
    get,
    path = "/api/v1/lists/{list}",
    operation_id = "managedList",
    tag = "lists",
    summary = "One managed list with how many assets use each value.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(("list" = String, Path, description = "Which list: idc, business_unit or tag.")),
    responses((status = 200, description = "The values.", body = ManagedList), Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub(crate) async fn one_list(
    State(state): State<Shared>,
    principal: Principal,
    Path(list): Path<String>,
) -> Result<Json<ManagedList>, ApiError> {
    require(&principal, Role::Viewer)?;
    let kind = lists::ListKind::parse(&list)?;
    Ok(Json(ManagedList { items: lists::values(&state.db, kind).await? }))
}

/// The body of `POST /api/v1/lists/{list}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewValue {
    /// The value.
    value: String,
    /// What it means (default empty).
    #[serde(default)]
    description: String,
}

/// `POST /api/v1/lists/{list}` (editor).
#[utoipa::path(
    post,
    path = "/api/v1/lists/{list}",
    operation_id = "addManagedValue",
    tag = "lists",
    summary = "Add a value to a list.",
    description = "Needs the editor role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    params(("list" = String, Path, description = "Which list: idc, business_unit or tag.")),
    request_body(content = NewValue, content_type = "application/json"),
    responses((status = 201, description = "The value.", body = lists::ManagedValue), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn add_value(
    State(state): State<Shared>,
    principal: Principal,
    Path(list): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require(&principal, Role::Editor)?;
    let kind = lists::ListKind::parse(&list)?;
    let body: NewValue = json_body(&headers, body, false)?;
    let value = lists::add(&state.db, kind, &body.value, &body.description, &principal.name).await?;
    audit(&state, &principal, "list.add", &format!("{}: {}", kind.as_str(), value.value)).await;
    Ok((StatusCode::CREATED, Json(value)))
}

/// The body of `PATCH /api/v1/lists/{list}/{value}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Description {
    /// The new description.
    description: String,
}

/// `PATCH /api/v1/lists/{list}/{value}` (editor).
#[utoipa::path(
    patch,
    path = "/api/v1/lists/{list}/{value}",
    operation_id = "describeManagedValue",
    tag = "lists",
    summary = "Change a value's description.",
    description = "Needs the editor role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    params(("list" = String, Path, description = "Which list: idc, business_unit or tag."), ("value" = String, Path, description = "The value.")),
    request_body(content = Description, content_type = "application/json"),
    responses((status = 204, description = "Done."), BadRequest, Unauthorized, Forbidden, NotFound, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn describe_value(
    State(state): State<Shared>,
    principal: Principal,
    Path((list, value)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Role::Editor)?;
    let kind = lists::ListKind::parse(&list)?;
    let body: Description = json_body(&headers, body, false)?;
    lists::describe(&state.db, kind, &value, &body.description).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/lists/{list}/{value}` (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/lists/{list}/{value}",
    operation_id = "removeManagedValue",
    tag = "lists",
    summary = "Remove a value no asset uses.",
    description = "Needs the admin role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    params(("list" = String, Path, description = "Which list: idc, business_unit or tag."), ("value" = String, Path, description = "The value.")),
    responses((status = 204, description = "Done."), Unauthorized, Forbidden, NotFound, Conflict, Unavailable),
)]
pub(crate) async fn remove_value(
    State(state): State<Shared>,
    principal: Principal,
    Path((list, value)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Role::Admin)?;
    let kind = lists::ListKind::parse(&list)?;
    lists::remove(&state.db, kind, &value).await?;
    audit(&state, &principal, "list.remove", &format!("{}: {value}", kind.as_str())).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    summary = "This document.",
    description = "Public.",
    responses((status = 200, description = "OpenAPI 3.1.", body = Object)),
    security(()),
)]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi::DOCUMENT.as_str())
}

/// `GET /api/docs`: the operations, server-rendered through a template (no script, no CDN).
async fn api_docs() -> Result<Html<&'static str>, ApiError> {
    match &*openapi::PAGE {
        Ok(html) => Ok(Html(html.as_str())),
        Err(e) => Err(ApiError::Internal(format!("the API page does not render: {e}"))),
    }
}
