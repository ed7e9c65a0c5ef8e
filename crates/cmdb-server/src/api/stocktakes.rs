//! The REST API of stocktakes: open, list, read, sight, close, and the report.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::audit::{audit, json_body};
use crate::api::{Shared, require};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::error::responses::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::service::export;
use crate::service::stocktakes::{self, NewStocktake, Sighting, SightingOutcome, Stocktake};
use crate::state::AppState;

/// Routes of the stocktake API.
pub fn router(state: Arc<AppState>) -> crate::routing::Routes {
    crate::routing::Routes::new()
        .route("/api/v1/stocktakes", get(list_stocktakes).post(open_stocktake))
        .route("/api/v1/stocktakes/{id}", get(get_stocktake))
        .route("/api/v1/stocktakes/{id}/sightings", post(add_sighting))
        .route("/api/v1/stocktakes/{id}/close", post(close_stocktake))
        .route("/api/v1/stocktakes/{id}/report.xlsx", get(stocktake_report))
        .map(|router| router.route_layer(axum::middleware::from_fn(crate::api::strict_query::reject_unknown)))
        .with_state(state)
}

/// The answer of `GET /api/v1/stocktakes`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct StocktakeList {
    /// Newest first, with counts (items and sightings left out).
    items: Vec<Stocktake>,
}

/// `GET /api/v1/stocktakes`.
#[utoipa::path(
    get,
    path = "/api/v1/stocktakes",
    operation_id = "listStocktakes",
    tag = "stocktakes",
    summary = "Every stocktake with its counts, newest first.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    responses((status = 200, description = "The stocktakes.", body = StocktakeList), Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn list_stocktakes(
    State(state): State<Shared>,
    principal: Principal,
) -> Result<Json<StocktakeList>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(StocktakeList { items: stocktakes::list(&state.db).await? }))
}

/// `POST /api/v1/stocktakes` (editor).
#[utoipa::path(
    post,
    path = "/api/v1/stocktakes",
    operation_id = "openStocktake",
    tag = "stocktakes",
    summary = "Open a stocktake: the assets the scope (any asset-list filter) selects now, not retired or deleted, are its expected list, frozen.",
    description = "Needs the editor role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    request_body(content = NewStocktake, content_type = "application/json"),
    responses((status = 201, description = "The stocktake.", body = Stocktake), BadRequest, Unauthorized, Forbidden, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn open_stocktake(
    State(state): State<Shared>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require(&principal, Role::Editor)?;
    let new: Option<NewStocktake> = json_body(&headers, body, false)?;
    let new = new.ok_or_else(|| ApiError::Invalid {
        pointer: String::new(),
        message: "a stocktake object is required".to_owned(),
    })?;
    let opened = stocktakes::open(&state.db, new, &principal.source()).await?;
    audit(
        &state,
        &principal,
        "stocktake.open",
        &format!("{} ({}): {} expected", opened.id, opened.name, opened.counts.expected),
    )
    .await;
    Ok((StatusCode::CREATED, Json(opened)))
}

/// `GET /api/v1/stocktakes/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/stocktakes/{id}",
    operation_id = "getStocktake",
    tag = "stocktakes",
    summary = "A stocktake with its counts (expected, verified, moved, missing, unexpected, seen_by_collection_only), its items and its sightings.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(("id" = i64, Path, description = "Stocktake id.")),
    responses((status = 200, description = "The stocktake.", body = Stocktake), Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub(crate) async fn get_stocktake(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<Stocktake>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(stocktakes::get(&state.db, id).await?))
}

/// `POST /api/v1/stocktakes/{id}/sightings` (editor).
#[utoipa::path(
    post,
    path = "/api/v1/stocktakes/{id}/sightings",
    operation_id = "addSighting",
    tag = "stocktakes",
    summary = "Record a scanned code (asset tag, then board serial, then host name; merges followed) and where it was seen; answers verified, moved, unexpected, unknown or already_seen.",
    description = "Needs the editor role or above. 409 once the stocktake is closed.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    params(("id" = i64, Path, description = "Stocktake id.")),
    request_body(content = Sighting, content_type = "application/json"),
    responses((status = 200, description = "The outcome.", body = SightingOutcome), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn add_sighting(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SightingOutcome>, ApiError> {
    require(&principal, Role::Editor)?;
    let sighting: Sighting = json_body(&headers, body, false)?;
    Ok(Json(stocktakes::sight(&state.db, id, sighting, &principal.source()).await?))
}

/// `POST /api/v1/stocktakes/{id}/close` (the editor who opened it, or an admin).
#[utoipa::path(
    post,
    path = "/api/v1/stocktakes/{id}/close",
    operation_id = "closeStocktake",
    tag = "stocktakes",
    summary = "Close a stocktake: it is frozen with its collection evidence; any write after is a 409.",
    description = "Needs the editor role or above: the editor who opened it, or an admin.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("editor"))),
    params(("id" = i64, Path, description = "Stocktake id.")),
    responses((status = 200, description = "The closed stocktake.", body = Stocktake), Unauthorized, Forbidden, NotFound, Conflict, Unavailable),
)]
pub(crate) async fn close_stocktake(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<Stocktake>, ApiError> {
    require(&principal, Role::Editor)?;
    let closed = stocktakes::close(&state.db, id, &principal.source(), principal.role >= Role::Admin).await?;
    audit(&state, &principal, "stocktake.close", &format!("{} ({})", closed.id, closed.name)).await;
    Ok(Json(closed))
}

/// `GET /api/v1/stocktakes/{id}/report.xlsx`.
#[utoipa::path(
    get,
    path = "/api/v1/stocktakes/{id}/report.xlsx",
    operation_id = "stocktakeReport",
    tag = "stocktakes",
    summary = "The stocktake's report: Summary, Verified, Moved, Missing, Unexpected, Collection only.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(("id" = i64, Path, description = "Stocktake id.")),
    responses((status = 200, description = "The workbook.", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub(crate) async fn stocktake_report(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    require(&principal, Role::Viewer)?;
    let stocktake = stocktakes::get(&state.db, id).await?;
    let bytes = export::stocktake_report(&stocktake, state.calendar.tz)?;
    audit(&state, &principal, "export.stocktake", &format!("stocktake {id}")).await;
    Ok(crate::download::bytes(bytes, crate::download::XLSX, &format!("cmdb-stocktake-{id}.xlsx")))
}
