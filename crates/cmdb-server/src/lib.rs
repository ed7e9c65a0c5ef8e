//! cmdb-server: turns a stream of collector reports into an auditable inventory.
//!
//! - [`db`]: SQLite or PostgreSQL behind one handle; migrations.
//! - [`store`]: SQL for assets, their state, history and search terms.
//! - [`ingest`]: identity -> diff -> one transaction per report.
//! - [`auth`]: agent signatures (HMAC), bearer tokens, roles.
//! - [`assets`]: registration, business edits, list and detail.
//! - [`api`]: the REST handlers; [`app`]: router, server loop, pruning.
//! - [`admin`]: first-start credentials and the key/token commands.
//! - [`web`]: the server-rendered UI, users, sessions, audit log.
//! - [`reporting`]: as-of view, exports, CSV import, OpenAPI.

pub mod admin;
pub mod api;
pub mod app;
pub mod assets;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod reporting;
pub mod store;
pub mod web;

pub use app::{AppState, app, serve};
