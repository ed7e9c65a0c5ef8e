//! cmdb-server: turns a stream of collector reports into an auditable inventory.
//!
//! - [`db`]: SQLite or PostgreSQL behind one handle; migrations.
//! - [`store`]: SQL for assets, their state, history and search terms.
//! - [`ingest`]: identity -> diff -> one transaction per report.
//! - [`auth`]: agent signatures (HMAC), bearer tokens, roles.
//! - [`service`]: the people's side, one function per use case, under both the API and the UI.
//! - [`api`]: the REST handlers; [`app`]: router, server loop, pruning.
//! - [`admin`]: first-start credentials and the key/token commands.
//! - [`backup`]: `backup` and `restore`, one file format for both backends.
//! - [`secrets`]: the key file and secrets sealed at rest; [`file_modes`]: private files.
//! - [`directory`]: the LDAP client behind directory login (bind, search, groups to a role).
//! - [`web`]: the server-rendered UI, users, sessions, audit log.
//! - [`webhooks`]: the dispatcher that delivers the webhook outbox.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod config;
pub mod db;
pub mod directory;
pub mod download;
pub mod error;
pub mod file_modes;
pub mod ingest;
pub mod metrics;
pub mod routing;
pub mod secrets;
pub mod service;
pub mod state;
pub mod store;
pub mod web;
pub mod webhooks;

pub use app::{AppState, app, serve};
