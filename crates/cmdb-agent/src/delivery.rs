//! Delivery: getting every report to the server exactly once, or onto disk until it can be.
//!
//! - 2xx: delivered; the host name is remembered for rename detection.
//! - 5xx, 408, 425, 429, connection errors: retried `delivery.retries` times with exponential
//!   backoff and jitter (at least the server's Retry-After), each attempt signed afresh; then the
//!   report is spooled and the run stops contacting the server (the rest is spooled directly).
//! - 400, 413, 422 and other 4xx about the report: refused for good; logged with the server's
//!   message and kept in `{state_dir}/rejected`, never retried.
//! - 401, 403, 404, 405, 3xx: the key or `server_url` is wrong, not the report: logged loudly,
//!   the report is spooled (it will go once the configuration is fixed), and the run stops
//!   contacting the server.
//!
//! Spooled reports go first: before the first new report of a run is sent, the spool is flushed
//! oldest first, so the server sees a host's reports in the order they were collected.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cmdb_model::report::WireReport;

use crate::client::{Answer, Receipt, ServerClient};
use crate::config::DeliveryConfig;
use crate::spool::{RejectedEntry, Spool, SpoolEntry, SpoolError};
use crate::state::{HostnameState, StateError};

/// What happened to one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server stored it.
    Delivered(Receipt),
    /// It waits in the spool; the text says why.
    Spooled(String),
    /// The server refused it for good; it is kept in the rejected directory.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
}

/// A failure that lost the report's safety net: it could be neither delivered nor spooled.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Writing the spool (or the rejected directory) failed.
    #[error("cannot spool the report: {0}")]
    Spool(#[from] SpoolError),
    /// Serializing the report failed.
    #[error("cannot serialize the report: {0}")]
    Serialize(String),
}

/// What a spool flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushSummary {
    /// Spooled reports the server accepted.
    pub delivered: usize,
    /// Spooled reports the server refused (moved to the rejected directory).
    pub rejected: usize,
    /// Reports still waiting.
    pub remaining: usize,
    /// Why the flush stopped early, if it did.
    pub stopped: Option<String>,
}

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further attempts after the first.
    pub retries: u32,
    /// First wait.
    pub backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
}

impl From<&DeliveryConfig> for RetryPolicy {
    fn from(c: &DeliveryConfig) -> Self {
        RetryPolicy { retries: c.retries, backoff: c.backoff.get(), max_backoff: c.max_backoff.get() }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): `backoff * 2^retry`, capped, with the upper
    /// half jittered so a fleet of agents does not retry in lockstep; never less than Retry-After.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.backoff.saturating_mul(2u32.saturating_pow(retry)).min(self.max_backoff);
        let half = exp / 2;
        let jitter = if half.is_zero() { Duration::ZERO } else { half.mul_f64(rand::random::<f64>()) };
        let delay = half + jitter;
        match retry_after {
            Some(wait) => delay.max(wait),
            None => delay,
        }
    }
}

/// Result of sending one body with retries.
enum Sent {
    Accepted(Receipt),
    Refused {
        status: u16,
        message: String,
    },
    /// Not delivered; the server is down or refuses the agent (halts the run).
    Failed(String),
}

/// Delivers reports for one run.
pub struct Deliverer {
    client: ServerClient,
    spool: Spool,
    state: Arc<HostnameState>,
    policy: RetryPolicy,
    /// Set once the server proved unreachable or refused the agent: the rest of the run spools.
    halted: std::sync::Mutex<Option<String>>,
    /// Held while the spool is flushed; `true` once it was.
    flushed: tokio::sync::Mutex<bool>,
}

impl Deliverer {
    /// A deliverer sending through `client`, spooling to `spool`, remembering names in `state`.
    pub fn new(client: ServerClient, spool: Spool, state: Arc<HostnameState>, policy: RetryPolicy) -> Self {
        Deliverer {
            client,
            spool,
            state,
            policy,
            halted: std::sync::Mutex::new(None),
            flushed: tokio::sync::Mutex::new(false),
        }
    }

    /// The spool this deliverer uses.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The host-name state this deliverer updates.
    pub fn state(&self) -> &Arc<HostnameState> {
        &self.state
    }

    /// Why the run stopped contacting the server, if it did.
    pub fn halted(&self) -> Option<String> {
        self.halted.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn halt(&self, reason: &str) {
        let mut halted = self.halted.lock().unwrap_or_else(|p| p.into_inner());
        if halted.is_none() {
            tracing::warn!(reason, "not contacting the server again in this run; further reports are spooled");
            *halted = Some(reason.to_owned());
        }
    }

    /// Sends one body, retrying what may succeed later.
    async fn send(&self, body: &[u8], what: &str) -> Sent {
        let mut retry = 0;
        loop {
            if let Some(reason) = self.halted() {
                return Sent::Failed(reason);
            }
            match self.client.post_report(body).await {
                Answer::Accepted(receipt) => return Sent::Accepted(receipt),
                Answer::Refused { status, message } => return Sent::Refused { status, message },
                Answer::Misconfigured { status, message } => {
                    let reason = format!("the server answered HTTP {status}: {message}");
                    tracing::error!(
                        status,
                        message = %message,
                        "the server refuses this agent (check key_id/secret, the clock, and server_url)"
                    );
                    self.halt(&reason);
                    return Sent::Failed(reason);
                }
                Answer::Unavailable { reason, retry_after } => {
                    if retry >= self.policy.retries {
                        let reason = format!("{reason} (after {} attempts)", retry + 1);
                        self.halt(&reason);
                        return Sent::Failed(reason);
                    }
                    if let Some(wait) = retry_after
                        && wait > self.policy.max_backoff
                    {
                        let reason = format!("{reason}; the server asks to wait {}s", wait.as_secs());
                        self.halt(&reason);
                        return Sent::Failed(reason);
                    }
                    let delay = self.policy.delay(retry, retry_after);
                    tracing::info!(
                        report = what,
                        reason,
                        retry = retry + 1,
                        delay_ms = delay.as_millis() as u64,
                        "retrying"
                    );
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
            }
        }
    }

    fn remember(&self, target: &str, report: &WireReport) {
        if let Err(e) = self.state.record(target, &report.host.hostname) {
            // Losing this only costs the next rename's previous_hostname; delivery succeeded.
            tracing::warn!(error = %e, "cannot save the delivered host name");
        }
    }

    fn reject(&self, target: &str, report: &WireReport, status: u16, message: &str) -> Result<(), DeliveryError> {
        let entry = RejectedEntry {
            target: target.to_owned(),
            rejected_at: Utc::now(),
            status,
            message: message.to_owned(),
            report: report.clone(),
        };
        let path = self.spool.reject(&entry)?;
        tracing::error!(
            target,
            hostname = %report.host.hostname,
            report_id = %report.report_id,
            status,
            server_message = message,
            kept_in = %path.display(),
            "the server REFUSED the report; it will not be resent"
        );
        Ok(())
    }

    /// Sends spooled reports, oldest first, until the spool is empty or the server stops taking
    /// them. Another agent process flushing the same spool makes this a no-op.
    pub async fn flush_spool(&self) -> Result<FlushSummary, DeliveryError> {
        let mut flushed = self.flushed.lock().await;
        let summary = self.flush_locked().await;
        *flushed = true;
        summary
    }

    async fn flush_locked(&self) -> Result<FlushSummary, DeliveryError> {
        let mut summary = FlushSummary::default();
        let Some(_lock) = self.spool.try_lock()? else {
            summary.remaining = self.spool.len()?;
            summary.stopped = Some("another cmdb-agent process is flushing the spool".to_owned());
            tracing::info!("another cmdb-agent process is flushing the spool; leaving it alone");
            return Ok(summary);
        };
        let entries = self.spool.list()?;
        if !entries.is_empty() {
            tracing::info!(reports = entries.len(), spool = %self.spool.dir().display(), "sending spooled reports");
        }
        for (index, spooled) in entries.iter().enumerate() {
            let report = &spooled.entry.report;
            let body = serde_json::to_vec(report).map_err(|e| DeliveryError::Serialize(e.to_string()))?;
            match self.send(&body, &report.report_id.to_string()).await {
                Sent::Accepted(receipt) => {
                    self.spool.remove(&spooled.path)?;
                    self.remember(&spooled.entry.target, report);
                    tracing::info!(
                        target = %spooled.entry.target,
                        report_id = %report.report_id,
                        asset_id = receipt.asset_id,
                        "spooled report delivered"
                    );
                    summary.delivered += 1;
                }
                Sent::Refused { status, message } => {
                    self.reject(&spooled.entry.target, report, status, &message)?;
                    self.spool.remove(&spooled.path)?;
                    summary.rejected += 1;
                }
                Sent::Failed(reason) => {
                    summary.remaining = entries.len() - index;
                    summary.stopped = Some(reason);
                    return Ok(summary);
                }
            }
        }
        Ok(summary)
    }

    /// Delivers one report from `target`. The first call of a run flushes the spool first.
    /// Errors only when the report could be neither delivered nor written to disk.
    pub async fn deliver(&self, target: &str, report: &WireReport) -> Result<Outcome, DeliveryError> {
        {
            let mut flushed = self.flushed.lock().await;
            if !*flushed {
                let summary = self.flush_locked().await?;
                if summary.delivered + summary.rejected > 0 || summary.stopped.is_some() {
                    tracing::info!(?summary, "spool flushed before new reports");
                }
                *flushed = true;
            }
        }
        let body = serde_json::to_vec(report).map_err(|e| DeliveryError::Serialize(e.to_string()))?;
        match self.send(&body, target).await {
            Sent::Accepted(receipt) => {
                self.remember(target, report);
                tracing::info!(
                    target,
                    hostname = %report.host.hostname,
                    asset_id = receipt.asset_id,
                    applied = receipt.applied,
                    matched_by = receipt.matched_by.as_deref(),
                    changes = receipt.changes,
                    "report delivered"
                );
                Ok(Outcome::Delivered(receipt))
            }
            Sent::Refused { status, message } => {
                self.reject(target, report, status, &message)?;
                Ok(Outcome::Rejected { status, message })
            }
            Sent::Failed(reason) => {
                let entry = SpoolEntry {
                    target: target.to_owned(),
                    spooled_at: Utc::now(),
                    reason: reason.clone(),
                    report: report.clone(),
                };
                let path = self.spool.push(&entry)?;
                tracing::warn!(target, report_id = %report.report_id, spool = %path.display(), reason, "report spooled");
                Ok(Outcome::Spooled(reason))
            }
        }
    }

    /// Saves the host-name state (call at the end of a run).
    pub fn finish(&self) -> Result<(), StateError> {
        self.state.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let policy = RetryPolicy { retries: 5, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(10) };
        for _ in 0..50 {
            let first = policy.delay(0, None);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1), "{first:?}");
            let third = policy.delay(2, None);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4), "{third:?}");
            let capped = policy.delay(20, None);
            assert!(capped >= Duration::from_secs(5) && capped <= Duration::from_secs(10), "{capped:?}");
            assert!(policy.delay(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        }
    }
}
