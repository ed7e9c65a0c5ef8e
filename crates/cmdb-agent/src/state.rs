//! The agent's memory between runs: the host name last delivered for each target.
//!
//! A host renamed since its last delivery is reported with `host.previous_hostname`, which lets
//! the server keep it on the same asset when stronger identity keys are missing. The name is
//! recorded only after the server accepted a report (2xx), so a rename whose report is still
//! spooled is announced again by the next report.
//!
//! The file (`{state_dir}/hostnames.json`) is written atomically, under a lock, merging with what
//! another agent process may have written meanwhile (a timer run and a manual SSH run at once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::atomic;

/// The target key of the machine the agent runs on.
pub const LOCAL_TARGET: &str = "local";

const FILE_NAME: &str = "hostnames.json";
const LOCK_NAME: &str = ".hostnames.lock";

/// Saves closer together than this are coalesced (a fan-out delivers hundreds of reports a minute).
const SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// Why the state cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O error on the named file.
    #[error("{path}: {source}")]
    Io {
        /// The state file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What is remembered about one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetState {
    /// The host name in the last report the server accepted.
    pub hostname: String,
    /// When that was.
    pub delivered_at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// Format version of this file.
    version: u32,
    /// Target name -> last delivery.
    targets: BTreeMap<String, TargetState>,
}

struct Inner {
    file: StateFile,
    changed: BTreeSet<String>,
    last_save: Option<Instant>,
}

/// The last delivered host names, shared by every delivery of a run.
pub struct HostnameState {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

impl HostnameState {
    /// Reads `{state_dir}/hostnames.json`; a missing file is an empty state. An unreadable (corrupt)
    /// file is set aside as `hostnames.json.corrupt` with a warning rather than stopping collection.
    pub fn load(state_dir: &Path) -> Result<Self, StateError> {
        let file = read_file(state_dir)?;
        Ok(HostnameState {
            dir: state_dir.to_owned(),
            inner: Mutex::new(Inner { file, changed: BTreeSet::new(), last_save: None }),
        })
    }

    /// Reads the state without ever writing: a missing or unreadable file is an empty state
    /// (for `cmdb-agent collect`, which promises to change nothing).
    pub fn peek(state_dir: &Path) -> Self {
        let file = std::fs::read(state_dir.join(FILE_NAME))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<StateFile>(&bytes).ok())
            .unwrap_or_default();
        HostnameState {
            dir: state_dir.to_owned(),
            inner: Mutex::new(Inner { file, changed: BTreeSet::new(), last_save: None }),
        }
    }

    /// The `previous_hostname` for a report from `target` now named `hostname`: the last
    /// delivered name when it differs.
    pub fn previous_hostname(&self, target: &str, hostname: &str) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.file.targets.get(target).map(|t| t.hostname.clone()).filter(|last| last != hostname)
    }

    /// The remembered state of `target`.
    pub fn get(&self, target: &str) -> Option<TargetState> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.file.targets.get(target).cloned()
    }

    /// Records that the server accepted a report naming `target` `hostname`, and saves unless a
    /// save happened less than two seconds ago ([`HostnameState::save`] at the end of a run
    /// writes whatever is left).
    pub fn record(&self, target: &str, hostname: &str) -> Result<(), StateError> {
        let due = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner
                .file
                .targets
                .insert(target.to_owned(), TargetState { hostname: hostname.to_owned(), delivered_at: Utc::now() });
            inner.changed.insert(target.to_owned());
            inner.last_save.is_none_or(|at| at.elapsed() >= SAVE_INTERVAL)
        };
        if due { self.save() } else { Ok(()) }
    }

    /// Writes pending changes, merged into the file as it is on disk now.
    pub fn save(&self) -> Result<(), StateError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.changed.is_empty() {
            return Ok(());
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        atomic::create_private_dir(&self.dir).map_err(io(&self.dir))?;
        let lock_path = self.dir.join(LOCK_NAME);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut on_disk = read_file(&self.dir)?;
        for target in &inner.changed {
            if let Some(state) = inner.file.targets.get(target) {
                on_disk.targets.insert(target.clone(), state.clone());
            }
        }
        on_disk.version = 1;
        let path = self.dir.join(FILE_NAME);
        let bytes = serde_json::to_vec_pretty(&on_disk)
            .map_err(|e| StateError::Io { path: path.clone(), source: std::io::Error::other(e) })?;
        atomic::write(&path, &bytes).map_err(io(&path))?;
        inner.file = on_disk;
        inner.changed.clear();
        inner.last_save = Some(Instant::now());
        Ok(())
    }
}

fn read_file(dir: &Path) -> Result<StateFile, StateError> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StateFile::default()),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(file) => Ok(file),
        Err(e) => {
            let aside = dir.join(format!("{FILE_NAME}.corrupt"));
            tracing::warn!(
                file = %path.display(),
                error = %e,
                moved_to = %aside.display(),
                "state file is unreadable; starting afresh (renames since the last run will not be announced)"
            );
            std::fs::rename(&path, &aside).map_err(|source| StateError::Io { path, source })?;
            Ok(StateFile::default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_across_loads_and_reports_renames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = HostnameState::load(dir.path()).expect("empty state");
        assert_eq!(state.previous_hostname("web", "web-01"), None);
        state.record("web", "web-01").expect("record");
        state.save().expect("save");

        let state = HostnameState::load(dir.path()).expect("reload");
        assert_eq!(state.previous_hostname("web", "web-01"), None, "same name is no rename");
        assert_eq!(state.previous_hostname("web", "web-99").as_deref(), Some("web-01"));
        assert_eq!(state.previous_hostname("other", "web-99"), None);
    }

    #[test]
    fn concurrent_writers_do_not_lose_each_others_targets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = HostnameState::load(dir.path()).expect("a");
        let b = HostnameState::load(dir.path()).expect("b");
        a.record("host-a", "a").expect("a records");
        b.record("host-b", "b").expect("b records");
        a.save().expect("a saves");
        b.save().expect("b saves");
        let merged = HostnameState::load(dir.path()).expect("reload");
        assert_eq!(merged.get("host-a").map(|t| t.hostname), Some("a".to_owned()));
        assert_eq!(merged.get("host-b").map(|t| t.hostname), Some("b".to_owned()));
    }

    #[test]
    fn peeking_never_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").expect("write");
        assert_eq!(HostnameState::peek(dir.path()).get("x"), None);
        assert!(dir.path().join(FILE_NAME).exists() && !dir.path().join("hostnames.json.corrupt").exists());
    }

    #[test]
    fn corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").expect("write");
        let state = HostnameState::load(dir.path()).expect("loads anyway");
        assert_eq!(state.get("x"), None);
        assert!(dir.path().join("hostnames.json.corrupt").exists());
    }
}
