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
use serde_json::{Value, json};

use super::openapi;
use crate::api::{Shared, require};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::service::assets::{AssetDetail, AssetPage, ListQuery};
use crate::service::time::{AsOf, AuditPeriod, DayEnd};
use crate::service::{asof, export, import, lists};
use crate::state::AppState;

/// Routes of the audit API.
pub fn router(state: Arc<AppState>) -> crate::routing::Routes {
    crate::routing::Routes::new()
        .route("/api/v1/audit/assets", get(audit_assets))
        .route("/api/v1/audit/assets/{id}", get(audit_asset))
        .route("/api/v1/audit/snapshots", get(list_snapshots).post(take_snapshot))
        .route("/api/v1/audit/export.xlsx", get(audit_workbook))
        .route("/api/v1/audit/assets.csv", get(audit_assets_csv))
        .route("/api/v1/audit/components.csv", get(audit_components_csv))
        .route("/api/v1/audit/changes.csv", get(audit_changes_csv))
        .route("/api/v1/export/assets.csv", get(export_assets_csv))
        .route("/api/v1/export/assets.xlsx", get(export_assets_xlsx))
        .route("/api/v1/import/csv", post(import_csv))
        .route("/api/v1/lists", get(all_lists))
        .route("/api/v1/lists/{list}", get(one_list).post(add_value))
        .route("/api/v1/lists/{list}/{value}", patch(describe_value).delete(remove_value))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/docs", get(api_docs))
        .with_state(state)
}

/// The `as_of` query parameter.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AsOfParam {
    /// A date (the end of that day in the configured zone), a local date-time, or an instant.
    pub as_of: Option<String>,
}

impl AsOfParam {
    /// The as-of, when given, resolved by the server's calendar.
    pub fn resolve(&self, state: &AppState) -> Result<Option<AsOf>, ApiError> {
        Ok(state.calendar.optional_as_of(self.as_of.as_deref())?)
    }

    /// The as-of, which must be given.
    pub fn required(&self, state: &AppState) -> Result<AsOf, ApiError> {
        Ok(state.calendar.required_as_of(self.as_of.as_deref())?)
    }
}

/// `GET /api/v1/audit/assets?as_of=`: the list as it stood then.
async fn audit_assets(
    State(state): State<Shared>,
    principal: Principal,
    Query(query): Query<ListQuery>,
    Query(at): Query<AsOfParam>,
) -> Result<Json<AssetPage>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(asof::list_as_of(&state.db, &state.snapshot_rows, at.required(&state)?, &query).await?))
}

/// `GET /api/v1/audit/assets/{id}?as_of=`: one asset as it stood then.
async fn audit_asset(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(at): Query<AsOfParam>,
) -> Result<Json<AssetDetail>, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.required(&state)?;
    asof::asset_as_of(&state.db, id, at)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("asset {id} did not exist at {}", at.stated().at)))
}

/// `GET /api/v1/audit/snapshots`.
async fn list_snapshots(State(state): State<Shared>, principal: Principal) -> Result<Json<Value>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(json!({"items": asof::snapshots(&state.db).await?})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    at: Option<String>,
}

/// Reads an optional JSON body into `T`: empty is `T::default()`.
fn json_body<T: serde::de::DeserializeOwned + Default>(
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
async fn take_snapshot(
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
async fn audit(state: &Shared, principal: &Principal, action: &str, detail: &str) {
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
async fn export_assets_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(query): Query<ListQuery>,
    Query(at): Query<AsOfParam>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.resolve(&state)?;
    let items = match at {
        Some(at) => asof::list_items_as_of(&state.db, &state.snapshot_rows, at.effective, &query).await?,
        None => export::list_items(&state.db, &query).await?,
    };
    let bytes = export::items_csv(&items, state.calendar.tz)?;
    audit(&state, &principal, "export.csv", &format!("{} assets: {}", items.len(), describe_filters(&query, at))).await;
    Ok(download(bytes, CSV, &format!("cmdb-assets-{}.csv", stamp(&state, at))))
}

/// `GET /api/v1/export/assets.xlsx`.
async fn export_assets_xlsx(
    State(state): State<Shared>,
    principal: Principal,
    Query(query): Query<ListQuery>,
    Query(at): Query<AsOfParam>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.resolve(&state)?;
    let items = match at {
        Some(at) => asof::list_items_as_of(&state.db, &state.snapshot_rows, at.effective, &query).await?,
        None => export::list_items(&state.db, &query).await?,
    };
    let bytes = export::items_xlsx(&items, state.calendar.tz)?;
    audit(&state, &principal, "export.xlsx", &format!("{} assets: {}", items.len(), describe_filters(&query, at)))
        .await;
    Ok(download(bytes, XLSX, &format!("cmdb-assets-{}.xlsx", stamp(&state, at))))
}

/// Query of the audit exports.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuditParams {
    as_of: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl AuditParams {
    /// The period: as_of is required; see [`crate::service::Calendar::audit_period`].
    fn resolve(&self, state: &AppState) -> Result<AuditPeriod, ApiError> {
        Ok(state.calendar.audit_period(self.as_of.as_deref(), self.from.as_deref(), self.to.as_deref())?)
    }
}

/// `GET /api/v1/audit/export.xlsx`.
async fn audit_workbook(
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
async fn audit_assets_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(at): Query<AsOfParam>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.required(&state)?;
    let file = export::audit_assets_csv(&state.db, at).await?;
    audit(&state, &principal, export::AUDIT_ACTION, &format!("audit assets CSV as of {}", at.stated().at)).await;
    stream(file, CSV, &format!("cmdb-audit-assets-{}.csv", at.file_stamp())).await
}

/// `GET /api/v1/audit/components.csv`.
async fn audit_components_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(at): Query<AsOfParam>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let at = at.required(&state)?;
    let file = export::audit_components_csv(&state.db, at).await?;
    audit(&state, &principal, export::AUDIT_ACTION, &format!("audit components CSV as of {}", at.stated().at)).await;
    stream(file, CSV, &format!("cmdb-audit-components-{}.csv", at.file_stamp())).await
}

/// `GET /api/v1/audit/changes.csv`.
async fn audit_changes_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(params): Query<AuditParams>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let period = params.resolve(&state)?;
    let file = export::audit_changes_csv(&state.db, &period).await?;
    let cal = &state.calendar;
    let detail = format!("audit changes CSV from {} to {}", cal.state(period.from).at, cal.state(period.to).at);
    audit(&state, &principal, export::AUDIT_ACTION, &detail).await;
    stream(file, CSV, &format!("cmdb-audit-changes-{}.csv", period.as_of.file_stamp())).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImportParams {
    dry_run: Option<bool>,
}

/// `POST /api/v1/import/csv?dry_run=` (editor).
async fn import_csv(
    State(state): State<Shared>,
    principal: Principal,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Editor)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(state.config.body_limit_bytes)
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(essence.as_str(), "text/csv" | "application/csv" | "text/plain") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be text/csv, not {:?}",
            if content_type.is_empty() { "(none)" } else { content_type }
        )));
    }
    // Safe by default: a forgotten parameter checks, it does not write.
    let dry_run = params.dry_run.unwrap_or(true);
    let report = match import::import_csv(&state.db, &principal.source(), &body, dry_run).await {
        Ok(report) => report,
        Err(failure) => {
            tracing::warn!(error = %failure, "CSV import failed; nothing applied");
            audit(&state, &principal, "import.csv", &format!("failed: {failure}")).await;
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
            &state,
            &principal,
            "import.csv",
            &format!(
                "{} lines applied ({} created)",
                report.lines,
                report.results.iter().filter(|r| r.action == "create").count()
            ),
        )
        .await;
    }
    let status =
        if !report.dry_run && !report.errors.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok((status, Json(report)).into_response())
}

/// `GET /api/v1/lists`.
async fn all_lists(State(state): State<Shared>, principal: Principal) -> Result<Json<Value>, ApiError> {
    require(&principal, Role::Viewer)?;
    let mut out = serde_json::Map::new();
    for kind in lists::ListKind::ALL {
        out.insert(
            kind.as_str().to_owned(),
            serde_json::to_value(lists::values(&state.db, kind).await?).unwrap_or_default(),
        );
    }
    Ok(Json(Value::Object(out)))
}

/// `GET /api/v1/lists/{list}`.
async fn one_list(
    State(state): State<Shared>,
    principal: Principal,
    Path(list): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require(&principal, Role::Viewer)?;
    let kind = lists::ListKind::parse(&list)?;
    Ok(Json(json!({"items": lists::values(&state.db, kind).await?})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewValue {
    value: String,
    #[serde(default)]
    description: String,
}

/// `POST /api/v1/lists/{list}` (editor).
async fn add_value(
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Description {
    description: String,
}

/// `PATCH /api/v1/lists/{list}/{value}` (editor).
async fn describe_value(
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
async fn remove_value(
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
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi::DOCUMENT.as_str())
}

/// `GET /api/docs`: the operations, server-rendered through a template (no script, no CDN).
async fn api_docs() -> Result<Html<&'static str>, ApiError> {
    match &*openapi::PAGE {
        Ok(html) => Ok(Html(html.as_str())),
        Err(e) => Err(ApiError::Internal(format!("the API page does not render: {e}"))),
    }
}
