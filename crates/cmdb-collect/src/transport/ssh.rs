//! SSH transport (skeleton; being implemented): one russh connection and one exec per host.

use std::path::PathBuf;
use std::time::Duration;

use super::{HostFailure, ScriptOutput};

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum SshAuth {
    /// A private key file (OpenSSH format), with its passphrase if it has one.
    KeyFile {
        /// Path to the private key.
        path: PathBuf,
        /// Passphrase, if the key is encrypted.
        passphrase: Option<String>,
    },
    /// The keys offered by the running ssh-agent ($SSH_AUTH_SOCK).
    Agent,
    /// A password (read from a file or the environment, never from argv).
    Password(String),
}

/// What to do with a host whose key is not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts (the default).
    #[default]
    Strict,
    /// Record the key of a host seen for the first time; a changed key still fails.
    AcceptNew,
}

/// Settings shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Login user when the target does not name one.
    pub user: String,
    /// Credentials.
    pub auth: SshAuth,
    /// The known_hosts file to check (and, with `AcceptNew`, to append to).
    pub known_hosts: PathBuf,
    /// Unknown-host policy.
    pub host_key_policy: HostKeyPolicy,
    /// Limit for TCP connect plus SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Limit for running the bundled script.
    pub command_timeout: Duration,
}

/// One host to visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The name the host is known by (inventory name); the fallback host name for its report.
    pub name: String,
    /// Address or DNS name to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login user, overriding [`SshOptions::user`].
    pub user: Option<String>,
}

/// An SSH client for one run (shared by every host of the run).
#[derive(Debug, Clone)]
pub struct SshClient {
    options: SshOptions,
}

impl SshClient {
    /// Prepares a client (loads the key, reads known_hosts).
    pub fn new(options: SshOptions) -> Result<Self, HostFailure> {
        Ok(SshClient { options })
    }

    /// Connects to `target`, runs `script` with `sh -s` once, and returns its output.
    pub async fn run(&self, target: &SshTarget, script: &str) -> Result<ScriptOutput, HostFailure> {
        let _ = (target, script, &self.options);
        Err(HostFailure::Other("SSH transport not implemented yet".to_owned()))
    }
}
