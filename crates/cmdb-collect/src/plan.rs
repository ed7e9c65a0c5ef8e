//! A plan: which collectors run, which probes that takes, and how outputs become a report.
//!
//! The plan is built once from configuration and reused for every host, so the bundled script,
//! the probe list and the collector lookups are never recomputed per host.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};
use cmdb_model::report::{AgentInfo, HostInfo, Mode, SCHEMA_VERSION, WireReport, WireSection, is_valid_section_name};
use uuid::Uuid;

use crate::bundle::{self, Become};
use crate::external::ExternalCollector;
use crate::probe::{Outputs, ProbeSpec};
use crate::{COLLECTORS, CollectOptions, Collector, ENVELOPE_PROBES, collector, collector_names};

/// The agent version written into every report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A configuration that cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A name that is neither built in nor declared as an external collector.
    #[error("unknown collector {name:?}; known collectors: {known}")]
    UnknownCollector {
        /// The name given.
        name: String,
        /// Every name that would have worked.
        known: String,
    },
    /// An external collector's name cannot be a section name.
    #[error(
        "external collector name {0:?} is not a valid section name (1-64 of [a-z0-9_-], not a built-in or reserved name)"
    )]
    BadExternalName(String),
    /// A name listed twice.
    #[error("collector {0:?} is listed twice")]
    Duplicate(String),
}

/// One selected collector.
#[derive(Clone)]
enum Selected {
    Builtin(&'static dyn Collector),
    External(ExternalCollector),
}

impl Selected {
    fn name(&self) -> &str {
        match self {
            Selected::Builtin(c) => c.name(),
            Selected::External(e) => &e.name,
        }
    }
}

/// What to run on every host and how to read it.
#[derive(Clone)]
pub struct Plan {
    selected: Vec<Selected>,
    probes: Vec<ProbeSpec>,
    options: CollectOptions,
}

/// Per-host facts the report envelope needs besides the probe outputs.
#[derive(Debug, Clone)]
pub struct HostContext {
    /// How the outputs were collected.
    pub mode: Mode,
    /// When the probes ran.
    pub collected_at: DateTime<Utc>,
    /// The name to use when the host does not print one (the SSH target, the replay directory).
    pub fallback_hostname: Option<String>,
}

/// A collected host: the report, plus whether any section failed (for summaries).
#[derive(Debug, Clone)]
pub struct HostReport {
    /// The v1 report (with `previous_hostname` unset: the delivery layer knows it).
    pub report: WireReport,
    /// Names of sections whose collector failed.
    pub failed_sections: Vec<String>,
}

impl Plan {
    /// Plans the collectors named in `names`; `externals` are the declared external collectors
    /// (an external runs only when its name is listed too).
    pub fn new(names: &[String], externals: &[ExternalCollector], options: CollectOptions) -> Result<Self, PlanError> {
        for external in externals {
            if collector(&external.name).is_some() || !is_valid_section_name(&external.name) {
                return Err(PlanError::BadExternalName(external.name.clone()));
            }
        }
        let mut selected: Vec<Selected> = Vec::new();
        for name in names {
            if selected.iter().any(|s| s.name() == name) {
                return Err(PlanError::Duplicate(name.clone()));
            }
            let found = match collector(name) {
                Some(builtin) => Selected::Builtin(builtin),
                None => match externals.iter().find(|e| &e.name == name) {
                    Some(external) => Selected::External(external.clone()),
                    None => {
                        let mut known: Vec<String> = collector_names().into_iter().map(str::to_owned).collect();
                        known.extend(externals.iter().map(|e| e.name.clone()));
                        return Err(PlanError::UnknownCollector { name: name.clone(), known: known.join(", ") });
                    }
                },
            };
            selected.push(found);
        }
        let mut probes: Vec<ProbeSpec> = ENVELOPE_PROBES.iter().map(ProbeSpec::from).collect();
        for s in &selected {
            let specs: Vec<ProbeSpec> = match s {
                Selected::Builtin(c) => c.probes().iter().map(ProbeSpec::from).collect(),
                Selected::External(e) => vec![e.probe()],
            };
            for spec in specs {
                if !probes.iter().any(|p| p.id == spec.id) {
                    probes.push(spec);
                }
            }
        }
        Ok(Plan { selected, probes, options })
    }

    /// A plan of every built-in collector with default options.
    pub fn all_builtin() -> Self {
        let names: Vec<String> = COLLECTORS.iter().map(|c| c.name().to_owned()).collect();
        match Plan::new(&names, &[], CollectOptions::default()) {
            Ok(plan) => plan,
            Err(e) => unreachable!("built-in collectors always plan: {e}"),
        }
    }

    /// Every probe the plan runs, each once.
    pub fn probes(&self) -> &[ProbeSpec] {
        &self.probes
    }

    /// Names of the selected collectors.
    pub fn collector_names(&self) -> Vec<String> {
        self.selected.iter().map(|s| s.name().to_owned()).collect()
    }

    /// The bundled script for one host.
    pub fn script(&self, become_root: Become, boundary: &str) -> String {
        bundle::script(&self.probes, become_root, boundary)
    }

    /// Splits a bundled script's stdout into outputs.
    pub fn split(&self, stdout: &[u8], boundary: &str) -> Outputs {
        bundle::split(stdout, &self.probes, boundary)
    }

    /// Runs every selected collector's parser. A failing or panicking parser yields an error
    /// section; the others are unaffected.
    pub fn sections(&self, outputs: &Outputs) -> BTreeMap<String, WireSection> {
        let mut sections = BTreeMap::new();
        for s in &self.selected {
            let parsed = catch_unwind(AssertUnwindSafe(|| match s {
                Selected::Builtin(c) => c.parse(outputs, &self.options),
                Selected::External(e) => e.parse(outputs),
            }));
            let section = match parsed {
                Ok(Ok(data)) => WireSection::ok(data),
                Ok(Err(e)) => WireSection::error(e.to_string()),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    WireSection::error(format!("collector {} panicked: {message}", s.name()))
                }
            };
            sections.insert(s.name().to_owned(), section);
        }
        sections
    }

    /// Builds the report for one host from its outputs.
    pub fn report(&self, outputs: &Outputs, context: &HostContext) -> HostReport {
        let sections = self.sections(outputs);
        let first_line = |id: &str| {
            outputs
                .succeeded(id)
                .and_then(|o| o.text().lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned))
        };
        let hostname = first_line("hostname")
            .or_else(|| context.fallback_hostname.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        let machine_id = first_line("machine-id").and_then(|id| cmdb_model::identity::normalize_machine_id(&id));
        let failed_sections = sections
            .iter()
            .filter(|(_, s)| s.status == cmdb_model::report::SectionStatus::Error)
            .map(|(name, _)| name.clone())
            .collect();
        let report = WireReport {
            schema: SCHEMA_VERSION,
            report_id: Uuid::new_v4(),
            collected_at: context.collected_at,
            agent: AgentInfo { version: AGENT_VERSION.to_owned(), mode: context.mode },
            host: HostInfo { hostname, previous_hostname: None, machine_id },
            sections,
            collected_for: None,
        };
        HostReport { report, failed_sections }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeOutput;

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = Plan::new(&["cpu".into(), "gpu".into()], &[], CollectOptions::default()).err().expect("unknown");
        let text = err.to_string();
        assert!(text.contains("\"gpu\"") && text.contains("basic, cpu, board, memory, disk, nic"), "{text}");
    }

    #[test]
    fn shared_probes_run_once() {
        let plan = Plan::all_builtin();
        let mut ids: Vec<&str> = plan.probes().iter().map(|p| p.id.as_str()).collect();
        let total = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), total);
    }

    #[test]
    fn envelope_uses_hostname_probe_then_fallback() {
        let plan = Plan::new(&["cpu".into()], &[], CollectOptions::default()).expect("plan");
        let context =
            HostContext { mode: Mode::Ssh, collected_at: Utc::now(), fallback_hostname: Some("10.0.0.5".into()) };
        let mut outputs = Outputs::default();
        assert_eq!(plan.report(&outputs, &context).report.host.hostname, "10.0.0.5");
        outputs.insert("hostname", ProbeOutput::ok(&b"web-01\n"[..]));
        outputs.insert("machine-id", ProbeOutput::ok(&b"0123456789abcdef0123456789abcdef\n"[..]));
        let report = plan.report(&outputs, &context).report;
        assert_eq!(report.host.hostname, "web-01");
        assert_eq!(report.host.machine_id.as_deref(), Some("0123456789abcdef0123456789abcdef"));
    }
}
