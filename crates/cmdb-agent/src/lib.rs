//! cmdb-agent: collects this machine, or many machines over SSH or Salt, and delivers signed
//! reports to the cmdb server, keeping what it cannot deliver in an on-disk spool.
//!
//! The binary (`main.rs`) only parses the command line; everything else is here so tests, and
//! the server's end-to-end tests, can drive collection and delivery directly:
//!
//! - [`config`]: layered, typed configuration with provenance.
//! - [`collect`], [`local`]: one host (this machine, fast path; or a replay directory).
//! - [`fanout`], [`inventory`]: many hosts over SSH or Salt, progress and summary.
//! - [`client`], [`delivery`], [`spool`], [`state`]: signed upload, retries, spool, renames.
//! - [`listing`]: what `cmdb-agent collectors` prints.
//! - [`terminal`]: remote text made safe to print (control characters and escape sequences shown, not obeyed).
//! - [`commands`]: the subcommands themselves.

pub mod atomic;
pub mod cli;
pub mod client;
pub mod collect;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod duration;
pub mod fanout;
pub mod inventory;
pub mod listing;
pub mod local;
pub mod logging;
pub mod spool;
pub mod state;
pub mod terminal;
