//! The REST API of webhook endpoints (admins): register, list, delete.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get};

use crate::api::audit::{audit, json_body};
use crate::api::{Shared, require};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::error::responses::{
    BadRequest, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::service::webhooks::{self, Delivery, Endpoint, NewEndpoint};
use crate::state::AppState;

/// Routes of the webhook API.
pub fn router(state: Arc<AppState>) -> crate::routing::Routes {
    crate::routing::Routes::new()
        .route("/api/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route("/api/v1/webhooks/{id}", delete(delete_webhook))
        .route("/api/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .map(|router| router.route_layer(axum::middleware::from_fn(crate::api::strict_query::reject_unknown)))
        .with_state(state)
}

/// The answer of `GET /api/v1/webhooks`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookList {
    /// Oldest first; never with their secrets.
    items: Vec<Endpoint>,
}

/// `GET /api/v1/webhooks` (admin).
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "listWebhooks",
    tag = "webhooks",
    summary = "The webhook endpoints: URL, events, whether delivery gave up (and why), events not delivered. Secrets are never shown.",
    description = "Needs the admin role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    responses((status = 200, description = "The endpoints.", body = WebhookList), Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn list_webhooks(
    State(state): State<Shared>,
    principal: Principal,
) -> Result<Json<WebhookList>, ApiError> {
    require(&principal, Role::Admin)?;
    Ok(Json(WebhookList { items: webhooks::list(&state.db).await? }))
}

/// `POST /api/v1/webhooks` (admin).
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    operation_id = "createWebhook",
    tag = "webhooks",
    summary = "Register an endpoint: url (http or https, with a host), secret (16 to 512 characters, stored encrypted, the HMAC key of the deliveries' signature), events (change, collection_error, stocktake_closed, asset).",
    description = "Needs the admin role or above. Events committed from then on are POSTed to it, signed with `Authorization: CMDB-HMAC-SHA256 KeyId=<endpoint id>, ...` as agent requests are, with the event's id as the nonce and the `Idempotency-Key`.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    request_body(content = NewEndpoint, content_type = "application/json"),
    responses((status = 201, description = "The endpoint.", body = Endpoint), BadRequest, Unauthorized, Forbidden, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn create_webhook(
    State(state): State<Shared>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require(&principal, Role::Admin)?;
    let new: NewEndpoint = json_body(&headers, body, false)?;
    let created = webhooks::create(&state.db, state.keys.secret_key(), &new, &principal.name).await?;
    audit(
        &state,
        &principal,
        "webhook.create",
        &format!("endpoint {} {} ({})", created.id, created.url, created.events.join(", ")),
    )
    .await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /api/v1/webhooks/{id}` (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    operation_id = "deleteWebhook",
    tag = "webhooks",
    summary = "Delete an endpoint, its undelivered events and its delivery log.",
    description = "Needs the admin role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    params(("id" = i64, Path, description = "The endpoint's id.")),
    responses((status = 204, description = "Done."), Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub(crate) async fn delete_webhook(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Role::Admin)?;
    let url = webhooks::delete(&state.db, id).await?;
    audit(&state, &principal, "webhook.delete", &format!("endpoint {id} {url}")).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/v1/webhooks/{id}/deliveries`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct DeliveriesQuery {
    /// How many attempts, newest first (1 to 1000; default 100).
    limit: Option<i64>,
}

/// The answer of `GET /api/v1/webhooks/{id}/deliveries`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryList {
    /// Newest first.
    items: Vec<Delivery>,
}

/// `GET /api/v1/webhooks/{id}/deliveries` (admin).
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "webhooks",
    summary = "An endpoint's delivery log: every attempt, newest first, with the receiver's status or why it failed.",
    description = "Needs the admin role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    params(("id" = i64, Path, description = "The endpoint's id."), DeliveriesQuery),
    responses((status = 200, description = "The attempts.", body = DeliveryList), BadRequest, Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub(crate) async fn list_deliveries(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    require(&principal, Role::Admin)?;
    let endpoint = webhooks::get(&state.db, id).await?;
    Ok(Json(DeliveryList {
        items: webhooks::deliveries(&state.db, Some(endpoint.id), query.limit.unwrap_or(100)).await?,
    }))
}
