//! `basic` collector (skeleton: the parser is being written).

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Operating system: host name, distribution, kernel, architecture.
pub struct Basic;

const PROBES: &[Probe] = &[
    Probe {
        id: "os-release",
        command: "cat /etc/os-release",
        script: "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release",
        needs_root: false,
        replay_file: Some("os-release"),
        timeout_secs: 5,
    },
    Probe {
        id: "uname",
        command: "uname -a",
        script: "uname -a",
        needs_root: false,
        replay_file: Some("uname"),
        timeout_secs: 5,
    },
];

impl Collector for Basic {
    fn name(&self) -> &'static str {
        "basic"
    }

    fn summary(&self) -> &'static str {
        "Operating system: host name, distribution, kernel, architecture."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, _outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        Err(CollectError::Command("basic: parser not implemented yet".to_owned()))
    }
}
