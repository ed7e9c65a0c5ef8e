//! `board` collector: the machine's SMBIOS "System Information" (manufacturer, model, serial
//! number, UUID), the strongest identity keys a report carries.
//!
//! Commands, in order of preference:
//!
//! * `dmidecode -t 1` (**root**; run as `$SUDO dmidecode -t 1`, so the sudoers line is exactly
//!   `dmidecode -t 1`). Replay file: `board.out`.
//! * `cat /sys/class/dmi/id/{sys_vendor,product_name,product_serial,product_uuid}` (no root
//!   needed to run; `product_serial` and `product_uuid` are readable by root only, so as another
//!   user this fallback cannot stand in for dmidecode). Used only when dmidecode fails or finds
//!   no table. No replay file.
//!
//! Outcomes:
//!
//! * dmidecode prints a System Information record: its fields, placeholders as null.
//! * The host has no SMBIOS (dmidecode prints only its preamble, or cannot find `/dev/mem`, and
//!   `/sys/class/dmi/id` does not exist): a section with every field null and no error.
//! * dmidecode fails (not installed, permission denied, sudo refused, timeout) and the sysfs
//!   fallback cannot read the serial and UUID: an error, so the stored board (and with it the
//!   asset's identity) stays as it was instead of being overwritten with nulls.

pub mod dmidecode;
pub mod sysfs;
pub mod system;

pub use system::parse_system;

use cmdb_model::report::BoardData;

use self::dmidecode::{DmiTable, read_table};
use self::sysfs::{DmiSysfs, parse_dmi_sysfs};
use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// SMBIOS system information: manufacturer, model, serial number, UUID.
pub struct Board;

/// Probe id of `dmidecode -t 1`.
pub const DMIDECODE_SYSTEM: &str = "dmidecode-system";

/// Probe id of the `/sys/class/dmi/id` reader (shared with the `memory` collector, which uses it
/// to tell "no SMBIOS" from "dmidecode could not read it").
pub const DMI_SYSFS: &str = "dmi-sysfs";

/// The `/sys/class/dmi/id` probe, listed by every collector that consults it (a plan runs it once).
pub const DMI_SYSFS_PROBE: Probe = Probe {
    id: DMI_SYSFS,
    command: "cat /sys/class/dmi/id/{sys_vendor,product_name,product_serial,product_uuid}",
    script: sysfs::SCRIPT,
    needs_root: false,
    replay_file: None,
    timeout_secs: 5,
    may_hang: false,
    programs: &[],
};

const PROBES: &[Probe] = &[
    Probe {
        id: DMIDECODE_SYSTEM,
        command: "dmidecode -t 1",
        script: "$SUDO dmidecode -t 1",
        needs_root: true,
        replay_file: Some("board.out"),
        timeout_secs: 10,
        may_hang: true,
        programs: &["dmidecode"],
    },
    DMI_SYSFS_PROBE,
];

/// The sysfs probe's findings, when it ran and printed its format.
pub(crate) fn sysfs_findings(outputs: &Outputs) -> Option<DmiSysfs> {
    outputs.succeeded(DMI_SYSFS).and_then(|o| parse_dmi_sysfs(&o.text()))
}

/// Board data when dmidecode found no System Information: the kernel's copy if it has one and
/// it is complete, else nothing (the host has no SMBIOS identity).
fn without_dmidecode_record(sysfs: Option<&DmiSysfs>, why: &str) -> Result<BoardData, CollectError> {
    match sysfs {
        Some(found) if found.present => found.board().ok_or_else(|| {
            CollectError::Command(format!(
                "{why}, but /sys/class/dmi/id describes this machine and its product_serial and product_uuid \
                 are readable by root only (use become = \"sudo\" or a dmidecode that supports this SMBIOS version)"
            ))
        }),
        _ => Ok(BoardData::default()),
    }
}

/// Decides the board section from the probes' outputs (see the module documentation).
pub fn board_from_outputs(outputs: &Outputs) -> Result<BoardData, CollectError> {
    let sysfs = sysfs_findings(outputs);
    match read_table(DMIDECODE_SYSTEM, outputs.get(DMIDECODE_SYSTEM)) {
        DmiTable::Records(records) => match system::find_system(&records) {
            Some(board) => Ok(board),
            None => without_dmidecode_record(sysfs.as_ref(), "dmidecode printed no System Information record"),
        },
        DmiTable::Absent => without_dmidecode_record(sysfs.as_ref(), "dmidecode found no SMBIOS System Information"),
        DmiTable::Failed(reason) => match sysfs {
            Some(found) => found.board().ok_or_else(|| {
                CollectError::Command(format!(
                    "{reason}; the /sys/class/dmi/id fallback cannot read product_serial and product_uuid \
                     without root (use become = \"sudo\")"
                ))
            }),
            None => Err(CollectError::Command(reason)),
        },
    }
}

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

    fn parse(&self, outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        let board = board_from_outputs(outputs)?;
        serde_json::to_value(board)
            .map_err(|e| CollectError::Parse { probe: DMIDECODE_SYSTEM.to_owned(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Exit, ProbeOutput};

    fn outputs(dmidecode: ProbeOutput, sysfs: Option<&str>) -> Outputs {
        let mut outputs = Outputs::default();
        outputs.insert(DMIDECODE_SYSTEM, dmidecode);
        outputs.insert(DMI_SYSFS, sysfs.map_or_else(ProbeOutput::not_found, |s| ProbeOutput::ok(s.as_bytes())));
        outputs
    }

    fn failed(stderr: &str, exit: Exit) -> ProbeOutput {
        ProbeOutput { stdout: b"# dmidecode 3.4\n".to_vec(), stderr: stderr.to_owned(), exit }
    }

    const SYSFS_ROOT: &str = "dmi: present\nsys_vendor: LENOVO\nproduct_name: ThinkServer RD650\nproduct_serial: PC0C6Y1R\nproduct_uuid: 32d32cd4-550c-e611-98a0-3c18a004f5ed\n";
    const SYSFS_USER: &str = "dmi: present\nsys_vendor: LENOVO\nproduct_name: ThinkServer RD650\nproduct_serial! unreadable\nproduct_uuid! unreadable\n";

    #[test]
    fn dmidecode_wins_and_serializes_to_the_v1_shape() {
        let text =
            std::fs::read(format!("{}/src/collectors/board/testdata/hp-dl180-g6.out", env!("CARGO_MANIFEST_DIR")))
                .expect("testdata");
        let value = Board.parse(&outputs(ProbeOutput::ok(text), Some(SYSFS_ROOT)), &CollectOptions::default());
        assert_eq!(
            value.expect("ok"),
            serde_json::json!({"manufacturer": "HP", "model": "ProLiant DL180 G6", "sn": "CZJ02901TG",
                               "uuid": "00D3F681-FE8E-11D5-B656-1CC1DE0905AE"})
        );
    }

    #[test]
    fn no_smbios_is_an_all_null_board_not_an_error() {
        let vm = failed("/dev/mem: No such file or directory", Exit::Code(1));
        assert_eq!(board_from_outputs(&outputs(vm.clone(), None)), Ok(BoardData::default()));
        assert_eq!(board_from_outputs(&outputs(vm, Some("dmi: absent\n"))), Ok(BoardData::default()));
        let replayed = ProbeOutput::ok(&b"# dmidecode 3.4\nScanning /dev/mem for entry point.\n"[..]);
        assert_eq!(board_from_outputs(&outputs(replayed, None)), Ok(BoardData::default()));
    }

    #[test]
    fn permission_denied_without_readable_fallback_is_an_error() {
        let denied = failed("/dev/mem: Permission denied", Exit::Code(1));
        let err = board_from_outputs(&outputs(denied.clone(), None)).expect_err("must not report nulls");
        assert!(err.to_string().contains("Permission denied"), "{err}");
        let err = board_from_outputs(&outputs(denied, Some(SYSFS_USER))).expect_err("serial unreadable");
        assert!(err.to_string().contains("sudo"), "{err}");
    }

    #[test]
    fn missing_dmidecode_falls_back_to_sysfs_as_root() {
        let board = board_from_outputs(&outputs(ProbeOutput::not_found(), Some(SYSFS_ROOT))).expect("fallback");
        assert_eq!(board.sn.as_deref(), Some("PC0C6Y1R"));
        assert_eq!(board.uuid.as_deref(), Some("32D32CD4-550C-E611-98A0-3C18A004F5ED"));
        let no_dmi = board_from_outputs(&outputs(ProbeOutput::not_found(), Some("dmi: absent\n")));
        assert_eq!(no_dmi, Ok(BoardData::default()));
    }

    #[test]
    fn table_dmidecode_cannot_read_but_kernel_can() {
        // dmidecode 2.x on SMBIOS 3-only firmware finds no entry point; the kernel does.
        let old = ProbeOutput::ok(&b"# dmidecode 2.12\n# No SMBIOS nor DMI entry point found, sorry.\n"[..]);
        let board = board_from_outputs(&outputs(old.clone(), Some(SYSFS_ROOT))).expect("sysfs as root");
        assert_eq!(board.model.as_deref(), Some("ThinkServer RD650"));
        assert!(board_from_outputs(&outputs(old, Some(SYSFS_USER))).is_err());
    }

    #[test]
    fn probes_are_documented_for_sudoers() {
        let root: Vec<&str> = PROBES.iter().filter(|p| p.needs_root).map(|p| p.command).collect();
        assert_eq!(root, ["dmidecode -t 1"]);
        assert!(PROBES.iter().filter(|p| p.needs_root).all(|p| p.script.starts_with("$SUDO ")));
    }
}
