//! The REST API of the asset record: custom fields, duplicates, merge, delete and restore.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::audit::{audit, json_body};
use crate::api::{Shared, require};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::error::responses::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::service::custom_fields::{self, CustomField, FieldChange, NewField};
use crate::service::duplicates::{self, DuplicatePair};
use crate::service::record::{self, RecordOutcome};
use crate::state::AppState;

/// Routes of the asset record API (`DELETE /api/v1/assets/{id}` is routed with the asset).
pub fn router(state: Arc<AppState>) -> crate::routing::Routes {
    crate::routing::Routes::new()
        .route("/api/v1/fields", get(list_fields).post(create_field))
        .route("/api/v1/fields/{key}", get(get_field).patch(change_field).delete(delete_field))
        .route("/api/v1/duplicates", get(list_duplicates))
        .route("/api/v1/assets/{id}/merge", post(merge_asset))
        .route("/api/v1/assets/{id}/restore", post(restore_asset))
        .map(|router| router.route_layer(axum::middleware::from_fn(crate::api::strict_query::reject_unknown)))
        .with_state(state)
}

/// Query of `GET /api/v1/fields`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct FieldsQuery {
    /// Also list deleted fields (their keys are taken for good).
    deleted: Option<bool>,
}

/// The answer of `GET /api/v1/fields`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct FieldList {
    /// In definition order.
    items: Vec<CustomField>,
}

/// `GET /api/v1/fields`.
#[utoipa::path(
    get,
    path = "/api/v1/fields",
    operation_id = "listFields",
    tag = "fields",
    summary = "The custom fields of the asset record (the finance set among them).",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(FieldsQuery),
    responses((status = 200, description = "The fields.", body = FieldList), BadRequest, Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn list_fields(
    State(state): State<Shared>,
    principal: Principal,
    Query(query): Query<FieldsQuery>,
) -> Result<Json<FieldList>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(FieldList { items: custom_fields::list(&state.db, query.deleted.unwrap_or(false)).await? }))
}

/// `GET /api/v1/fields/{key}`.
#[utoipa::path(
    get,
    path = "/api/v1/fields/{key}",
    operation_id = "getField",
    tag = "fields",
    summary = "One custom field (deleted ones too).",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    params(("key" = String, Path, description = "The field's key.")),
    responses((status = 200, description = "The field.", body = CustomField), Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub(crate) async fn get_field(
    State(state): State<Shared>,
    principal: Principal,
    Path(key): Path<String>,
) -> Result<Json<CustomField>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(custom_fields::get(&state.db, &key).await?))
}

/// `POST /api/v1/fields` (admin).
#[utoipa::path(
    post,
    path = "/api/v1/fields",
    operation_id = "createField",
    tag = "fields",
    summary = "Define a custom field: key [a-z][a-z0-9_]{0,39}, label, type (text, integer, decimal, date, enum with choices, bool), optional help.",
    description = "Needs the admin role or above. 409 when the key is taken, also by a deleted field (keys are never reused).",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    request_body(content = NewField, content_type = "application/json"),
    responses((status = 201, description = "The field.", body = CustomField), BadRequest, Unauthorized, Forbidden, Conflict, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn create_field(
    State(state): State<Shared>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require(&principal, Role::Admin)?;
    let field: Option<NewField> = json_body(&headers, body, false)?;
    let field = field.ok_or_else(|| ApiError::Invalid {
        pointer: String::new(),
        message: "a field object is required".to_owned(),
    })?;
    let created = custom_fields::create(&state.db, field, &principal.name).await?;
    audit(&state, &principal, "field.create", &format!("{} ({})", created.key, created.field_type.as_str())).await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `PATCH /api/v1/fields/{key}` (admin).
#[utoipa::path(
    patch,
    path = "/api/v1/fields/{key}",
    operation_id = "changeField",
    tag = "fields",
    summary = "Change a custom field's label, help, type or choices.",
    description = "Needs the admin role or above. 409 when the type would change while assets have values, or new choices would leave out a value in use.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    params(("key" = String, Path, description = "The field's key.")),
    request_body(content = FieldChange, content_type = "application/json"),
    responses((status = 200, description = "The field.", body = CustomField), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn change_field(
    State(state): State<Shared>,
    principal: Principal,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CustomField>, ApiError> {
    require(&principal, Role::Admin)?;
    let change: FieldChange = json_body(&headers, body, false)?;
    let changed = custom_fields::change(&state.db, &key, change).await?;
    audit(&state, &principal, "field.change", &changed.key).await;
    Ok(Json(changed))
}

/// `DELETE /api/v1/fields/{key}` (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/fields/{key}",
    operation_id = "deleteField",
    tag = "fields",
    summary = "Delete (hide) a custom field: no new values; its values stay in history; its key is never reused.",
    description = "Needs the admin role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    params(("key" = String, Path, description = "The field's key.")),
    responses((status = 204, description = "Done."), Unauthorized, Forbidden, NotFound, Unavailable),
)]
pub(crate) async fn delete_field(
    State(state): State<Shared>,
    principal: Principal,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Role::Admin)?;
    custom_fields::delete(&state.db, &key, &principal.name).await?;
    audit(&state, &principal, "field.delete", &key).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer of `GET /api/v1/duplicates`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DuplicateList {
    /// Pairs, lower asset id first.
    items: Vec<DuplicatePair>,
}

/// `GET /api/v1/duplicates`.
#[utoipa::path(
    get,
    path = "/api/v1/duplicates",
    operation_id = "listDuplicates",
    tag = "assets",
    summary = "Pairs of records (not deleted) that may be one machine: a shared board UUID, board (manufacturer, serial), machine id or universally administered unicast MAC, or a mark set when one was created.",
    description = "Needs the viewer role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("viewer"))),
    responses((status = 200, description = "The pairs.", body = DuplicateList), Unauthorized, Forbidden, Unavailable),
)]
pub(crate) async fn list_duplicates(
    State(state): State<Shared>,
    principal: Principal,
) -> Result<Json<DuplicateList>, ApiError> {
    require(&principal, Role::Viewer)?;
    Ok(Json(DuplicateList { items: duplicates::pairs_all(&state.db).await? }))
}

/// The body of `POST /api/v1/assets/{id}/merge`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MergeBody {
    /// The asset merged into this one (it is marked merged and deleted; its history stays).
    from: i64,
}

/// `POST /api/v1/assets/{id}/merge` (admin).
#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/merge",
    operation_id = "mergeAsset",
    tag = "assets",
    summary = "Merge another record of the same machine into this one; both histories stay, later reports of either land here.",
    description = "Needs the admin role or above. 409 when either is deleted, or both reported in the last 7 days with different board UUIDs.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    params(("id" = i64, Path, description = "The surviving asset.")),
    request_body(content = MergeBody, content_type = "application/json"),
    responses((status = 200, description = "Merged.", body = RecordOutcome), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Invalid, Unavailable),
)]
pub(crate) async fn merge_asset(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RecordOutcome>, ApiError> {
    require(&principal, Role::Admin)?;
    let body: Option<MergeBody> = json_body(&headers, body, false)?;
    let from = body.map(|b| b.from).ok_or_else(|| ApiError::Invalid {
        pointer: "/from".to_owned(),
        message: "the asset to merge is required: {\"from\": ID}".to_owned(),
    })?;
    let outcome = record::merge(&state.db, id, from, &principal.source()).await?;
    audit(&state, &principal, "asset.merge", &format!("asset {from} into {id}")).await;
    Ok(Json(outcome))
}

/// `DELETE /api/v1/assets/{id}` (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/assets/{id}",
    operation_id = "deleteAsset",
    tag = "assets",
    summary = "Delete a record (recorded in history): gone from lists, counts, duplicates and collection; present as of earlier times; reports no longer land on it.",
    description = "Needs the admin role or above.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    params(("id" = i64, Path, description = "Asset id.")),
    responses((status = 200, description = "Deleted.", body = RecordOutcome), Unauthorized, Forbidden, NotFound, Conflict, Unavailable),
)]
pub(crate) async fn delete_asset(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<RecordOutcome>, ApiError> {
    require(&principal, Role::Admin)?;
    let outcome = record::delete(&state.db, id, &principal.source()).await?;
    audit(&state, &principal, "asset.delete", &format!("asset {id}")).await;
    Ok(Json(outcome))
}

/// `POST /api/v1/assets/{id}/restore` (admin).
#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/restore",
    operation_id = "restoreAsset",
    tag = "assets",
    summary = "Undo a delete (recorded in history).",
    description = "Needs the admin role or above. 409 when the asset is not deleted, was merged, or another asset now holds its host name or asset tag.",
    security(("bearer" = []), ("session" = [])),
    extensions(("x-cmdb-role" = json!("admin"))),
    params(("id" = i64, Path, description = "Asset id.")),
    responses((status = 200, description = "Restored.", body = RecordOutcome), Unauthorized, Forbidden, NotFound, Conflict, Unavailable),
)]
pub(crate) async fn restore_asset(
    State(state): State<Shared>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<RecordOutcome>, ApiError> {
    require(&principal, Role::Admin)?;
    let outcome = record::restore(&state.db, id, &principal.source()).await?;
    audit(&state, &principal, "asset.restore", &format!("asset {id}")).await;
    Ok(Json(outcome))
}
