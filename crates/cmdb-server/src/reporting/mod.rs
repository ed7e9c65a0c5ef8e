//! The year-end audit: the as-of view rebuilt from history, exports (CSV, XLSX), CSV import of
//! hosts and business fields, and the OpenAPI document. Skeleton: being written.

use std::sync::Arc;

use axum::Router;

use crate::app::AppState;

pub mod asof;
pub mod export;

/// Routes of the audit API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().with_state(state)
}
