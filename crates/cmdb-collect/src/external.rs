//! External collectors: any executable that prints a JSON object becomes a section.
//!
//! Declared in the agent's configuration as `[collectors.NAME] command = "...", timeout = "10s"`,
//! an external collector's command runs inside the same bundled script as the built-in probes, so
//! it works over every transport. Its stdout must be one JSON object; anything else, a non-zero
//! exit or a timeout makes only its own section an error.

use std::time::Duration;

use serde_json::Value;

use crate::CollectError;
use crate::probe::{Outputs, ProbeSpec};

/// Largest stdout an external collector may print.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// One configured external collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCollector {
    /// Section name (validated by [`cmdb_model::report::is_valid_section_name`]).
    pub name: String,
    /// Shell command line run on the host.
    pub command: String,
    /// Kill it after this long.
    pub timeout: Duration,
    /// Run it through sudo when `become = "sudo"`.
    pub needs_root: bool,
}

impl ExternalCollector {
    /// The probe id of this collector's command.
    pub fn probe_id(&self) -> String {
        format!("external-{}", self.name)
    }

    /// The probe that runs the command. Root-only commands get the `$SUDO` prefix the bundle sets.
    pub fn probe(&self) -> ProbeSpec {
        let script = if self.needs_root { format!("$SUDO {}", self.command) } else { self.command.clone() };
        ProbeSpec {
            id: self.probe_id(),
            script,
            needs_root: self.needs_root,
            replay_file: Some(format!("{}.json", self.probe_id())),
            timeout: self.timeout,

            may_hang: true,
            programs: Vec::new(),
        }
    }

    /// Reads the command's output as the section's data.
    pub fn parse(&self, outputs: &Outputs) -> Result<Value, CollectError> {
        let id = self.probe_id();
        let output = outputs.get(&id).ok_or_else(|| CollectError::Command(format!("{id}: did not run")))?;
        if !output.succeeded() {
            return Err(CollectError::Command(output.failure(&self.command)));
        }
        if output.stdout.len() > MAX_OUTPUT {
            return Err(CollectError::Parse { probe: id, message: format!("output larger than {MAX_OUTPUT} bytes") });
        }
        match serde_json::from_slice::<Value>(&output.stdout) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err(CollectError::Parse { probe: id, message: "expected one JSON object".to_owned() }),
            Err(e) => Err(CollectError::Parse { probe: id, message: e.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeOutput;

    fn collector() -> ExternalCollector {
        ExternalCollector {
            name: "raid".into(),
            command: "/usr/local/bin/raid-facts".into(),
            timeout: Duration::from_secs(10),
            needs_root: false,
        }
    }

    #[test]
    fn accepts_objects_only() {
        let c = collector();
        let mut outputs = Outputs::default();
        outputs.insert(c.probe_id(), ProbeOutput::ok(&br#"{"level": 5}"#[..]));
        assert_eq!(c.parse(&outputs).expect("object")["level"], 5);
        outputs.insert(c.probe_id(), ProbeOutput::ok(&b"[1]"[..]));
        assert!(c.parse(&outputs).is_err());
        outputs.insert(c.probe_id(), ProbeOutput::ok(&b"not json"[..]));
        assert!(c.parse(&outputs).is_err());
        outputs.insert(c.probe_id(), ProbeOutput::not_found());
        let message = c.parse(&outputs).expect_err("missing").to_string();
        assert!(message.contains("command not found"), "{message}");
    }
}
