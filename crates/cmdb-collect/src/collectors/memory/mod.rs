//! `memory` collector (skeleton: the parser is being written).

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Memory: installed DIMMs, slot count, total.
pub struct Memory;

const PROBES: &[Probe] = &[
    Probe {
        id: "dmidecode-memory",
        command: "dmidecode -t 17",
        script: "$SUDO dmidecode -t 17",
        needs_root: true,
        replay_file: Some("memory.out"),
        timeout_secs: 10,
    },
    Probe {
        id: "meminfo",
        command: "cat /proc/meminfo",
        script: "cat /proc/meminfo",
        needs_root: false,
        replay_file: Some("meminfo"),
        timeout_secs: 5,
    },
];

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn summary(&self) -> &'static str {
        "Memory: installed DIMMs, slot count, total."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, _outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        Err(CollectError::Command("memory: parser not implemented yet".to_owned()))
    }
}
