//! The REST API handlers (JSON in, JSON out).

pub mod audit;
pub mod openapi;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, TimeZone, Utc};
use cmdb_model::report::{Report, parse_report};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::Row;

use self::audit::AsOfParam;
use crate::auth::{self, AgentKey, Principal, Role};
use crate::db::{from_us, now_us};
use crate::error::ApiError;
use crate::ingest::{Disposition, IngestError, NonceUse, Outcome};
use crate::metrics;
use crate::service::assets::{self, AssetPage, ListQuery};
use crate::state::AppState;
use crate::store::sql::Sql;
use crate::store::{self, CHANGE_COLUMNS, ChangeRecord};

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
fn parse_json_report(body: &[u8]) -> Result<Report, ApiError> {
    std::str::from_utf8(body).map_err(|e| ApiError::BadRequest(format!("the body is not valid UTF-8: {e}")))?;
    // Cheap passes first, so that nesting and syntax are a 400 and only well-formed documents get
    // the schema's 422 with a pointer.
    if nesting_depth(body) > MAX_NESTING {
        return Err(ApiError::BadRequest(format!("JSON nested deeper than {MAX_NESTING} levels")));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    parse_report(body).map_err(|e| ApiError::Invalid { pointer: e.pointer, message: e.message })
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
        let report = parse_json_report(&body)?;
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Outcome>, ApiError> {
    let started = Instant::now();
    let result = async {
        let Some(key) = state.config.legacy.key.as_deref().filter(|_| state.config.legacy.enabled) else {
            return Err(ApiError::NotFound("the legacy endpoint is disabled".to_owned()));
        };
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
        let report = cmdb_model::report::validate(wire)
            .map_err(|e| ApiError::Invalid { pointer: e.pointer, message: e.message })?;
        let timestamp = auth.seconds as i64;
        let nonce_text = auth::token_hash(header);
        let nonce =
            NonceUse { key_id: "legacy", nonce: &nonce_text, timestamp, window_secs: state.config.clock_window_secs };
        state.ingestor.ingest(&report, "legacy", None, Some(&nonce)).await.map_err(ingest_error)
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
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TargetsQuery {
    /// "ssh" or "salt" (informational; both get the same hosts).
    pub mode: Option<String>,
    /// Hosts that have not reported since this time (RFC 3339); default: start of today in the
    /// server's time zone.
    pub since: Option<String>,
}

/// One host to collect.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Target {
    /// Asset id.
    pub asset_id: i64,
    /// Host name.
    pub hostname: String,
    /// Address to connect to, when not the host name.
    pub manage_address: Option<String>,
    /// SSH port, when set.
    pub ssh_port: Option<i64>,
    /// Salt minion id (default: the host name).
    pub salt_minion_id: String,
}

/// Start of today in `tz`, as UTC.
pub fn start_of_today(tz: chrono_tz::Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).date_naive();
    let midnight = local.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&midnight).earliest().map(|t| t.with_timezone(&Utc)).unwrap_or(now)
}

/// `GET /api/v1/collect-targets`: online hosts that have not reported since the cutoff.
pub async fn collect_targets(
    State(state): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(query): Query<TargetsQuery>,
) -> Result<Json<Value>, ApiError> {
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
        None => start_of_today(state.config.tz(), Utc::now()),
    };
    let rows = sqlx::query(
        "SELECT id, hostname, manage_address, ssh_port, salt_minion_id FROM assets \
         WHERE status = 'online' AND (last_seen_at IS NULL OR last_seen_at < $1) ORDER BY id",
    )
    .bind(cutoff.timestamp_micros())
    .fetch_all(state.db.reader())
    .await?;
    let mut targets = Vec::with_capacity(rows.len());
    for row in rows {
        let hostname: String = row.try_get(1)?;
        let minion: Option<String> = row.try_get(4)?;
        targets.push(Target {
            asset_id: row.try_get(0)?,
            salt_minion_id: minion.unwrap_or_else(|| hostname.clone()),
            hostname,
            manage_address: row.try_get(2)?,
            ssh_port: row.try_get(3)?,
        });
    }
    Ok(Json(json!({"cutoff": cutoff, "mode": query.mode, "targets": targets})))
}

/// `GET /api/v1/assets[?as_of=]`: the list now, or as it stood at `as_of`.
pub async fn list_assets(
    State(state): State<Shared>,
    principal: Principal,
    Query(query): Query<ListQuery>,
    Query(at): Query<AsOfParam>,
) -> Result<Json<AssetPage>, ApiError> {
    require(&principal, Role::Viewer)?;
    match at.resolve(&state)? {
        Some(at) => Ok(Json(crate::service::asof::list_as_of(&state.db, at, &query).await?)),
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

/// `POST /api/v1/assets`: register a host (editor).
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

/// Pagination of newest-first lists.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PageQuery {
    /// Only rows with a smaller id (the `next` of the previous page).
    pub before: Option<i64>,
    /// Rows per page (max 1000).
    pub limit: Option<i64>,
    /// Only this asset.
    pub asset_id: Option<i64>,
}

/// A page of change records.
#[derive(Debug, Serialize)]
pub struct ChangePage {
    /// The records.
    pub items: Vec<ChangeRecord>,
    /// Cursor for the next page, when there may be more.
    pub next: Option<String>,
}

/// `GET /api/v1/assets/{id}/changes`: newest first.
pub async fn asset_changes(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(page): Query<PageQuery>,
) -> Result<Json<ChangePage>, ApiError> {
    require(&principal, Role::Viewer)?;
    let limit = page.limit.unwrap_or(200).clamp(1, 1000);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE asset_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    )))
    .bind(id)
    .bind(page.before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(state.db.reader())
    .await?;
    let items = rows.iter().map(store::change_row).collect::<Result<Vec<_>, _>>()?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|c| c.id.to_string())).flatten();
    Ok(Json(ChangePage { items, next }))
}

/// Query of the change feed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FeedQuery {
    /// The `next` cursor of the previous page (absent: from the beginning).
    pub after: Option<String>,
    /// Records per page (max 1000).
    pub limit: Option<i64>,
}

fn parse_cursor(text: &str) -> Result<(i64, i64), ApiError> {
    let bad = || ApiError::Invalid { pointer: "after".to_owned(), message: format!("malformed cursor {text:?}") };
    let (tx, id) = text.split_once('-').ok_or_else(bad)?;
    Ok((tx.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?))
}

/// `GET /api/v1/changes?after=<cursor>`: every change, oldest first. A consumer that follows
/// `next` never misses a change: on PostgreSQL the feed only shows transactions older than the
/// oldest one still writing in this database (see [`feed_horizon`]), ordered by transaction id,
/// so a late commit cannot land behind a cursor; on SQLite commits are serialized, so ids are
/// commit order. The price on PostgreSQL: a long write transaction in the cmdb database delays
/// (never drops) what the feed shows until it ends.
pub async fn change_feed(
    State(state): State<Shared>,
    principal: Principal,
    Query(query): Query<FeedQuery>,
) -> Result<Json<ChangePage>, ApiError> {
    require(&principal, Role::Viewer)?;
    let (tx, id) = match query.after.as_deref() {
        Some(cursor) => parse_cursor(cursor)?,
        None => (-1, -1),
    };
    let limit = query.limit.unwrap_or(500).clamp(1, 1000);
    let horizon = match state.db.backend() {
        crate::db::Backend::Postgres => Some(feed_horizon(state.db.reader()).await?),
        crate::db::Backend::Sqlite => None,
    };
    let mut q = Sql::new(format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE (txid, id) > ("));
    q.bind(tx).push(", ").bind(id).push(")");
    if let Some(horizon) = horizon {
        q.push(" AND txid < ").bind(horizon);
    }
    q.push(" ORDER BY txid, id LIMIT ").bind(limit);
    let rows = q.query().fetch_all(state.db.reader()).await?;
    let items = rows.iter().map(store::change_row).collect::<Result<Vec<_>, _>>()?;
    let next = items.last().map(|c| c.cursor.clone()).or(query.after);
    Ok(Json(ChangePage { items, next }))
}

/// The PostgreSQL feed horizon: every transaction with a smaller id has ended, or belongs to
/// another database and so never writes our `changes`. It is the smallest transaction id still
/// running in this database, else the current snapshot's `xmax`.
///
/// Why not `pg_snapshot_xmin`: that horizon is cluster-wide, so any transaction in any database
/// of the cluster (a neighbour's batch job, `VACUUM`, another test) would hold the feed back.
///
/// The order of the three statements is what makes this safe, and each runs in its own implicit
/// transaction so `pg_stat_activity` is read fresh: (1) `xmax` is read first; (2) the running
/// transactions of this database are read after it, so any transaction below `xmax` that is not
/// listed had already ended; (3) the caller's query takes its snapshot after that, so it sees
/// every such ended transaction. A transaction that gets its id after (1) gets one at or above
/// `xmax` and stays beyond the horizon. `backend_xid` is a 32-bit `xid`; it is widened to the
/// 64-bit ids in `changes.txid` relative to `xmax`, which is exact because a running transaction
/// is always within 2^31 of it (one that got its id at or after `xmax` is beyond the horizon
/// anyway). Sessions are listed with their `backend_xid` for the role that runs them, so every
/// cmdb-server instance on the database must connect as the same role (or one granted
/// `pg_read_all_stats`).
async fn feed_horizon(pool: &sqlx::AnyPool) -> Result<i64, ApiError> {
    let xmax: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetch_one(pool).await?;
    let oldest_running: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(CASE WHEN behind < 2147483648 THEN $1 - behind ELSE $1 END) FROM ( \
           SELECT ((($1 - backend_xid::text::bigint) % 4294967296) + 4294967296) % 4294967296 AS behind \
           FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL) AS running",
    )
    .bind(xmax)
    .fetch_one(pool)
    .await?;
    Ok(oldest_running.map_or(xmax, |oldest| oldest.min(xmax)))
}

/// One collection error.
#[derive(Debug, Serialize)]
pub struct ErrorRow {
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

/// `GET /api/v1/errors`: collection errors, newest first.
pub async fn errors(
    State(state): State<Shared>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    require(&principal, Role::Viewer)?;
    let limit = page.limit.unwrap_or(200).clamp(1, 1000);
    let mut q = Sql::new(
        "SELECT id, asset_id, report_id, hostname, source, section, message, collected_at, recorded_at FROM collection_errors WHERE id < ",
    );
    q.bind(page.before.unwrap_or(i64::MAX));
    if let Some(asset) = page.asset_id {
        q.push(" AND asset_id = ").bind(asset);
    }
    q.push(" ORDER BY id DESC LIMIT ").bind(limit);
    let rows = q.query().fetch_all(state.db.reader()).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(ErrorRow {
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
    let next = (items.len() as i64 == limit).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(Json(json!({"items": items, "next": next})))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    state.db.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::Unavailable("the database is unreachable".to_owned())
    })?;
    Ok(Json(json!({"status": "ready", "time": from_us(now_us())})))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_text() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics::render())
}

/// Any route that does not exist.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_of_today_follows_the_time_zone() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 20, 0, 0).single().expect("valid");
        let shanghai = start_of_today(chrono_tz::Asia::Shanghai, now);
        assert_eq!(shanghai, Utc.with_ymd_and_hms(2026, 11, 25, 16, 0, 0).single().expect("valid"));
        assert_eq!(
            start_of_today(chrono_tz::UTC, now),
            Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).single().expect("v")
        );
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert_eq!(nesting_depth(br#"{"a": [1, {"b": "[[[{"}]}"#), 3);
        assert_eq!(nesting_depth(br#"{"a": "\\\"[["}"#), 1);
        assert_eq!(nesting_depth(b"[[[]]]"), 3);
    }

    #[test]
    fn cursors_parse() {
        assert_eq!(parse_cursor("12-34").ok(), Some((12, 34)));
        assert!(parse_cursor("x").is_err());
    }
}
