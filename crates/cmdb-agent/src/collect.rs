//! Collecting one host: this machine (agent mode) or a replay directory.

use std::path::Path;

use chrono::Utc;
use cmdb_collect::plan::HostContext;
use cmdb_collect::{Become, HostReport, Plan};
use cmdb_model::report::{Mode, WireReport};

use crate::local;
use crate::state::HostnameState;

/// Collects this machine with the fast local path (see [`crate::local`]).
pub async fn collect_local(plan: &Plan, become_root: Become) -> HostReport {
    let collected_at = Utc::now();
    let outputs = local::run_probes(plan.probes(), become_root).await;
    plan.report(&outputs, &HostContext { mode: Mode::Agent, collected_at, fallback_hostname: None })
}

/// Why a replay directory cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("replay directory {dir}: {source}")]
pub struct ReplayError {
    /// The directory given.
    pub dir: String,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Builds a report from saved command outputs; the directory name stands in for a missing
/// `hostname` file.
pub fn collect_replay(plan: &Plan, dir: &Path, mode: Mode) -> Result<HostReport, ReplayError> {
    let outputs = cmdb_collect::replay::read_dir(dir, plan.probes())
        .map_err(|source| ReplayError { dir: dir.display().to_string(), source })?;
    let fallback_hostname = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()));
    Ok(plan.report(&outputs, &HostContext { mode, collected_at: Utc::now(), fallback_hostname }))
}

/// Sets `host.previous_hostname` when `target` was last delivered under another name.
pub fn announce_rename(report: &mut WireReport, state: &HostnameState, target: &str) {
    report.host.previous_hostname = state.previous_hostname(target, &report.host.hostname);
    if let Some(previous) = &report.host.previous_hostname {
        tracing::info!(target, previous = %previous, now = %report.host.hostname, "host was renamed since its last report");
    }
}

/// Logs each failed section of a report at warn level (a failed collector does not fail the host).
pub fn log_failed_sections(target: &str, report: &WireReport) {
    for (name, section) in &report.sections {
        if let Some(error) = &section.error {
            tracing::warn!(target, section = %name, error = %error, "collector failed");
        }
    }
}
