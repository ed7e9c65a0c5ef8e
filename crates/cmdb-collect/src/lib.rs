//! cmdb's collectors and the transports that carry their commands.
//!
//! A collector is a pair: the [`Probe`]s (commands) it needs and a parser from their outputs to
//! its report section. The transports only carry bytes: every selected probe goes into one
//! [`bundle`] script per host, the transport runs it once (locally, over SSH, through Salt) or a
//! replay directory stands in for it, and the same parsers turn the outputs into the same report.
//!
//! Collectors are listed in one `const` registry, [`COLLECTORS`]; there is no discovery.

pub mod bundle;
pub mod collectors;
pub mod external;
pub mod plan;
pub mod probe;
pub mod replay;
pub mod transport;

pub use bundle::Become;
pub use plan::{HostReport, Plan, PlanError};
pub use probe::{Exit, Outputs, Probe, ProbeOutput, ProbeSpec};

/// Options that shape what collectors report (not which commands they run).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectOptions {
    /// Interfaces left out of the nic section: exact names, or prefixes ending in `*`.
    pub nic_exclude: Vec<String>,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions { nic_exclude: vec!["lo".to_owned(), "veth*".to_owned()] }
    }
}

/// Why a collector produced no section data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectError {
    /// The command(s) it needs failed; the message says which and how.
    #[error("{0}")]
    Command(String),
    /// The output did not have the expected form.
    #[error("cannot parse {probe} output: {message}")]
    Parse {
        /// The probe whose output was unreadable.
        probe: String,
        /// What was wrong.
        message: String,
    },
}

/// A built-in collector.
pub trait Collector: Sync {
    /// The section name and the name used in configuration.
    fn name(&self) -> &'static str;
    /// One line on what it reports.
    fn summary(&self) -> &'static str;
    /// The commands it runs, in order of preference.
    fn probes(&self) -> &'static [Probe];
    /// Turns the probes' outputs into section data (the v1 shape for this section).
    fn parse(&self, outputs: &Outputs, options: &CollectOptions) -> Result<serde_json::Value, CollectError>;
}

/// Every built-in collector, in report order.
pub const COLLECTORS: &[&dyn Collector] = &[
    &collectors::basic::Basic,
    &collectors::cpu::Cpu,
    &collectors::board::Board,
    &collectors::memory::Memory,
    &collectors::disk::Disk,
    &collectors::nic::Nic,
];

/// The collector called `name`.
pub fn collector(name: &str) -> Option<&'static dyn Collector> {
    COLLECTORS.iter().copied().find(|c| c.name() == name)
}

/// The names of every built-in collector.
pub fn collector_names() -> Vec<&'static str> {
    COLLECTORS.iter().map(|c| c.name()).collect()
}

/// Probes that feed the report envelope rather than a section; every plan runs them.
pub const ENVELOPE_PROBES: &[Probe] = &[
    Probe {
        id: "hostname",
        command: "hostname",
        script: "hostname 2>/dev/null || cat /etc/hostname",
        needs_root: false,
        replay_file: Some("hostname"),
        timeout_secs: 5,
        may_hang: false,
        programs: &[],
    },
    Probe {
        id: "machine-id",
        command: "cat /etc/machine-id",
        script: "cat /etc/machine-id 2>/dev/null || cat /var/lib/dbus/machine-id",
        needs_root: false,
        replay_file: Some("machine-id"),
        timeout_secs: 5,
        may_hang: false,
        programs: &[],
    },
];
