//! `disk` collector (skeleton: the parser is being written).

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Physical disks: behind MegaRAID controllers (MegaCli, storcli) and on the kernel (lsblk).
pub struct Disk;

const PROBES: &[Probe] = &[
    Probe {
        id: "megacli",
        command: "MegaCli -PDList -aALL",
        script: "for c in MegaCli64 MegaCli megacli64 megacli; do if command -v \"$c\" >/dev/null 2>&1; then exec $SUDO \"$c\" -PDList -aALL -NoLog; fi; done; echo \"MegaCli: command not found\" >&2; exit 127",
        needs_root: true,
        replay_file: Some("disk.out"),
        timeout_secs: 30,
    },
    Probe {
        id: "lsblk",
        command: "lsblk -J -b -d -o NAME,SIZE,ROTA,TYPE,MODEL,SERIAL,TRAN,VENDOR,HCTL,WWN",
        script: "lsblk -J -b -d -o NAME,SIZE,ROTA,TYPE,MODEL,SERIAL,TRAN,VENDOR,HCTL,WWN",
        needs_root: false,
        replay_file: Some("lsblk.json"),
        timeout_secs: 10,
    },
];

impl Collector for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn summary(&self) -> &'static str {
        "Physical disks: behind MegaRAID controllers (MegaCli, storcli) and on the kernel (lsblk)."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, _outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        Err(CollectError::Command("disk: parser not implemented yet".to_owned()))
    }
}
