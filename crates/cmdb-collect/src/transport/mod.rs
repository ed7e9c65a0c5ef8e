//! Transports carry the bundled script to a host and its output back. They know nothing of what
//! the script contains; the [`crate::Plan`] builds it and parses what comes back.
//!
//! - [`local`]: `sh -s` on this machine (agent mode).
//! - `ssh`: one russh connection and one exec per host, host keys verified.
//! - `salt`: `salt --out=json --static -L m1,m2,... cmd.run_all` per batch of minions.
//! - replay needs no transport: [`crate::replay`] reads outputs from files.

pub mod known_hosts;
pub mod local;
pub mod salt;
pub mod ssh;

use std::fmt;

/// The default of the most bytes one host may send back per run (remote_output_limit): a
/// bundled script prints a few hundred KiB, so this leaves ample room for large RAID listings
/// while 64 hosts in flight stay around 1 GiB at worst.
pub const DEFAULT_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

/// Why a host could not be collected at all (a failed command only fails its section instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostFailure {
    /// Nothing answered, or the connection broke (DNS, refused, reset, no route).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The host refused our credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The host's key is unknown or differs from known_hosts.
    #[error("host key: {0}")]
    HostKey(String),
    /// Connecting or running the script took longer than allowed.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The host sent more than the configured limit (remote_output_limit); the rest was not read.
    #[error("{host}: output exceeds {limit} bytes (remote_output_limit)")]
    OutputLimit {
        /// The host (address or minion id).
        host: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Anything else (the remote shell is missing, Salt returned garbage, ...).
    #[error("{0}")]
    Other(String),
}

impl HostFailure {
    /// The summary bucket: unreachable, auth, host key, timeout, other.
    pub fn kind(&self) -> FailureKind {
        match self {
            HostFailure::Unreachable(_) => FailureKind::Unreachable,
            HostFailure::Auth(_) => FailureKind::Auth,
            HostFailure::HostKey(_) => FailureKind::HostKey,
            HostFailure::Timeout(_) => FailureKind::Timeout,
            HostFailure::OutputLimit { .. } | HostFailure::Other(_) => FailureKind::Other,
        }
    }
}

/// The buckets of the end-of-run summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// See [`HostFailure::Unreachable`].
    Unreachable,
    /// See [`HostFailure::Auth`].
    Auth,
    /// See [`HostFailure::HostKey`].
    HostKey,
    /// See [`HostFailure::Timeout`].
    Timeout,
    /// See [`HostFailure::Other`].
    Other,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Auth => "auth",
            FailureKind::HostKey => "host key",
            FailureKind::Timeout => "timeout",
            FailureKind::Other => "other",
        })
    }
}

/// What running the bundled script gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// The script's stdout (the framed probe outputs).
    pub stdout: Vec<u8>,
    /// The script's own stderr (probe stderr is framed inside stdout).
    pub stderr: Vec<u8>,
    /// The script's exit status, when known.
    pub status: Option<i32>,
}
