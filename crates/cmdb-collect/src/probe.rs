//! Probes: the commands collectors need, and what running them produced.
//!
//! A collector declares its probes; a [`crate::plan::Plan`] gathers the probes of every selected
//! collector (each probe once, even when two collectors share it), the transport runs them all in
//! one bundled script, and each collector's parser reads the [`Outputs`] by probe id. The parser
//! never knows which transport carried the bytes.

use std::collections::BTreeMap;
use std::time::Duration;

/// One command a built-in collector needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Stable id: the key in [`Outputs`] and in the bundled script's delimiters.
    pub id: &'static str,
    /// The command as an admin reads it (what goes into sudoers).
    pub command: &'static str,
    /// The POSIX sh snippet actually run; prints the command's output on stdout. It may try
    /// several paths or fall back to an older form of the command.
    pub script: &'static str,
    /// True when the command needs root (run through `sudo -n` when `become = "sudo"`).
    pub needs_root: bool,
    /// The file holding this command's output in a replay directory.
    pub replay_file: Option<&'static str>,
    /// How long the command may run before it is killed.
    pub timeout_secs: u64,
    /// True when the command can hang (a RAID tool on a sick controller, dmidecode on odd
    /// firmware, lsblk on a dead device): it runs under `timeout`. Reads of kernel and /etc files
    /// run without that guard, which saves three process starts per probe; the transport's
    /// overall script timeout still bounds them.
    pub may_hang: bool,
    /// The programs the probe runs, one of which must be on PATH. When none is, the bundled
    /// script answers "command not found" (status 127) with a shell builtin, without starting a
    /// process: on a host without RAID tools or dmidecode that saves a `timeout`, a `sh` and the
    /// lookups per probe. Empty: the probe always runs.
    pub programs: &'static [&'static str],
}

/// A probe ready to run: a built-in [`Probe`] or an external collector's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Stable id (see [`Probe::id`]).
    pub id: String,
    /// The POSIX sh snippet to run.
    pub script: String,
    /// True when it must run as root.
    pub needs_root: bool,
    /// The replay file name, if any.
    pub replay_file: Option<String>,
    /// Kill the command after this long.
    pub timeout: Duration,
    /// Run it under `timeout` (see [`Probe::may_hang`]).
    pub may_hang: bool,
    /// Programs one of which must be on PATH (see [`Probe::programs`]); empty: always run.
    pub programs: Vec<String>,
}

impl From<&Probe> for ProbeSpec {
    fn from(probe: &Probe) -> Self {
        ProbeSpec {
            id: probe.id.to_owned(),
            script: probe.script.to_owned(),
            needs_root: probe.needs_root,
            replay_file: probe.replay_file.map(str::to_owned),
            timeout: Duration::from_secs(probe.timeout_secs),
            may_hang: probe.may_hang,
            programs: probe.programs.iter().map(|p| (*p).to_owned()).collect(),
        }
    }
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command ran and exited with this status (0 = success).
    Code(i32),
    /// The command was not found (sh's status 127), or a replay directory has no file for it.
    NotFound,
    /// The command was killed at its timeout.
    TimedOut,
    /// The probe's output never arrived (the bundled script was cut short).
    Lost,
}

/// What one probe produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutput {
    /// Standard output, byte for byte.
    pub stdout: Vec<u8>,
    /// The first few KiB of standard error, lossily decoded.
    pub stderr: String,
    /// How it ended.
    pub exit: Exit,
}

impl ProbeOutput {
    /// A successful run that printed `stdout` (replay files and tests).
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        ProbeOutput { stdout: stdout.into(), stderr: String::new(), exit: Exit::Code(0) }
    }

    /// A command that is not there.
    pub fn not_found() -> Self {
        ProbeOutput { stdout: Vec::new(), stderr: String::new(), exit: Exit::NotFound }
    }

    /// True when the command exited 0.
    pub fn succeeded(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// Standard output as text (lossy: real outputs carry stray bytes, e.g. `\r` and Latin-1 vendor names).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// A one-line reason for a failed probe, for a section's error message.
    pub fn failure(&self, id: &str) -> String {
        let stderr = self.stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let how = match self.exit {
            Exit::Code(0) => "succeeded".to_owned(),
            Exit::Code(126) => "is not executable".to_owned(),
            Exit::Code(127) | Exit::NotFound => "command not found".to_owned(),
            Exit::Code(code) => format!("exited with status {code}"),
            Exit::TimedOut => "timed out and was killed".to_owned(),
            Exit::Lost => "produced no result (the probe script was cut short)".to_owned(),
        };
        if stderr.is_empty() { format!("{id}: {how}") } else { format!("{id}: {how}: {stderr}") }
    }
}

/// Every probe's output for one host, by probe id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Probe id -> output.
    pub by_id: BTreeMap<String, ProbeOutput>,
}

impl Outputs {
    /// The output of probe `id`, if it ran.
    pub fn get(&self, id: &str) -> Option<&ProbeOutput> {
        self.by_id.get(id)
    }

    /// The output of probe `id` when it exited 0.
    pub fn succeeded(&self, id: &str) -> Option<&ProbeOutput> {
        self.get(id).filter(|o| o.succeeded())
    }

    /// Records an output.
    pub fn insert(&mut self, id: impl Into<String>, output: ProbeOutput) {
        self.by_id.insert(id.into(), output);
    }
}
