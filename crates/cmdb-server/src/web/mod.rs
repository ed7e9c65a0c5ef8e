//! The web UI (server-rendered pages), users, sessions and the audit log. Skeleton: the pages
//! are being written; the router is empty until then.

use std::sync::Arc;

use axum::Router;

use crate::app::AppState;

pub mod audit;

/// Routes of the web UI.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().with_state(state)
}
