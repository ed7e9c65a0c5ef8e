//! The application: shared state, the router, and the server loop with its background tasks.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::api;
use crate::config::ServerConfig;
use crate::db::Db;
use crate::routing::Routes;

pub use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The HTTP application (used by `serve` and driven in-process by tests).
pub fn app(state: Arc<AppState>) -> Router {
    app_with_paths(state).0
}

/// The HTTP application and the path of every route it serves (for tests that call them all).
pub fn app_with_paths(state: Arc<AppState>) -> (Router, Vec<&'static str>) {
    let body_limit = state.config.body_limit_bytes;
    let (router, paths) = Routes::new()
        .route("/api/v1/reports", post(api::post_report))
        .route("/api/asset", post(api::post_legacy))
        .route("/api/v1/collect-targets", get(api::collect_targets))
        .route("/api/v1/assets", get(api::list_assets).post(api::register_asset))
        .route("/api/v1/assets/{id}", get(api::get_asset).patch(api::patch_asset).delete(api::record::delete_asset))
        .route("/api/v1/assets/{id}/changes", get(api::asset_changes))
        .route("/api/v1/changes", get(api::change_feed))
        .route("/api/v1/errors", get(api::errors))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics_text))
        .map(|router| {
            router.route_layer(axum::middleware::from_fn(api::strict_query::reject_unknown)).fallback(api::not_found)
        })
        .with_state(state.clone())
        .merge(crate::web::router(state.clone()))
        .merge(crate::api::audit::router(state.clone()))
        .merge(crate::api::record::router(state.clone()))
        .merge(crate::api::stocktakes::router(state.clone()))
        .merge(crate::api::webhooks::router(state))
        .into_parts();
    let router = router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            axum::response::IntoResponse::into_response(crate::error::ApiError::Internal(
                "the server hit a bug handling this request".to_owned(),
            ))
        }))
        .layer(SetSensitiveRequestHeadersLayer::new([axum::http::header::AUTHORIZATION, axum::http::header::COOKIE]))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .extensions()
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .unwrap_or("-")
                .to_owned();
            tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid));
    (router, paths)
}

/// How long past its expiry a nonce is kept (µs): more than any clock difference between
/// instances that the clock window itself would tolerate.
pub const NONCE_PRUNE_MARGIN_US: i64 = 5 * 60 * 1_000_000;

/// Deletes expired nonces, sessions and throttle rows, and old bookkeeping rows. History is never
/// pruned.
pub async fn prune(db: &Db, config: &ServerConfig) -> Result<u64, sqlx::Error> {
    let now = crate::db::now_us();
    let day = 86_400_000_000_i64;
    let mut removed = 0;
    // A nonce is kept for a margin past its request's clock window: instances sharing a
    // database disagree a little about the time, and one whose clock is behind still accepts the
    // request's timestamp after another instance's window has closed.
    removed += sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
        .bind(now - NONCE_PRUNE_MARGIN_US)
        .execute(db.writer())
        .await?
        .rows_affected();
    let reports_before = now - i64::try_from(config.retention.reports_days).unwrap_or(i64::MAX / day) * day;
    removed += sqlx::query("DELETE FROM reports WHERE received_at < $1")
        .bind(reports_before)
        .execute(db.writer())
        .await?
        .rows_affected();
    let errors_before = now - i64::try_from(config.retention.errors_days).unwrap_or(i64::MAX / day) * day;
    removed += sqlx::query("DELETE FROM collection_errors WHERE recorded_at < $1")
        .bind(errors_before)
        .execute(db.writer())
        .await?
        .rows_affected();
    // Delivered webhook events and the delivery log (undelivered events stay, unless their
    // endpoint was deleted while a write queued them).
    let webhooks_before = now - i64::try_from(config.webhooks.keep_days).unwrap_or(i64::MAX / day) * day;
    removed += sqlx::query("DELETE FROM webhook_outbox WHERE state = 'delivered' AND delivered_at < $1")
        .bind(webhooks_before)
        .execute(db.writer())
        .await?
        .rows_affected();
    removed += sqlx::query(
        "DELETE FROM webhook_outbox WHERE state = 'pending' \
         AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = webhook_outbox.endpoint_id)",
    )
    .execute(db.writer())
    .await?
    .rows_affected();
    removed += sqlx::query("DELETE FROM webhook_deliveries WHERE at < $1")
        .bind(webhooks_before)
        .execute(db.writer())
        .await?
        .rows_affected();
    removed += crate::web::prune(db).await?;
    Ok(removed)
}

/// Serves until SIGINT/SIGTERM, then finishes in-flight requests and closes the database.
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let pruner = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut interval =
                tokio::time::interval(Duration::from_secs(state.config.retention.prune_interval_secs.max(1)));
            loop {
                interval.tick().await;
                match prune(&state.db, &state.config).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "pruned expired bookkeeping rows"),
                    Err(e) => tracing::warn!(error = %e, "pruning failed; will retry"),
                }
            }
        })
    };
    // Daily as-of snapshots keep "the inventory on date D" fast however long the history grows.
    let snapshots =
        tokio::spawn(crate::service::asof::run_daily(state.db.clone(), state.calendar, state.snapshot_rows.clone()));
    // Other instances on the same PostgreSQL database announce the agent keys they change.
    let key_changes = (state.db.backend() == crate::db::Backend::Postgres).then(|| {
        tokio::spawn(crate::auth::listen_for_key_changes(state.config.database_url.clone(), state.keys.clone()))
    });
    // This instance's webhook deliveries (instances sharing a database share the work).
    let webhooks =
        crate::webhooks::spawn(state.db.clone(), state.config.webhooks.clone(), state.keys.secret_key().clone());
    // The peer address feeds per-IP login throttling and the audit log.
    let service = app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, service).with_graceful_shutdown(drain_then_stop(state.clone())).await;
    pruner.abort();
    snapshots.abort();
    if let Some(task) = key_changes {
        task.abort();
    }
    webhooks.abort();
    state.db.close().await;
    result
}

/// Resolves when the server should stop accepting: at SIGINT/SIGTERM, after `shutdown_drain_secs`
/// of answering `/readyz` with 503 (still serving), so a load balancer has moved new work away.
async fn drain_then_stop(state: Arc<AppState>) {
    shutdown_signal().await;
    let drain = Duration::from_secs(state.config.shutdown_drain_secs);
    if !drain.is_zero() {
        state.draining.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(seconds = drain.as_secs(), "draining: /readyz answers 503 before the listener closes");
        tokio::time::sleep(drain).await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
