//! `memory` collector: the populated memory slots (DIMMs), the slot count and the total.
//!
//! Commands:
//!
//! * `dmidecode -t 17` (**root**; run as `$SUDO dmidecode -t 17`, so the sudoers line is exactly
//!   `dmidecode -t 17`). Replay file: `memory.out`.
//! * `cat /proc/meminfo` (no root). Replay file: `meminfo`.
//! * `cat /sys/class/dmi/id/{sys_vendor,product_name,product_serial,product_uuid}` (no root; the
//!   same probe as the `board` collector, run once per plan). Consulted only when dmidecode fails,
//!   to tell a host without SMBIOS from one whose table dmidecode could not read.
//!
//! Outcomes:
//!
//! * dmidecode lists memory devices: the populated ones become modules (see [`devices`] for the
//!   rules); `total_mb` is their sum, or `floor(MemTotal / 1024)` when a module's size is unknown.
//! * The host has no SMBIOS (no table, or no `/dev/mem` and no `/sys/class/dmi/id`): no modules,
//!   `slots_total` null, `total_mb` from `/proc/meminfo`.
//! * dmidecode fails for another reason (not installed, permission denied, sudo refused, timeout):
//!   an error, because reporting an empty module list would record every DIMM as removed.
//! * Nothing is known at all (no SMBIOS and no readable `/proc/meminfo`): an error.

pub mod devices;
pub mod meminfo;

pub use devices::parse_memory_devices;
pub use meminfo::parse_mem_total_mib;

use cmdb_model::report::MemoryData;

use crate::collectors::board::dmidecode::{DmiTable, read_table};
use crate::collectors::board::{DMI_SYSFS_PROBE, sysfs_findings};
use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Memory: installed DIMMs, slot count, total.
pub struct Memory;

/// Probe id of `dmidecode -t 17`.
pub const DMIDECODE_MEMORY: &str = "dmidecode-memory";

/// Probe id of `cat /proc/meminfo`.
pub const MEMINFO: &str = "meminfo";

const PROBES: &[Probe] = &[
    Probe {
        id: DMIDECODE_MEMORY,
        command: "dmidecode -t 17",
        script: "$SUDO dmidecode -t 17",
        needs_root: true,
        replay_file: Some("memory.out"),
        timeout_secs: 10,
        may_hang: true,
        programs: &["dmidecode"],
    },
    Probe {
        id: MEMINFO,
        command: "cat /proc/meminfo",
        script: "cat /proc/meminfo",
        needs_root: false,
        replay_file: Some("meminfo"),
        timeout_secs: 5,
        may_hang: false,
        programs: &[],
    },
    DMI_SYSFS_PROBE,
];

/// Decides the memory section from the probes' outputs (see the module documentation).
pub fn memory_from_outputs(outputs: &Outputs) -> Result<MemoryData, CollectError> {
    let mem_total_mib = outputs.succeeded(MEMINFO).and_then(|o| parse_mem_total_mib(&o.text()));
    let mut data = match read_table(DMIDECODE_MEMORY, outputs.get(DMIDECODE_MEMORY)) {
        DmiTable::Records(records) => devices::memory_from_records(&records),
        DmiTable::Absent => MemoryData::default(),
        DmiTable::Failed(reason) => match sysfs_findings(outputs) {
            Some(found) if !found.present => MemoryData::default(),
            _ => {
                return Err(CollectError::Command(format!(
                    "{reason} (the DIMM inventory needs dmidecode run as root: use become = \"sudo\")"
                )));
            }
        },
    };
    if data.total_mb.is_none() {
        data.total_mb = mem_total_mib;
    }
    if data.total_mb.is_none() && data.modules.is_empty() && data.slots_total.is_none() {
        let meminfo = outputs.get(MEMINFO).map_or_else(|| format!("{MEMINFO}: did not run"), |o| o.failure(MEMINFO));
        return Err(CollectError::Command(format!(
            "no memory information: dmidecode lists no memory devices and /proc/meminfo gave no MemTotal ({meminfo})"
        )));
    }
    Ok(data)
}

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

    fn parse(&self, outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        let data = memory_from_outputs(outputs)?;
        serde_json::to_value(data)
            .map_err(|e| CollectError::Parse { probe: DMIDECODE_MEMORY.to_owned(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::board::DMI_SYSFS;
    use crate::probe::{Exit, ProbeOutput};

    fn testdata(name: &str) -> Vec<u8> {
        let path = format!("{}/src/collectors/memory/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn outputs(dmidecode: ProbeOutput, meminfo: Option<&[u8]>, sysfs: Option<&str>) -> Outputs {
        let mut outputs = Outputs::default();
        outputs.insert(DMIDECODE_MEMORY, dmidecode);
        outputs.insert(MEMINFO, meminfo.map_or_else(ProbeOutput::not_found, ProbeOutput::ok));
        outputs.insert(DMI_SYSFS, sysfs.map_or_else(ProbeOutput::not_found, |s| ProbeOutput::ok(s.as_bytes())));
        outputs
    }

    const MEMINFO_TEXT: &[u8] = b"MemTotal:       24684084 kB\nMemFree:        22541076 kB\n";

    #[test]
    fn dimm_sum_wins_over_meminfo() {
        let data = memory_from_outputs(&outputs(ProbeOutput::ok(testdata("dell-r630.out")), Some(MEMINFO_TEXT), None))
            .expect("ok");
        assert_eq!((data.total_mb, data.slots_total, data.modules.len()), (Some(65_536), Some(24), 16));
    }

    #[test]
    fn no_smbios_uses_meminfo() {
        let vm = ProbeOutput {
            stdout: b"# dmidecode 3.4\nScanning /dev/mem for entry point.\n".to_vec(),
            stderr: "/dev/mem: No such file or directory\n".into(),
            exit: Exit::Code(1),
        };
        let data = memory_from_outputs(&outputs(vm, Some(MEMINFO_TEXT), None)).expect("ok");
        assert_eq!(data, MemoryData { total_mb: Some(24_105), slots_total: None, modules: vec![] });
        let replayed = ProbeOutput::ok(testdata("this-vm.out"));
        assert_eq!(
            memory_from_outputs(&outputs(replayed, Some(MEMINFO_TEXT), None)).expect("ok").total_mb,
            Some(24_105)
        );
    }

    #[test]
    fn missing_dmidecode_on_a_board_without_dmi_uses_meminfo() {
        let data = memory_from_outputs(&outputs(ProbeOutput::not_found(), Some(MEMINFO_TEXT), Some("dmi: absent\n")))
            .expect("ok");
        assert_eq!((data.total_mb, data.slots_total), (Some(24_105), None));
    }

    #[test]
    fn unreadable_table_is_an_error_not_an_empty_inventory() {
        let denied = ProbeOutput {
            stdout: b"# dmidecode 3.4\n".to_vec(),
            stderr: "/dev/mem: Permission denied\n".into(),
            exit: Exit::Code(1),
        };
        let err = memory_from_outputs(&outputs(denied, Some(MEMINFO_TEXT), Some("dmi: present\n"))).expect_err("error");
        assert!(err.to_string().contains("Permission denied") && err.to_string().contains("sudo"), "{err}");
        assert!(memory_from_outputs(&outputs(ProbeOutput::not_found(), Some(MEMINFO_TEXT), None)).is_err());
    }

    #[test]
    fn unknown_module_size_falls_back_to_meminfo() {
        let text = b"Memory Device\n\tSize: Unknown\n\tLocator: A\n\tSerial Number: 1234ABCD\n";
        let data = memory_from_outputs(&outputs(ProbeOutput::ok(&text[..]), Some(MEMINFO_TEXT), None)).expect("ok");
        assert_eq!((data.total_mb, data.slots_total, data.modules.len()), (Some(24_105), Some(1), 1));
    }

    #[test]
    fn nothing_known_is_an_error() {
        let empty = ProbeOutput::ok(&b"# dmidecode 3.4\n"[..]);
        assert!(memory_from_outputs(&outputs(empty, None, None)).is_err());
    }

    #[test]
    fn serializes_to_the_v1_shape() {
        let value = Memory
            .parse(&outputs(ProbeOutput::ok(testdata("course-canonical.out")), None, None), &CollectOptions::default())
            .expect("ok");
        assert_eq!(
            value,
            serde_json::json!({"total_mb": 1024, "slots_total": 8, "modules": [{"slot": "DIMM #0", "capacity_mb": 1024,
                "type": "DRAM", "speed_mts": 667, "manufacturer": null, "sn": null, "part_number": null}]})
        );
    }
}
