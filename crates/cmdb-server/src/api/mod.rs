//! The REST API handlers (JSON in, JSON out).

pub mod audit;
pub mod openapi;
pub mod record;
pub mod stocktakes;
pub mod strict_query;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use cmdb_model::report::{Report, ReportLimits, parse_report_with};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Digest;

use self::audit::AsOfParam;
use crate::auth::{self, AgentKey, Principal, Role};
use crate::db::{from_us, now_us};
use crate::error::ApiError;
use crate::error::responses::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, TooLarge, Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::ingest::{Disposition, IngestError, LEGACY_SOURCE, NonceUse, Outcome};
use crate::metrics;
use crate::service::assets::{self, AssetPage, ListQuery};
use crate::service::collection_errors::{CollectionError, ErrorFilter};
use crate::state::AppState;

/// Shared state handle.
pub type Shared = Arc<AppState>;

impl FromRequestParts<Shared> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = value.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        if let Some(token) = token {
            return match auth::token_principal(state.db.reader(), token).await? {
                Some(principal) => Ok(principal),
                None => Err(ApiError::Unauthorized("unknown or revoked token".to_owned())),
            };
        }
        // People logged in to the web UI may call the API with their session cookie (writes need
        // the session's X-CSRF-Token header); the user's role governs like a token's.
        if let Some(principal) = crate::web::session::api_principal(parts, state).await? {
            return Ok(principal);
        }
        Err(ApiError::Unauthorized("missing bearer token (Authorization: Bearer cmdb_...) or web session".to_owned()))
    }
}

/// The asset list's query: its named parameters and the `custom.<key>` filters (which a plain
/// `Query<ListQuery>` cannot name).
pub struct ListQueryParams(pub ListQuery);

impl<S: Send + Sync> FromRequestParts<S> for ListQueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ListQueryParams(ListQuery::from_query(parts.uri.query())?))
    }
}

/// Refuses principals below `role`.
pub fn require(principal: &Principal, role: Role) -> Result<(), ApiError> {
    if principal.role >= role {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("this needs the {} role; you are {}", role.as_str(), principal.role.as_str())))
    }
}

fn body_or_error(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
        }
    })
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, not {:?}",
            if content_type.is_empty() { "(none)" } else { content_type }
        )))
    }
}

/// Reads a JSON body: syntax errors (and invalid UTF-8, excessive nesting) are 400, type and
/// schema errors 422 with the JSON pointer of the offending value.
fn parse_json_report(body: &[u8], limits: &ReportLimits) -> Result<Report, ApiError> {
    std::str::from_utf8(body).map_err(|e| ApiError::BadRequest(format!("the body is not valid UTF-8: {e}")))?;
    // Cheap passes first, so that nesting and syntax are a 400 and only well-formed documents get
    // the schema's 422 with a pointer.
    if nesting_depth(body) > MAX_NESTING {
        return Err(ApiError::BadRequest(format!("JSON nested deeper than {MAX_NESTING} levels")));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    parse_report_with(body, limits).map_err(|e| ApiError::Invalid { pointer: e.pointer, message: e.message })
}

/// Deepest nesting of arrays and objects accepted (serde_json's own limit is 128).
const MAX_NESTING: usize = 127;

/// The deepest nesting of `[` and `{` outside strings; a linear scan without allocation.
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn target(uri: &axum::http::Uri) -> String {
    uri.path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_else(|| uri.path().to_owned())
}

/// Checks an agent's signature; the nonce is recorded by the caller.
async fn agent(
    state: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(AgentKey, cmdb_model::signing::SignedHeader), ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match auth::verify_agent(
        &state.keys,
        state.db.reader(),
        state.config.clock_window_secs,
        authorization,
        method.as_str(),
        &target(uri),
        body,
    )
    .await?
    {
        Ok(found) => Ok(found),
        Err(e) => {
            tracing::warn!(reason = %e, "agent request refused");
            Err(ApiError::Unauthorized(e.to_string()))
        }
    }
}

fn ingest_error(error: IngestError) -> ApiError {
    match error {
        IngestError::Replay => ApiError::Unauthorized("nonce already used (replayed request)".to_owned()),
        IngestError::Forbidden(message) => ApiError::Forbidden(message),
        IngestError::Conflict(message) => ApiError::Conflict(message),
        IngestError::Inconsistent(message) => {
            tracing::error!(%message, "history and state disagree");
            ApiError::Internal(message)
        }
        IngestError::Db(e) => e.into(),
        IngestError::Corrupt(e) => crate::store::StoreError::Corrupt(e).into(),
        IngestError::Aborted(message) => ApiError::Unavailable(message),
    }
}

fn outcome_label(result: &Result<(Outcome, Disposition), ApiError>) -> &'static str {
    match result {
        Ok((_, d)) => d.as_str(),
        Err(e) => match e.status().0 {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "invalid",
            _ => "error",
        },
    }
}

/// `POST /api/v1/reports`: ingest one signed report.
#[utoipa::path(
    post,
    path = "/api/v1/reports",
    operation_id = "postReport",
    tag = "ingest",
    summary = "Ingest one signed collector report (HMAC-signed by an agent key).",
    description = "Signed by an agent key (CMDB-HMAC-SHA256, docs/report-format.md).",
    request_body(
        content = Object,
        content_type = "application/json",
        description = "A report in format v1 (docs/report-format.md, schema/report-v1.schema.json)."
    ),
    responses(
        (status = 200, description = "What the server did with the report (repeating a report id returns the first outcome).", body = Outcome),
        BadRequest, Unauthorized, Forbidden, TooLarge, UnsupportedMediaType, Invalid, Unavailable,
    ),
    security(("agentSignature" = [])),
)]
pub async fn post_report(
    State(state): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Outcome>, ApiError> {
    let started = Instant::now();
    let result = async {
        let body = body_or_error(body, state.config.body_limit_bytes)?;
        require_json(&headers)?;
        let (key, header) = agent(&state, &method, &uri, &headers, &body).await?;
        let report = parse_json_report(&body, &state.config.limits)?;
        let nonce = NonceUse {
            key_id: &key.key_id,
            nonce: &header.nonce,
            timestamp: header.timestamp,
            window_secs: state.config.clock_window_secs,
        };
        state.ingestor.ingest(&report, report.agent.mode.as_str(), Some(&key), Some(&nonce)).await.map_err(ingest_error)
    }
    .await;
    metrics::report(outcome_label(&result), started.elapsed().as_secs_f64());
    let (outcome, disposition) = result?;
    if disposition == Disposition::Changed {
        metrics::changes(outcome.changes);
    }
    tracing::info!(
        report_id = %outcome.report_id,
        asset_id = outcome.asset_id,
        outcome = disposition.as_str(),
        changes = outcome.changes,
        "report"
    );
    Ok(Json(outcome))
}

/// `POST /api/asset`: the course client's payload (opt-in).
pub async fn post_legacy(
    State(state): State<Shared>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Outcome>, ApiError> {
    let started = Instant::now();
    let result = async {
        let Some(key) = state.config.legacy.key.as_deref().filter(|_| state.config.legacy.enabled) else {
            return Err(ApiError::NotFound("the legacy endpoint is disabled".to_owned()));
        };
        // The peer itself, never X-Forwarded-For: the allow-list is about who reaches us.
        let peer = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        let allowed = peer.is_some_and(|axum::extract::ConnectInfo(address)| {
            let ip = address.ip().to_canonical();
            state.config.legacy.allow_from.iter().any(|network| network.contains(&ip))
        });
        if !allowed {
            return Err(ApiError::Forbidden(
                "the legacy endpoint is not open to this address (legacy.allow_from)".to_owned(),
            ));
        }
        let body = body_or_error(body, state.config.body_limit_bytes)?;
        let header = headers.get("auth-api").and_then(|v| v.to_str().ok()).unwrap_or("");
        let auth = cmdb_model::legacy::verify_auth_header(header, key)
            .ok_or_else(|| ApiError::Unauthorized("missing or invalid auth-api header".to_owned()))?;
        let now = Utc::now();
        if (auth.seconds - now.timestamp() as f64).abs() > state.config.clock_window_secs as f64 {
            return Err(ApiError::Unauthorized("auth-api timestamp outside the allowed clock window".to_owned()));
        }
        let payload: Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        let report_id = cmdb_model::legacy::legacy_report_id(key, &auth.ts);
        let wire = cmdb_model::legacy::to_report(&payload, report_id, now)
            .map_err(|e| ApiError::Invalid { pointer: e.pointer, message: e.message })?;
        let report = cmdb_model::report::validate_with(wire, &state.config.limits)
            .map_err(|e| ApiError::Invalid { pointer: e.pointer, message: e.message })?;
        let timestamp = auth.seconds as i64;
        let nonce_text = auth::token_hash(header);
        let nonce = NonceUse {
            key_id: LEGACY_SOURCE,
            nonce: &nonce_text,
            timestamp,
            window_secs: state.config.clock_window_secs,
        };
        state.ingestor.ingest(&report, LEGACY_SOURCE, None, Some(&nonce)).await.map_err(ingest_error)
    }
    .await;
    metrics::report(outcome_label(&result), started.elapsed().as_secs_f64());
    let (outcome, disposition) = result?;
    if disposition == Disposition::Changed {
        metrics::changes(outcome.changes);
    }
    Ok(Json(outcome))
}

/// Query of `GET /api/v1/collect-targets`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct TargetsQuery {
    /// The collector's transport, ssh or salt: hosts sharing an address (ssh) or a minion id (salt)
    /// with another host are withheld; absent, both.
    pub mode: Option<String>,
    /// Cutoff (RFC 3339): hosts that have not reported since; default the start of today in the
    /// server's time zone.
    pub since: Option<String>,
}

/// The answer of `GET /api/v1/collect-targets`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CollectTargets {
    /// The cutoff used.
    pub cutoff: DateTime<Utc>,
    /// The mode asked for.
    pub mode: Option<String>,
    /// Reports may carry collected_for (the target's asset id).
    pub accepts_collected_for: bool,
    /// The hosts.
    pub targets: Vec<Target>,
}

pub use crate::service::collect::Target;

/// `GET /api/v1/collect-targets`: online hosts that have not reported since the cutoff.
#[utoipa::path(
    get,
    path = "/api/v1/collect-targets",
    operation_id = "collectTargets",
    tag = "ingest",
    summary = "Online hosts that have not reported since a cutoff (for SSH/Salt collectors).",
    description = "Signed by an agent key (CMDB-HMAC-SHA256, docs/report-format.md).",
    params(TargetsQuery),
    responses((status = 200, description = "The cutoff and the hosts.", body = CollectTargets), Unauthorized, Invalid, Unavailable),
    security(("agentSignature" = [])),
)]
pub async fn collect_targets(
    State(state): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(query): Query<TargetsQuery>,
) -> Result<Json<CollectTargets>, ApiError> {
    let (key, header) = agent(&state, &method, &uri, &headers, b"").await?;
    let mut conn = state.db.writer().acquire().await?;
    if !auth::record_nonce(&mut conn, &key.key_id, &header.nonce, header.timestamp, state.config.clock_window_secs)
        .await?
    {
        return Err(ApiError::Unauthorized("nonce already used (replayed request)".to_owned()));
    }
    drop(conn);
    let cutoff = match query.since.as_deref() {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| ApiError::Invalid { pointer: "since".to_owned(), message: format!("not RFC 3339: {e}") })?
            .with_timezone(&Utc),
        // The start of today in the configured zone.
        None => state.calendar.start_of(state.calendar.today(Utc::now()))?,
    };
    let crate::service::collect::Targets { targets, withheld } =
        crate::service::collect::targets(&state.db, cutoff, query.mode.as_deref()).await?;
    crate::service::collect::record_withheld(&state.db, &withheld).await?;
    // `accepts_collected_for` tells agents they may tie each report to its target's asset id
    // (docs/report-format.md); agents never send it to servers that do not say so.
    Ok(Json(CollectTargets { cutoff, mode: query.mode, accepts_collected_for: true, targets }))
}

/// `GET /api/v1/assets[?as_of=]`: the list now, or as it stood at `as_of`.
#[utoipa::path(
    get,
    path = "/api/v1/assets",
    operation_id = "listAssets",
    tag = "assets",
    summary = "List and search assets, now or as they stood at as_of.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(ListQuery, assets::CustomFilterParams, AsOfParam),
    responses((status = 200, description = "One page.", body = AssetPage), BadRequest, Unauthorized, Forbidden, Unavailable),
)]
pub async fn list_assets(
    State(state): State<Shared>,
    principal: Principal,
    ListQueryParams(query): ListQueryParams,
    Query(at): Query<AsOfParam>,
) -> Result<Json<AssetPage>, ApiError> {
    require(&principal, Role::Viewer)?;
    match at.resolve(&state)? {
        Some(at) => Ok(Json(crate::service::asof::list_as_of(&state.db, &state.snapshot_rows, at, &query).await?)),
        None => Ok(Json(assets::list(&state.db, &query).await?)),
    }
}

fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    let body = body_or_error(body, limit)?;
    require_json(headers)?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::Invalid { pointer: String::new(), message: "expected a JSON object".to_owned() }),
        Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
    }
}

/// Business fields of a request body: any subset; null clears. Documents the body only: the
/// handlers read it as a JSON object, because an absent field and a null one differ.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BusinessPatch {
    /// Data centre (a value of the idc list).
    idc: Option<String>,
    /// Cabinet.
    cabinet: Option<String>,
    /// Position in the cabinet.
    cabinet_u: Option<i64>,
    /// Business unit (a value of the business_unit list).
    business_unit: Option<String>,
    /// Owner.
    owner: Option<String>,
    /// Status: racked, online, offline or retired.
    status: Option<String>,
    /// Tags (values of the tag list): an array, or one comma-separated string.
    tags: Option<Vec<String>>,
    /// Address for SSH collection.
    manage_address: Option<String>,
    /// SSH port (a number or a numeric string).
    ssh_port: Option<u16>,
    /// Salt minion id.
    salt_minion_id: Option<String>,
    /// Notes.
    notes: Option<String>,
}

/// The body of `POST /api/v1/assets`: the host name and any business fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Registration {
    /// Host name.
    hostname: String,
    /// Business fields.
    #[serde(flatten)]
    business: BusinessPatch,
}

/// `POST /api/v1/assets`: register a host (editor).
#[utoipa::path(
    post,
    path = "/api/v1/assets",
    operation_id = "registerAsset",
    tag = "assets",
    summary = "Register a host by hand (hostname plus business fields).",
    description = "Needs the editor role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    request_body(content = Registration, content_type = "application/json"),
    responses(
        (status = 201, description = "The new asset.", body = assets::AssetDetail),
        BadRequest, Unauthorized, Forbidden, Conflict, TooLarge, UnsupportedMediaType, Invalid, Unavailable,
    ),
)]
pub async fn register_asset(
    State(state): State<Shared>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require(&principal, Role::Editor)?;
    let fields = json_object(&headers, body, state.config.body_limit_bytes)?;
    let id = assets::register(&state.db, &principal.source(), fields).await?;
    Ok((StatusCode::CREATED, Json(assets::detail(&state.db, id).await?)))
}

/// `GET /api/v1/assets/{id}[?as_of=]`: one asset now, or as it stood at `as_of`.
#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}",
    operation_id = "getAsset",
    tag = "assets",
    summary = "One asset with every section and component, now or as it stood at as_of.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(("id" = i64, Path, description = "Asset id."), AsOfParam),
    responses((status = 200, description = "The asset.", body = assets::AssetDetail), BadRequest, Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub async fn get_asset(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(at): Query<AsOfParam>,
) -> Result<Json<assets::AssetDetail>, ApiError> {
    require(&principal, Role::Viewer)?;
    match at.resolve(&state)? {
        Some(at) => crate::service::asof::asset_as_of(&state.db, id, at)
            .await?
            .map(Json)
            .ok_or_else(|| ApiError::NotFound(format!("asset {id} did not exist at {}", at.stated().at))),
        None => Ok(Json(assets::detail(&state.db, id).await?)),
    }
}

/// `PATCH /api/v1/assets/{id}`: edit business fields (editor).
#[utoipa::path(
    patch,
    path = "/api/v1/assets/{id}",
    operation_id = "patchAsset",
    tag = "assets",
    summary = "Edit business fields (recorded as changes with source user:<name>).",
    description = "Needs the editor role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    params(("id" = i64, Path, description = "Asset id.")),
    request_body(content = BusinessPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The asset after the edit.", body = assets::AssetDetail),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, UnsupportedMediaType, Invalid, Unavailable,
    ),
)]
pub async fn patch_asset(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<assets::AssetDetail>, ApiError> {
    require(&principal, Role::Editor)?;
    let patch = json_object(&headers, body, state.config.body_limit_bytes)?;
    assets::patch_business(&state.db, id, &principal.source(), &patch).await?;
    Ok(Json(assets::detail(&state.db, id).await?))
}

/// Pagination of an asset's changes (newest first).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct PageQuery {
    /// Only rows with a smaller id (the `next` of the previous page).
    pub before: Option<i64>,
    /// Rows per page (default 200, max 1000).
    pub limit: Option<i64>,
    /// Only changes recorded at or after this: an instant, a local date-time, or a date (its
    /// first instant in the configured zone).
    pub from: Option<String>,
    /// Only changes recorded at or before this: an instant, a local date-time, or a date (all of
    /// it: the end of that day in the configured zone).
    pub to: Option<String>,
}

/// Query of the collection errors (newest first).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ErrorsQuery {
    /// Only rows with a smaller id (the `next` of the previous page).
    pub before: Option<i64>,
    /// Rows per page (default 200, max 1000).
    pub limit: Option<i64>,
    /// Only this asset.
    pub asset_id: Option<i64>,
}

/// A page of collection errors.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorPage {
    /// The errors, newest first.
    pub items: Vec<CollectionError>,
    /// The `before` of the next page, when there may be one.
    pub next: Option<String>,
}

pub use crate::service::history::ChangePage;

/// `GET /api/v1/assets/{id}/changes`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}/changes",
    operation_id = "assetChanges",
    tag = "history",
    summary = "An asset's change records, newest first.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(("id" = i64, Path, description = "Asset id."), PageQuery),
    responses((status = 200, description = "A page.", body = ChangePage), Unauthorized, Forbidden, Unavailable),
)]
pub async fn asset_changes(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(page): Query<PageQuery>,
) -> Result<Json<ChangePage>, ApiError> {
    require(&principal, Role::Viewer)?;
    let limit = page.limit.unwrap_or(200).clamp(1, 1000);
    let span = state.calendar.span(page.from.as_deref(), page.to.as_deref())?;
    let items = crate::service::history::asset_changes(&state.db, id, page.before, span, limit).await?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|c| c.id.to_string())).flatten();
    Ok(Json(ChangePage { items, next }))
}

/// Query of the change feed.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct FeedQuery {
    /// The `next` cursor of the previous page (absent: from the beginning).
    pub after: Option<String>,
    /// Records per page (max 1000).
    pub limit: Option<i64>,
    /// Only this asset's changes.
    pub asset_id: Option<i64>,
    /// Only the changes of the assets whose current or former host name contains this (or of the
    /// asset with this id), as the change log's asset filter.
    pub asset: Option<String>,
    /// Only changes recorded at or after this: an instant, a local date-time, or a date (its
    /// first instant in the configured zone).
    pub from: Option<String>,
    /// Only changes recorded at or before this: an instant, a local date-time, or a date (all of
    /// it: the end of that day in the configured zone).
    pub to: Option<String>,
    /// Only this section's changes (`disk`, `business`, ...).
    pub section: Option<String>,
    /// Only these actions, comma-separated: added, removed, changed.
    pub action: Option<String>,
    /// Only this source: agent, ssh, salt, legacy, `user` (any person) or `user:<name>`.
    pub source: Option<String>,
}

/// `GET /api/v1/changes?after=<cursor>`: every change, oldest first. A consumer that follows
/// `next` never misses a change: on PostgreSQL the feed only shows transactions older than the
/// oldest one still writing in this database (see [`feed_horizon`]), ordered by transaction id,
/// so a late commit cannot land behind a cursor; on SQLite commits are serialized, so ids are
/// commit order. The price on PostgreSQL: a long write transaction in the cmdb database delays
/// (never drops) what the feed shows until it ends.
#[utoipa::path(
    get,
    path = "/api/v1/changes",
    operation_id = "changeFeed",
    tag = "history",
    summary = "Every change, oldest first; follow next to never miss one.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(FeedQuery),
    responses((status = 200, description = "A page.", body = ChangePage), Unauthorized, Forbidden, Invalid, Unavailable),
)]
pub async fn change_feed(
    State(state): State<Shared>,
    principal: Principal,
    Query(query): Query<FeedQuery>,
) -> Result<Json<ChangePage>, ApiError> {
    require(&principal, Role::Viewer)?;
    let limit = query.limit.unwrap_or(500).clamp(1, 1000);
    let actions = crate::service::history::parse_actions(query.action.as_deref().unwrap_or_default().split(','))
        .map_err(|message| ApiError::Invalid { pointer: "/action".to_owned(), message })?;
    // Both given: the changes of the named assets that are also asset_id.
    let named = match query.asset.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(text) => Some(crate::service::history::assets_matching(&state.db, text).await?),
        None => None,
    };
    let assets = match (query.asset_id, named) {
        (Some(id), Some(ids)) => Some(ids.into_iter().filter(|i| *i == id).collect()),
        (Some(id), None) => Some(vec![id]),
        (None, ids) => ids,
    };
    let filter = crate::service::history::FeedFilter {
        assets,
        span: state.calendar.span(query.from.as_deref(), query.to.as_deref())?,
        section: query.section.clone().filter(|s| !s.is_empty()),
        actions,
        source: query.source.clone().filter(|s| !s.is_empty()),
    };
    Ok(Json(crate::service::history::change_feed(&state.db, query.after.as_deref(), filter, limit).await?))
}

/// `GET /api/v1/errors`: collection errors, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/errors",
    operation_id = "collectionErrors",
    tag = "history",
    summary = "Collection errors reported by collectors, newest first.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(ErrorsQuery),
    responses((status = 200, description = "A page.", body = ErrorPage), Unauthorized, Forbidden, Unavailable),
)]
pub async fn errors(
    State(state): State<Shared>,
    principal: Principal,
    Query(page): Query<ErrorsQuery>,
) -> Result<Json<ErrorPage>, ApiError> {
    require(&principal, Role::Viewer)?;
    let limit = page.limit.unwrap_or(200).clamp(1, 1000);
    let filter = ErrorFilter { asset_id: page.asset_id, before: page.before, ..ErrorFilter::default() };
    let items = crate::service::collection_errors::list(&state.db, &filter, limit).await?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(Json(ErrorPage { items, next }))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers and the instance is not shutting down (while it drains,
/// 503, so a load balancer sends new work to the other instances).
pub async fn readyz(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        return Err(ApiError::Unavailable("this instance is shutting down".to_owned()));
    }
    state.db.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::Unavailable("the database is unreachable".to_owned())
    })?;
    Ok(Json(json!({"status": "ready", "time": from_us(now_us())})))
}

/// `GET /metrics`: Prometheus text format; with `[metrics] token` set, only for a request that
/// presents it as a bearer token (compared in constant time).
pub async fn metrics_text(State(state): State<Shared>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = state.config.metrics.token.as_deref() {
        use subtle::ConstantTimeEq;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let digest = |text: &str| sha2::Sha256::digest(text.as_bytes());
        // Compared as digests, so the comparison's time does not depend on the lengths either.
        if !bool::from(digest(presented).ct_eq(&digest(token))) {
            return Err(ApiError::Unauthorized("/metrics needs the metrics bearer token ([metrics] token)".to_owned()));
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics::render()))
}

/// Any route that does not exist.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert_eq!(nesting_depth(br#"{"a": [1, {"b": "[[[{"}]}"#), 3);
        assert_eq!(nesting_depth(br#"{"a": "\\\"[["}"#), 1);
        assert_eq!(nesting_depth(b"[[[]]]"), 3);
    }
}
