//! The asset record in the UI: custom fields (everyone reads them, admins define them), the
//! possible duplicates, and an admin's delete, restore and merge of a record. The rules live in
//! `service::custom_fields`, `service::duplicates` and `service::record`; these pages only call
//! them.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use cmdb_model::custom_fields::FieldType;
use serde::{Deserialize, Serialize};

use super::assets::ListParams;
use super::{CurrentUser, Layout, Posted};
use crate::auth::Role;
use crate::service::assets;
use crate::service::audit_log;
use crate::service::custom_fields::{self, CustomField, FieldChange, NewField};
use crate::service::duplicates::{self, DuplicatePair};
use crate::service::labels::{self, Label};
use crate::service::record;
use crate::web::error::WebError;
use crate::web::{WebState, templates};

#[derive(Serialize)]
struct FieldsPage {
    layout: Layout,
    fields: Vec<CustomField>,
    types: Vec<&'static str>,
    error: Option<String>,
}

async fn render_fields(state: &WebState, user: &CurrentUser, error: Option<String>) -> Result<Response, WebError> {
    let page = FieldsPage {
        layout: user.layout(state, "fields"),
        fields: custom_fields::list(&state.app.db, true).await?,
        types: FieldType::ALL.iter().map(|t| t.as_str()).collect(),
        error: error.clone(),
    };
    let status =
        if error.is_some() { axum::http::StatusCode::UNPROCESSABLE_ENTITY } else { axum::http::StatusCode::OK };
    Ok((status, templates::render("fields.html", &page)?).into_response())
}

/// `GET /fields`.
pub async fn fields(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    render_fields(&state, &user, None).await
}

/// The fields form: `action` = create, change or delete.
#[derive(Debug, Deserialize)]
pub struct FieldForm {
    action: String,
    key: String,
    #[serde(default)]
    label: String,
    #[serde(default, rename = "type")]
    field_type: String,
    /// Choices of an enum field, one per line or comma-separated.
    #[serde(default)]
    choices: String,
    #[serde(default)]
    help: String,
}

impl FieldForm {
    fn field_type(&self) -> Result<Option<FieldType>, String> {
        match self.field_type.trim() {
            "" => Ok(None),
            text => FieldType::parse(text).map(Some).ok_or_else(|| format!("unknown type {text:?}")),
        }
    }

    fn choices(&self) -> Vec<String> {
        self.choices.split(['\n', ',']).map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
    }
}

/// `POST /fields` (admin).
pub async fn change_fields(
    State(state): State<Arc<WebState>>,
    posted: Posted<FieldForm>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    let form = &posted.form;
    let db = &state.app.db;
    let field_type = match form.field_type() {
        Ok(t) => t,
        Err(message) => return render_fields(&state, user, Some(message)).await,
    };
    let done = match form.action.as_str() {
        "create" => {
            let new = NewField {
                key: form.key.trim().to_owned(),
                label: form.label.clone(),
                field_type: field_type.unwrap_or(FieldType::Text),
                choices: form.choices(),
                help: Some(form.help.clone()),
            };
            custom_fields::create(db, new, &user.session.name).await.map(|_| ())
        }
        "change" => {
            let change = FieldChange {
                label: Some(form.label.clone()),
                field_type,
                choices: (field_type == Some(FieldType::Enum)).then(|| form.choices()),
                help: Some(form.help.clone()),
            };
            custom_fields::change(db, &form.key, change).await.map(|_| ())
        }
        "delete" => custom_fields::delete(db, &form.key, &user.session.name).await,
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    };
    // A refused definition is said on the page, with the fields as they are.
    if let Err(e) = done {
        return match e {
            crate::service::ServiceError::Invalid { .. } | crate::service::ServiceError::Conflict(_) => {
                render_fields(&state, user, Some(e.to_string())).await
            }
            other => Err(other.into()),
        };
    }
    audit_log::record_from(
        db,
        &user.session.name,
        &format!("field.{}", form.action),
        form.key.trim(),
        user.client_ip.as_deref(),
    )
    .await?;
    Ok(Redirect::to(&format!("/fields#field-{}", form.key.trim())).into_response())
}

#[derive(Serialize)]
struct DuplicatesPage {
    layout: Layout,
    pairs: Vec<DuplicatePair>,
}

/// `GET /duplicates`.
pub async fn duplicates(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let page =
        DuplicatesPage { layout: user.layout(&state, "assets"), pairs: duplicates::pairs_all(&state.app.db).await? };
    Ok(templates::render("duplicates.html", &page)?.into_response())
}

/// The record form on an asset's page: `action` = delete, restore or merge (with `from`).
#[derive(Debug, Deserialize)]
pub struct RecordForm {
    action: String,
    #[serde(default)]
    from: String,
}

/// `POST /assets/{id}/record` (admin).
pub async fn change_record(
    State(state): State<Arc<WebState>>,
    Path(id): Path<i64>,
    posted: Posted<RecordForm>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    let db = &state.app.db;
    let source = user.session.principal().source();
    let (action, detail) = match posted.form.action.as_str() {
        "delete" => {
            record::delete(db, id, &source).await?;
            ("asset.delete", format!("asset {id}"))
        }
        "restore" => {
            record::restore(db, id, &source).await?;
            ("asset.restore", format!("asset {id}"))
        }
        "merge" => {
            let from: i64 = posted
                .form
                .from
                .trim()
                .trim_start_matches('#')
                .parse()
                .map_err(|_| WebError::BadRequest(format!("{:?} is not an asset id", posted.form.from)))?;
            record::merge(db, id, from, &source).await?;
            ("asset.merge", format!("asset {from} into {id}"))
        }
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    };
    audit_log::record_from(db, &user.session.name, action, &detail, user.client_ip.as_deref()).await?;
    Ok(Redirect::to(&format!("/assets/{id}#record")).into_response())
}

/// Labels on one printed page at most (a page of the list).
const LABELS_PER_PAGE: u32 = 500;

/// `GET /assets/{id}/label.svg`: the asset's label.
pub async fn label_svg(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let asset = assets::detail(&state.app.db, id).await?;
    let label = labels::label(&asset.summary, &labels::asset_url(&state.app.config.public_url(), id))?;
    #[derive(Serialize)]
    struct Context {
        label: Label,
    }
    let svg = templates::render("label.html", &Context { label })?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")], svg.0).into_response())
}

#[derive(Serialize)]
struct LabelsPage {
    layout: Layout,
    labels: Vec<Label>,
    total: i64,
    back: String,
}

/// `GET /assets/labels?<list filters>`: a printable page of the labels of the assets the list
/// shows with these filters (its first page of up to 500).
pub async fn labels_page(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let params = ListParams::from_query(raw.as_deref())?;
    let mut query = params.list_query();
    query.per_page = Some(query.per_page.unwrap_or(LABELS_PER_PAGE).min(LABELS_PER_PAGE));
    let page = assets::list(&state.app.db, &query).await?;
    let base = state.app.config.public_url();
    let labels = page
        .items
        .iter()
        .map(|item| labels::label(item, &labels::asset_url(&base, item.id)))
        .collect::<Result<_, _>>()?;
    let back = params.url("/assets");
    let page = LabelsPage { layout: user.layout(&state, "assets"), labels, total: page.total, back };
    Ok(templates::render("labels.html", &page)?.into_response())
}
