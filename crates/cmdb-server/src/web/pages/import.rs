//! The spreadsheet import in the UI: upload a CSV or XLSX, see what each row would do, import it
//! (all or nothing), or, as an admin, import it as a baseline on a past date. The rules live in
//! `service::import`; this page only calls it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{CurrentUser, Layout, PostedUpload};
use crate::auth::Role;
use crate::service::audit_log;
use crate::service::export;
use crate::service::import::{self, ImportFormat, ImportOptions, ImportReport};
use crate::web::error::WebError;
use crate::web::{WebState, templates};

#[derive(Serialize)]
struct ImportPage {
    layout: Layout,
    columns: Vec<(String, String)>,
    report: Option<ImportReport>,
    file_name: Option<String>,
    baseline: Option<String>,
    error: Option<String>,
}

async fn render(
    state: &WebState,
    user: &CurrentUser,
    outcome: (Option<ImportReport>, Option<String>, Option<String>, Option<String>),
) -> Result<Response, WebError> {
    let (report, file_name, baseline, error) = outcome;
    let status = if error.is_some() || report.as_ref().is_some_and(|r| !r.dry_run && !r.errors.is_empty()) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = ImportPage {
        layout: user.layout(state, "assets"),
        columns: import::template_columns(&state.app.db).await?,
        report,
        file_name,
        baseline,
        error,
    };
    Ok((status, templates::render("import.html", &page)?).into_response())
}

/// `GET /import`.
pub async fn page(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Editor)?;
    render(&state, &user, (None, None, None, None)).await
}

/// `GET /import/template.xlsx`: a sheet headed by every column an import takes.
pub async fn template(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Viewer)?;
    let body = export::import_template(&state.app.db, state.app.calendar.tz).await?;
    Ok(crate::download::bytes(body, crate::download::XLSX, "cmdb-import-template.xlsx"))
}

/// `POST /import`: `file`, `apply` (absent: a dry run), `as_of` (a baseline, admins).
pub async fn upload(State(state): State<Arc<WebState>>, posted: PostedUpload) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Editor)?;
    let Some((file_name, bytes)) = &posted.file else {
        return render(&state, user, (None, None, None, Some("Choose a file to import.".to_owned()))).await;
    };
    let lower = file_name.to_lowercase();
    let format =
        if lower.ends_with(".csv") || lower.ends_with(".txt") { ImportFormat::Csv } else { ImportFormat::Workbook };
    let baseline_text = posted.fields.get("as_of").map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let baseline = match &baseline_text {
        None => None,
        Some(text) => {
            user.require(Role::Admin)?;
            Some(import::Baseline::on(&state.app.calendar, text, file_name)?)
        }
    };
    let options = ImportOptions { dry_run: !posted.fields.contains_key("apply"), baseline };
    let source = user.session.principal().source();
    let action = options.audit_action();
    let report = match import::import(&state.app.db, &source, format, bytes, &options).await {
        Ok(report) => report,
        Err(failure) => {
            let message = failure.to_string();
            audit_log::record_from(
                &state.app.db,
                &user.session.name,
                action,
                &format!("failed: {message}"),
                user.client_ip.as_deref(),
            )
            .await?;
            return render(&state, user, (None, Some(file_name.clone()), baseline_text, Some(message))).await;
        }
    };
    if report.applied {
        let detail = format!("{file_name}: {} rows applied", report.lines);
        audit_log::record_from(&state.app.db, &user.session.name, action, &detail, user.client_ip.as_deref()).await?;
    }
    render(&state, user, (Some(report), Some(file_name.clone()), baseline_text, None)).await
}
