//! `nic` collector (skeleton: the parser is being written).

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Network interfaces: MAC, state, MTU, master, IPv4 and IPv6 addresses.
pub struct Nic;

const PROBES: &[Probe] = &[
    Probe {
        id: "ip-json",
        command: "ip -j addr show",
        script: "ip -j addr show",
        needs_root: false,
        replay_file: Some("ip-addr.json"),
        timeout_secs: 5,
    },
    Probe {
        id: "ip-text",
        command: "ip addr show",
        script: "ip addr show",
        needs_root: false,
        replay_file: Some("nic.out"),
        timeout_secs: 5,
    },
];

impl Collector for Nic {
    fn name(&self) -> &'static str {
        "nic"
    }

    fn summary(&self) -> &'static str {
        "Network interfaces: MAC, state, MTU, master, IPv4 and IPv6 addresses."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, _outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        Err(CollectError::Command("nic: parser not implemented yet".to_owned()))
    }
}
