//! The data model of cmdb: what an agent reports, what the server stores, and how one becomes the other.
//!
//! Everything here is a pure function over plain data. The crate never touches files, sockets or
//! databases, so the rules that make the inventory trustworthy (identity, diff, replay, signing) are
//! tested cheaply and exhaustively, and the agent and the server share exactly one definition of them.
//!
//! - [`report`]: report format v1, its typed sections and its validation (errors name a JSON pointer).
//! - [`state`]: an asset's stored state (sections, fields, keyed components) and how a change applies to it.
//! - [`diff`]: the diff engine (`stored` + `report` -> changes) and replay (changes -> state).
//! - [`identity`]: identity keys, placeholder rules, and which stored asset a report may match.
//! - [`catalog`]: what each built-in field is called and measured in (labels, units, workbook columns).
//! - [`business`]: the fields people maintain (IDC, owner, status, ...), never written by collection.
//! - [`custom_fields`]: fields admins add (the finance set among them) and the forms their values take.
//! - [`signing`]: the `CMDB-HMAC-SHA256` request signature shared by agent and server.
//! - [`legacy`]: the course client's payload and `auth-api` header, mapped onto v1.

pub mod business;
pub mod catalog;
pub mod chain;
pub mod custom_fields;
pub mod diff;
pub mod identity;
pub mod legacy;
pub mod report;
pub mod signing;
pub mod state;

pub use diff::{Action, ChangeOp, diff_report, replay};
pub use report::{Report, ReportError, parse_report};
pub use state::{AssetState, SectionState};
