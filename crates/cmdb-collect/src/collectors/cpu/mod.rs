//! `cpu` collector (skeleton: the parser is being written).

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Processors: logical CPUs, sockets, model name.
pub struct Cpu;

const PROBES: &[Probe] = &[Probe {
    id: "cpuinfo",
    command: "cat /proc/cpuinfo",
    script: "cat /proc/cpuinfo",
    needs_root: false,
    replay_file: Some("cpuinfo.out"),
    timeout_secs: 5,
}];

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn summary(&self) -> &'static str {
        "Processors: logical CPUs, sockets, model name."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, _outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        Err(CollectError::Command("cpu: parser not implemented yet".to_owned()))
    }
}
