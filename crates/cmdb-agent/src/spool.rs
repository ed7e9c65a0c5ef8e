//! The spool: reports the server could not take yet, on disk until it can.
//!
//! One JSON file per report, named `{collected_at}-{report_id}.json` so that name order is
//! collection order and the oldest report is resent first. Files are written atomically and
//! deleted only after the server answered 2xx; `report_id` makes a resend after a lost answer
//! harmless. The spool is bounded by count and age (`[spool]`); whatever is dropped is logged.
//!
//! Reports the server refused (4xx) are not spooled but kept in `{state_dir}/rejected` with the
//! server's answer, for a person to look at; that directory is bounded too.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use cmdb_model::report::WireReport;
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::config::SpoolConfig;

/// Why the spool cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An I/O error on the named path.
    #[error("{path}: {source}")]
    Io {
        /// The spool file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// A report waiting for the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolEntry {
    /// The target the report came from (the state key: "local", an inventory name, a minion id).
    pub target: String,
    /// When it was spooled.
    pub spooled_at: DateTime<Utc>,
    /// Why it could not be delivered then.
    pub reason: String,
    /// The report, exactly as it will be sent.
    pub report: WireReport,
}

/// A report the server refused, kept for inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedEntry {
    /// The target the report came from.
    pub target: String,
    /// When the server refused it.
    pub rejected_at: DateTime<Utc>,
    /// The HTTP status.
    pub status: u16,
    /// The server's explanation.
    pub message: String,
    /// The refused report.
    pub report: WireReport,
}

/// A spooled report and its file.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// The spool file.
    pub path: PathBuf,
    /// Its content.
    pub entry: SpoolEntry,
}

/// The spool directory and its limits.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    rejected_dir: PathBuf,
    limits: SpoolConfig,
}

/// A held spool lock; released when dropped.
#[derive(Debug)]
pub struct SpoolLock {
    _file: File,
}

impl Spool {
    /// A spool in `dir`, keeping refused reports in `rejected_dir`.
    pub fn new(dir: PathBuf, rejected_dir: PathBuf, limits: SpoolConfig) -> Self {
        Spool { dir, rejected_dir, limits }
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name a report is spooled under.
    pub fn file_name(report: &WireReport) -> String {
        format!("{}-{}.json", report.collected_at.format("%Y%m%dT%H%M%S%.6fZ"), report.report_id)
    }

    /// Takes the flush lock, so two agent processes do not send the same spool at once. `None`
    /// when another process holds it.
    pub fn try_lock(&self) -> Result<Option<SpoolLock>, SpoolError> {
        atomic::create_private_dir(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.dir.join(".lock");
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(SpoolLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(SpoolError::Io { path, source: e }),
        }
    }

    /// Writes `entry` into the spool (atomically), then applies the limits.
    pub fn push(&self, entry: &SpoolEntry) -> Result<PathBuf, SpoolError> {
        atomic::create_private_dir(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.dir.join(Self::file_name(&entry.report));
        let bytes = serde_json::to_vec(entry)
            .map_err(|e| SpoolError::Io { path: path.clone(), source: std::io::Error::other(e) })?;
        atomic::write(&path, &bytes).map_err(io_err(&path))?;
        self.enforce_limits()?;
        Ok(path)
    }

    /// Every spooled report, oldest first. Reports past `max_age` are dropped (and logged);
    /// unreadable files are moved to the rejected directory so they do not block the queue.
    pub fn list(&self) -> Result<Vec<Spooled>, SpoolError> {
        let mut out = Vec::new();
        let max_age = chrono::Duration::from_std(self.limits.max_age.get()).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        for path in self.files()? {
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                // Another process delivered it between listing and reading.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(SpoolError::Io { path, source }),
            };
            let entry: SpoolEntry = match serde_json::from_slice(&bytes) {
                Ok(entry) => entry,
                Err(e) => {
                    self.quarantine(&path, &e.to_string())?;
                    continue;
                }
            };
            if now.signed_duration_since(entry.report.collected_at) > max_age {
                tracing::warn!(
                    file = %path.display(),
                    target = %entry.target,
                    report_id = %entry.report.report_id,
                    collected_at = %entry.report.collected_at,
                    max_age = %self.limits.max_age,
                    "dropping a spooled report older than spool.max_age"
                );
                self.remove(&path)?;
                continue;
            }
            out.push(Spooled { path, entry });
        }
        Ok(out)
    }

    /// Number of spooled reports (without reading them).
    pub fn len(&self) -> Result<usize, SpoolError> {
        Ok(self.files()?.len())
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.len()? == 0)
    }

    /// Deletes a spooled report (after the server accepted it).
    pub fn remove(&self, path: &Path) -> Result<(), SpoolError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SpoolError::Io { path: path.to_owned(), source }),
        }
    }

    /// Keeps a refused report in the rejected directory.
    pub fn reject(&self, entry: &RejectedEntry) -> Result<PathBuf, SpoolError> {
        atomic::create_private_dir(&self.rejected_dir).map_err(io_err(&self.rejected_dir))?;
        let path = self.rejected_dir.join(Self::file_name(&entry.report));
        let bytes = serde_json::to_vec_pretty(entry)
            .map_err(|e| SpoolError::Io { path: path.clone(), source: std::io::Error::other(e) })?;
        atomic::write(&path, &bytes).map_err(io_err(&path))?;
        self.trim_dir(&self.rejected_dir, self.limits.max_rejected, "spool.max_rejected")?;
        Ok(path)
    }

    /// Spool files (not temporaries, not the lock), sorted by name, i.e. oldest first.
    fn files(&self) -> Result<Vec<PathBuf>, SpoolError> {
        list_json(&self.dir)
    }

    fn quarantine(&self, path: &Path, error: &str) -> Result<(), SpoolError> {
        atomic::create_private_dir(&self.rejected_dir).map_err(io_err(&self.rejected_dir))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let aside = self.rejected_dir.join(format!("{name}.unreadable"));
        tracing::error!(file = %path.display(), moved_to = %aside.display(), error, "unreadable spool file set aside");
        std::fs::rename(path, &aside).map_err(io_err(path))
    }

    fn enforce_limits(&self) -> Result<(), SpoolError> {
        self.trim_dir(&self.dir, self.limits.max_reports, "spool.max_reports")
    }

    fn trim_dir(&self, dir: &Path, max: usize, setting: &str) -> Result<(), SpoolError> {
        let files = list_json(dir)?;
        if files.len() <= max {
            return Ok(());
        }
        for path in &files[..files.len() - max] {
            tracing::warn!(file = %path.display(), limit = max, setting, "dropping the oldest report: the directory is full");
            self.remove(path)?;
        }
        Ok(())
    }
}

fn list_json(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(SpoolError::Io { path: dir.to_owned(), source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if atomic::is_temporary(&name) || !name.ends_with(".json") {
            continue;
        }
        files.push(entry.path());
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::HumanDuration;
    use cmdb_model::report::{AgentInfo, HostInfo, Mode};

    pub(crate) fn report(hostname: &str, age_secs: i64) -> WireReport {
        WireReport {
            schema: 1,
            report_id: uuid::Uuid::new_v4(),
            collected_at: Utc::now() - chrono::Duration::seconds(age_secs),
            agent: AgentInfo { version: "test".into(), mode: Mode::Agent },
            host: HostInfo { hostname: hostname.into(), previous_hostname: None, machine_id: None },
            sections: Default::default(),
            collected_for: None,
        }
    }

    fn entry(hostname: &str, age_secs: i64) -> SpoolEntry {
        SpoolEntry {
            target: hostname.into(),
            spooled_at: Utc::now(),
            reason: "test".into(),
            report: report(hostname, age_secs),
        }
    }

    fn spool(dir: &Path, limits: SpoolConfig) -> Spool {
        Spool::new(dir.join("spool"), dir.join("rejected"), limits)
    }

    #[test]
    fn lists_oldest_first_and_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = spool(dir.path(), SpoolConfig::default());
        spool.push(&entry("new", 10)).expect("push");
        spool.push(&entry("old", 100)).expect("push");
        spool.push(&entry("mid", 50)).expect("push");
        let listed = spool.list().expect("list");
        let names: Vec<&str> = listed.iter().map(|s| s.entry.target.as_str()).collect();
        assert_eq!(names, vec!["old", "mid", "new"]);
        spool.remove(&listed[0].path).expect("remove");
        assert_eq!(spool.len().expect("len"), 2);
    }

    #[test]
    fn bounded_by_count_and_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = SpoolConfig { max_reports: 2, max_age: HumanDuration::secs(3600), max_rejected: 1 };
        let spool = spool(dir.path(), limits);
        spool.push(&entry("a", 300)).expect("push");
        spool.push(&entry("b", 200)).expect("push");
        spool.push(&entry("c", 100)).expect("push");
        let names: Vec<String> = spool.list().expect("list").into_iter().map(|s| s.entry.target).collect();
        assert_eq!(names, vec!["b".to_owned(), "c".to_owned()], "the oldest is dropped");
        spool.push(&entry("ancient", 7200)).expect("push");
        let names: Vec<String> = spool.list().expect("list").into_iter().map(|s| s.entry.target).collect();
        assert_eq!(names, vec!["b".to_owned(), "c".to_owned()], "too old to send");
    }

    #[test]
    fn unreadable_files_are_set_aside_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = spool(dir.path(), SpoolConfig::default());
        spool.push(&entry("good", 10)).expect("push");
        std::fs::write(spool.dir().join("00000000T000000.000000Z-bad.json"), b"{oops").expect("write");
        std::fs::write(spool.dir().join(".tmp-half.part"), b"{").expect("write");
        let listed = spool.list().expect("list");
        assert_eq!(listed.len(), 1);
        assert!(dir.path().join("rejected").join("00000000T000000.000000Z-bad.json.unreadable").exists());
    }
}
