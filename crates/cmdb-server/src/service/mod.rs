//! The service layer: every use case of the people's side, once, under both the REST API and the
//! pages.
//!
//! Each use case is one function with typed inputs (a resolved instant, never a raw string) that
//! returns domain types or a [`ServiceError`]. Handlers in `api` and `web` parse a request, call
//! one function here and render its answer as JSON or a template; they hold no SQL and no rules.
//!
//! - [`time`]: what a date means (the one rule for as-of, periods and filter bounds).
//! - [`assets`]: the asset list row, list and search, one asset, registration, business edits.
//! - [`asof`]: the list and one asset as they stood at an instant, snapshots.
//! - [`export`]: CSV and XLSX of the list, and the audit workbook.
//! - [`import`]: spreadsheet import (CSV, XLSX) of hosts, business and custom fields, and baselines.
//! - [`sheet`]: a spreadsheet read into typed cells (CSV, or a workbook with calamine).
//! - [`lists`]: the managed IDC, business unit and tag lists.
//! - [`custom_fields`]: fields admins add to the asset record (the finance set first).
//! - [`record`]: deleting, restoring and merging asset records, in history.
//! - [`labels`]: printable asset labels (Code 128 of the tag, QR code of the page).
//! - [`stocktakes`]: the physical count: a frozen expected list, sightings, close, the report.
//! - [`readable`]: an asset's sections with labels and units, as the asset page shows them.
//! - [`duplicates`]: assets that share a board serial or UUID (one rule, flagged everywhere).
//! - [`history`]: an asset's timeline, the change log, the change feed.
//! - [`collection_errors`]: the sections that failed on hosts.
//! - [`dashboard`]: counts per value, changes per day, hosts that stopped reporting.
//! - [`collect`]: the hosts collectors should reach.
//! - [`audit_log`]: who did what (logins, exports, admin actions).
//! - [`verify`]: every asset's history replays to exactly its stored state.
//! - [`webhooks`]: the endpoints admins register for events, and their delivery log.
//!
//! Architecture invariant: nothing in `service` depends on `api`, `web` or `app`, or names an HTTP
//! status (checked by `tests/architecture.rs`).

pub mod asof;
pub mod assets;
pub mod audit_log;
pub mod chains;
pub mod collect;
pub mod collection_errors;
pub mod custom_fields;
pub mod dashboard;
pub mod duplicates;
pub mod error;
pub mod export;
pub mod history;
pub mod import;
pub mod labels;
pub mod lists;
pub mod readable;
pub mod record;
pub mod sheet;
pub mod stocktakes;
pub mod time;
pub mod verify;
pub mod webhooks;

pub use error::ServiceError;
pub use time::{AsOf, AuditPeriod, Calendar};
