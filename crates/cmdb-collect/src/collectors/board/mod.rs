//! `board` collector (skeleton: the parser is being written).

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// SMBIOS system information: manufacturer, model, serial number, UUID.
pub struct Board;

const PROBES: &[Probe] = &[Probe {
    id: "dmidecode-system",
    command: "dmidecode -t 1",
    script: "$SUDO dmidecode -t 1",
    needs_root: true,
    replay_file: Some("board.out"),
    timeout_secs: 10,
}];

impl Collector for Board {
    fn name(&self) -> &'static str {
        "board"
    }

    fn summary(&self) -> &'static str {
        "SMBIOS system information: manufacturer, model, serial number, UUID."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, _outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        Err(CollectError::Command("board: parser not implemented yet".to_owned()))
    }
}
