//! `disk` collector: physical drives, behind MegaRAID controllers and on the kernel.
//!
//! Commands (each once per host, inside the bundled script):
//!
//! - **root:** `MegaCli -PDList -aALL -NoLog`, trying the binaries `MegaCli64`, `MegaCli`,
//!   `megacli64`, `megacli` in that order (first one found on `PATH`, which the bundle extends with
//!   `/opt/MegaRAID/MegaCli`), run by its full path as `$SUDO /path/MegaCli64 -PDList -aALL -NoLog`.
//!   Replay file: `disk.out`.
//! - **root:** `storcli /call/eall/sall show all J nolog`, trying `storcli64`, `storcli`,
//!   `perccli64`, `perccli` (Dell's build, same output), then `/opt/MegaRAID/perccli/perccli64`,
//!   run by full path through `$SUDO`. Replay file: `storcli.json`.
//! - **no root:** `lsblk -J -b -d -o NAME,SIZE,ROTA,TYPE,MODEL,SERIAL,TRAN,VENDOR,HCTL,WWN`; when
//!   that fails (util-linux too old for a column) `lsblk -J -b -d -o NAME,SIZE,ROTA,TYPE,MODEL,SERIAL`,
//!   then `lsblk -J -b -d`. Replay file: `lsblk.json` (any `lsblk -J` output is read).
//!
//! sudoers therefore needs exactly the MegaCli and storcli binaries with these arguments (for
//! example `/opt/MegaRAID/MegaCli/MegaCli64 -PDList -aALL -NoLog` and
//! `/opt/MegaRAID/storcli/storcli64 /call/eall/sall show all J nolog`); lsblk needs nothing.
//!
//! The section lists controller drives (slot "ENCLOSURE:SLOT", ":SLOT" without an enclosure,
//! "aN/..." with several adapters) plus the kernel's physical disks (slot = kernel name), minus
//! the controller's RAID volumes and minus pass-through drives already listed; see [`merge`].
//! Capacities come from exact sector counts (x 512) or lsblk's byte counts, never from rounded
//! figures. When no source answers at all the section is an error carrying each probe's failure;
//! a successful lsblk that lists nothing means the host has no disks.
//!
//! Each output format has its own pure parser, public for fuzzing: [`megacli::parse_megacli`],
//! [`storcli::parse_storcli`], [`lsblk::parse_lsblk`], [`inquiry::split_inquiry`], and
//! [`merge::merge`] combines their results.

pub mod drive;
pub mod inquiry;
pub mod lsblk;
pub mod megacli;
pub mod merge;
pub mod storcli;

use cmdb_model::report::DiskData;

use crate::probe::{Exit, ProbeOutput};
use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

use self::drive::ControllerScan;
use self::lsblk::BlockDevice;

/// Physical disks: behind MegaRAID controllers (MegaCli, storcli) and on the kernel (lsblk).
pub struct Disk;

/// Probe id of `MegaCli -PDList -aALL`.
pub const MEGACLI_PROBE: &str = "megacli";
/// Probe id of `storcli /call/eall/sall show all J`.
pub const STORCLI_PROBE: &str = "storcli";
/// Probe id of `lsblk -J ...`.
pub const LSBLK_PROBE: &str = "lsblk";

const PROBES: &[Probe] = &[
    Probe {
        id: MEGACLI_PROBE,
        command: "MegaCli -PDList -aALL -NoLog",
        // Run by full path: sudo looks commands up in its own secure_path, which does not
        // include /opt/MegaRAID, and sudoers rules name full paths anyway.
        script: "for c in MegaCli64 MegaCli megacli64 megacli; do if command -v \"$c\" >/dev/null 2>&1; then exec $SUDO \"$(command -v \"$c\")\" -PDList -aALL -NoLog; fi; done; echo \"MegaCli: command not found\" >&2; exit 127",
        needs_root: true,
        replay_file: Some("disk.out"),
        timeout_secs: 60,
        may_hang: true,
        programs: &["MegaCli64", "MegaCli", "megacli64", "megacli"],
    },
    Probe {
        id: STORCLI_PROBE,
        command: "storcli /call/eall/sall show all J nolog",
        script: "for c in storcli64 storcli perccli64 perccli /opt/MegaRAID/perccli/perccli64; do if command -v \"$c\" >/dev/null 2>&1; then exec $SUDO \"$(command -v \"$c\")\" /call/eall/sall show all J nolog; fi; done; echo \"storcli: command not found\" >&2; exit 127",
        needs_root: true,
        replay_file: Some("storcli.json"),
        timeout_secs: 60,
        may_hang: true,
        programs: &["storcli64", "storcli", "perccli64", "perccli", "/opt/MegaRAID/perccli/perccli64"],
    },
    Probe {
        id: LSBLK_PROBE,
        command: "lsblk -J -b -d -o NAME,SIZE,ROTA,TYPE,MODEL,SERIAL,TRAN,VENDOR,HCTL,WWN",
        // Older util-linux refuses unknown columns; fall back to fewer, then to the defaults.
        script: "lsblk -J -b -d -o NAME,SIZE,ROTA,TYPE,MODEL,SERIAL,TRAN,VENDOR,HCTL,WWN 2>/dev/null || lsblk -J -b -d -o NAME,SIZE,ROTA,TYPE,MODEL,SERIAL 2>/dev/null || lsblk -J -b -d",
        needs_root: false,
        replay_file: Some("lsblk.json"),
        timeout_secs: 10,
        may_hang: true,
        programs: &[],
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

    fn parse(&self, outputs: &Outputs, _options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        let data = collect(outputs)?;
        serde_json::to_value(data).map_err(|e| CollectError::Parse { probe: "disk".to_owned(), message: e.to_string() })
    }
}

/// What one source gave: its parsed output, or why it gave nothing.
#[derive(Debug)]
enum Answer<T> {
    Answered(T),
    Failed(String),
}

impl<T> Answer<T> {
    fn answered(&self) -> Option<&T> {
        match self {
            Answer::Answered(value) => Some(value),
            Answer::Failed(_) => None,
        }
    }

    fn failure(&self) -> Option<&str> {
        match self {
            Answer::Answered(_) => None,
            Answer::Failed(reason) => Some(reason),
        }
    }
}

/// Whether a probe that did not exit 0 still produced a usable listing: MegaCli and storcli
/// sometimes exit non-zero while printing every drive (their own status is in the output), but
/// a probe that timed out or was cut short may have printed only part of the list.
fn exited_with_drives(output: &ProbeOutput, scan: &ControllerScan) -> bool {
    matches!(output.exit, Exit::Code(_)) && !scan.drives.is_empty()
}

fn megacli_answer(outputs: &Outputs) -> Answer<ControllerScan> {
    let Some(output) = outputs.get(MEGACLI_PROBE) else {
        return Answer::Failed(format!("{MEGACLI_PROBE}: did not run"));
    };
    let scan = megacli::parse_megacli(&output.text());
    if output.succeeded() || exited_with_drives(output, &scan) {
        Answer::Answered(scan)
    } else {
        Answer::Failed(output.failure(MEGACLI_PROBE))
    }
}

fn storcli_answer(outputs: &Outputs) -> Answer<ControllerScan> {
    let Some(output) = outputs.get(STORCLI_PROBE) else {
        return Answer::Failed(format!("{STORCLI_PROBE}: did not run"));
    };
    match storcli::parse_storcli(&output.text()) {
        Ok(scan) if output.succeeded() || exited_with_drives(output, &scan) => Answer::Answered(scan),
        Ok(_) => Answer::Failed(output.failure(STORCLI_PROBE)),
        Err(e) if output.succeeded() => Answer::Failed(format!("cannot parse {STORCLI_PROBE} output: {e}")),
        // storcli explains its failures in its JSON, not on stderr.
        Err(e @ storcli::StorcliError::Failed(_)) => Answer::Failed(format!("{}: {e}", output.failure(STORCLI_PROBE))),
        Err(_) => Answer::Failed(output.failure(STORCLI_PROBE)),
    }
}

fn lsblk_answer(outputs: &Outputs) -> Answer<Vec<BlockDevice>> {
    match outputs.get(LSBLK_PROBE) {
        None => Answer::Failed(format!("{LSBLK_PROBE}: did not run")),
        Some(output) if output.succeeded() => match lsblk::parse_lsblk(&output.text()) {
            Ok(devices) => Answer::Answered(devices),
            Err(e) => Answer::Failed(format!("cannot parse {LSBLK_PROBE} output: {e}")),
        },
        Some(output) => Answer::Failed(output.failure(LSBLK_PROBE)),
    }
}

/// Builds the disk section from the probes' outputs.
pub fn collect(outputs: &Outputs) -> Result<DiskData, CollectError> {
    let megacli = megacli_answer(outputs);
    let storcli = storcli_answer(outputs);
    let lsblk = lsblk_answer(outputs);
    let failures: Vec<&str> = [megacli.failure(), storcli.failure(), lsblk.failure()].into_iter().flatten().collect();
    if megacli.answered().is_none() && storcli.answered().is_none() && lsblk.answered().is_none() {
        return Err(CollectError::Command(format!("no disk source answered: {}", failures.join("; "))));
    }
    for failure in &failures {
        tracing::debug!(%failure, "disk source without an answer; the others stand in");
    }
    let disks = merge::merge(megacli.answered(), storcli.answered(), lsblk.answered().map(Vec::as_slice));
    Ok(DiskData { disks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COURSE: &str = include_str!("testdata/course-canonical.out");
    const RD650: &str = include_str!("testdata/lenovo-rd650.out");
    const DELL: &str = include_str!("testdata/dell-r630.out");
    const HP: &str = include_str!("testdata/hp-dl180-g6.out");
    const ORACLE: &str = include_str!("testdata/oracle-x5-2-oda.out");
    const FI_SET2: &str = include_str!("testdata/fusioninventory-set2.out");
    const FI_SET6: &str = include_str!("testdata/fusioninventory-set6.out");
    const FI_SET7: &str = include_str!("testdata/fusioninventory-set7.out");
    const MULTI: &str = include_str!("testdata/multi-adapter-constructed.out");
    const STORCLI_HPE: &str = include_str!("testdata/sdflexutils-c0-eall-sall-show-all.json");
    const LSBLK_VM: &str = include_str!("testdata/this-vm.lsblk.json");
    const LSBLK_TREE: &str = include_str!("testdata/dev-vm.lsblk-tree.json");

    fn outputs(pairs: &[(&str, ProbeOutput)]) -> Outputs {
        let mut outputs = Outputs::default();
        for probe in PROBES {
            outputs.insert(probe.id, ProbeOutput::not_found());
        }
        for (id, output) in pairs {
            outputs.insert(*id, output.clone());
        }
        outputs
    }

    fn slots(data: &DiskData) -> Vec<&str> {
        data.disks.iter().map(|d| d.slot.as_str()).collect()
    }

    #[test]
    fn glpi_expectations_for_the_fusioninventory_sets() {
        // Expected values from glpi-agent t/tasks/inventory/linux/storages/megacli.t (%storage_tests).
        let set2 = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(FI_SET2))])).expect("set2");
        assert_eq!(set2.disks.len(), 10);
        let serials: Vec<&str> = set2.disks.iter().filter_map(|d| d.sn.as_deref()).collect();
        assert_eq!(
            serials,
            vec![
                "KZGLE2EE", "KZGMA50E", "KZGL949E", "KZGMA85E", "KZGLK5SE", "KZGL95PE", "KZGL91HE", "KZGL7KNE",
                "KZGLKP8E", "KZGLG2HE"
            ]
        );
        for disk in &set2.disks {
            assert_eq!(disk.model.as_deref(), Some("HUC101212CSS600"));
            assert_eq!(disk.firmware.as_deref(), Some("U5E0"));
            assert_eq!(disk.pd_type.as_deref(), Some("SAS"));
            assert_eq!(disk.vendor.as_deref(), Some("HGST"));
            assert_eq!(disk.capacity_bytes, Some(0x8bba0cb0 * 512));
        }
        let set3 = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(DELL))])).expect("set3");
        let serials: Vec<&str> = set3.disks.iter().filter_map(|d| d.sn.as_deref()).collect();
        assert_eq!(serials, vec!["S7K13GAY", "S7K13G4A", "S7K13B54", "S7K13BDL"]);
        assert!(set3.disks.iter().all(|d| d.model.as_deref() == Some("ST300MP0005")));
        let set4 = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(HP))])).expect("set4");
        let serials: Vec<&str> = set4.disks.iter().filter_map(|d| d.sn.as_deref()).collect();
        assert_eq!(serials, vec!["Z390A051FRD3", "54O0A05KFRD4"]);
        assert!(set4.disks.iter().all(|d| d.model.as_deref() == Some("AL13SEB600")));
        let set1 = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(ORACLE))])).expect("set1");
        let serials: Vec<&str> = set1.disks.iter().filter_map(|d| d.sn.as_deref()).collect();
        assert_eq!(serials, vec!["CVCV31700005240FGN", "CVCV3165014E240FGN"]);
        assert!(
            set1.disks.iter().all(|d| d.firmware.as_deref() == Some("400i") && d.vendor.as_deref() == Some("Intel"))
        );
    }

    #[test]
    fn mixed_sas_and_sata_set_with_an_unconfigured_drive() {
        let data = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(FI_SET6))])).expect("set6");
        assert_eq!(data.disks.len(), 14);
        let slot10 = data.disks.iter().find(|d| d.slot == "32:10").expect("Unconfigured(good) drive is listed");
        assert_eq!(slot10.sn.as_deref(), Some("Z1X2C3QQ"));
        let ssd = data.disks.iter().find(|d| d.slot == "32:11").expect("32:11");
        assert_eq!(
            (ssd.sn.as_deref(), ssd.model.as_deref(), ssd.media.as_deref(), ssd.pd_type.as_deref()),
            (Some("CVDA406302Z92403GN"), Some("INTEL SSDSC2BW240A4"), Some("ssd"), Some("SATA"))
        );
        assert_eq!(ssd.capacity_bytes, Some(0x1bf244b0 * 512));
        let hgst = data.disks.iter().find(|d| d.slot == "32:12").expect("32:12");
        assert_eq!((hgst.sn.as_deref(), hgst.model.as_deref()), (Some("0XH97LXP"), Some("HUC156060CSS200")));
    }

    #[test]
    fn large_drives_and_intel_models_without_vendor_word() {
        let data = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(FI_SET7))])).expect("set7");
        assert_eq!(data.disks.len(), 14);
        assert_eq!(data.disks[0].slot, "64:0");
        assert_eq!(data.disks[0].capacity_bytes, Some(0x558a00000 * 512));
        assert_eq!(data.disks[0].sn.as_deref(), Some("D5G7WG8L"));
        let ssd = data.disks.iter().find(|d| d.slot == "64:13").expect("64:13");
        assert_eq!(
            (ssd.sn.as_deref(), ssd.model.as_deref(), ssd.vendor.as_deref(), ssd.firmware.as_deref()),
            (Some("BTYG95130JEY480BGN"), Some("SSDSC2KG480G8R"), Some("Intel"), Some("DL65"))
        );
    }

    #[test]
    fn several_adapters_get_prefixed_slots() {
        let data = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(MULTI))])).expect("multi");
        assert_eq!(
            slots(&data),
            vec!["a0/32:0", "a0/32:1", "a0/32:2", "a0/32:3", "a2/32:0", "a2/32:1"],
            "adapter 1 has no drives but still counts"
        );
        assert_eq!(data.disks[4].sn.as_deref(), Some("Z390A051FRD3"));
    }

    #[test]
    fn a_drive_without_enclosure_has_an_empty_enclosure_part() {
        let text = "Adapter #0\n\nEnclosure Device ID: N/A\nSlot Number: 3\nPD Type: SAS\nRaw Size: 1 GB [0x200000 Sectors]\n\nEnclosure Device ID: 32\nSlot Number: 3\nPD Type: SAS\n\nExit Code: 0x00\n";
        let data = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(text))])).expect("parses");
        assert_eq!(slots(&data), vec![":3", "32:3"]);
        assert_eq!(data.disks[0].capacity_bytes, Some(1_073_741_824));
    }

    #[test]
    fn storcli_alone() {
        let data = collect(&outputs(&[(STORCLI_PROBE, ProbeOutput::ok(STORCLI_HPE))])).expect("storcli");
        assert_eq!(slots(&data), vec!["252:0", "252:1", "252:2"]);
        let hp = &data.disks[0];
        assert_eq!(
            (hp.sn.as_deref(), hp.model.as_deref(), hp.firmware.as_deref(), hp.vendor.as_deref()),
            (Some("14070C01A4DF"), Some("VK0120GEFJE"), Some("HPG6"), None)
        );
        assert_eq!(hp.capacity_bytes, Some(0xdf94bb0 * 512));
        assert_eq!((hp.pd_type.as_deref(), hp.media.as_deref()), (Some("SATA"), Some("ssd")));
        let toshiba = &data.disks[1];
        assert_eq!(
            (toshiba.sn.as_deref(), toshiba.vendor.as_deref(), toshiba.firmware.as_deref()),
            (Some("Z4DS105ZTM3W"), Some("Toshiba"), Some("JZET6102"))
        );
    }

    #[test]
    fn megacli_and_storcli_together_list_each_drive_once() {
        // Same three drives, as MegaCli would print them on that host.
        let megacli = "Adapter #0\n\nEnclosure Device ID: 252\nSlot Number: 1\nDevice Id: 4\nWWN: 500080D9102A785C\nPD Type: SATA\nRaw Size: 111.790 GB [0xdf94bb0 Sectors]\nDevice Firmware Level: 6102\nInquiry Data:         Z4DS105ZTM3WTOSHIBA THNSNJ120PCSZ                   JZET6102\nMedia Type: Solid State Device\n\nExit Code: 0x00\n";
        let data = collect(&outputs(&[
            (MEGACLI_PROBE, ProbeOutput::ok(megacli)),
            (STORCLI_PROBE, ProbeOutput::ok(STORCLI_HPE)),
        ]))
        .expect("both");
        assert_eq!(slots(&data), vec!["252:0", "252:1", "252:2"]);
        let shared = &data.disks[1];
        assert_eq!(shared.firmware.as_deref(), Some("6102"), "MegaCli's value wins");
        assert_eq!(shared.sn.as_deref(), Some("Z4DS105ZTM3W"));
        assert_eq!(shared.model.as_deref(), Some("TOSHIBA THNSNJ120PCSZ"));
    }

    #[test]
    fn lsblk_alone_skips_zram_and_reads_the_tree_form() {
        let data = collect(&outputs(&[(LSBLK_PROBE, ProbeOutput::ok(LSBLK_VM))])).expect("lsblk");
        assert_eq!(slots(&data), vec!["vda"]);
        let vda = &data.disks[0];
        assert_eq!(vda.capacity_bytes, Some(274_877_906_944));
        assert_eq!(
            (vda.pd_type.as_deref(), vda.media.as_deref(), vda.vendor.as_deref()),
            (Some("virtio"), Some("hdd"), Some("Red Hat"))
        );
        let tree = collect(&outputs(&[(LSBLK_PROBE, ProbeOutput::ok(LSBLK_TREE))])).expect("tree");
        assert_eq!(slots(&tree), vec!["vda"]);
        assert_eq!(tree.disks[0].capacity_bytes, None, "\"256G\" is not an exact size");
    }

    #[test]
    fn raid_volumes_drop_out_when_their_drives_are_listed() {
        let lsblk = r#"{"blockdevices": [
            {"name": "sda", "size": 599550590976, "rota": true, "type": "disk", "model": "PERC H730 Mini", "serial": "0069e7d4a8c2c5a52200f0f9e2d0b486", "tran": null, "vendor": "DELL", "hctl": "0:2:0:0", "wwn": "0x6d0946606d3bd0002200f0f9e2d0b486"},
            {"name": "sdb", "size": 300069052416, "rota": true, "type": "disk", "model": "ST300MP0005", "serial": "S7K13BDL", "tran": "sas", "vendor": "SEAGATE", "hctl": "0:0:3:0", "wwn": "0x5000c50097176410"},
            {"name": "nvme0n1", "size": 960197124096, "rota": false, "type": "disk", "model": "SAMSUNG MZ1LB960HAJQ-00007", "serial": "S435NE0M700000", "tran": "nvme", "vendor": null, "hctl": null, "wwn": "eui.0025388791b0c0a1"}]}"#;
        let data = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(DELL)), (LSBLK_PROBE, ProbeOutput::ok(lsblk))]))
            .expect("merged");
        assert_eq!(
            slots(&data),
            vec!["32:0", "32:1", "32:2", "32:3", "nvme0n1"],
            "PERC volume out, JBOD sdb listed once"
        );
    }

    #[test]
    fn nothing_answering_is_an_error_naming_every_probe() {
        let err = collect(&outputs(&[])).expect_err("no source");
        let text = err.to_string();
        assert!(text.contains("megacli: command not found") && text.contains("storcli: command not found"), "{text}");
        assert!(text.contains("lsblk: command not found"), "{text}");
        let denied =
            ProbeOutput { stdout: Vec::new(), stderr: "sudo: a password is required\n".into(), exit: Exit::Code(1) };
        let garbage = ProbeOutput::ok(&b"NAME MAJ:MIN\nsda 8:0"[..]);
        let err = collect(&outputs(&[(MEGACLI_PROBE, denied), (LSBLK_PROBE, garbage)])).expect_err("nothing usable");
        let text = err.to_string();
        assert!(text.contains("megacli: exited with status 1: sudo: a password is required"), "{text}");
        assert!(text.contains("cannot parse lsblk output"), "{text}");
    }

    #[test]
    fn empty_successful_lsblk_is_zero_disks() {
        let data = collect(&outputs(&[(LSBLK_PROBE, ProbeOutput::ok(&b""[..]))])).expect("zero disks");
        assert!(data.disks.is_empty());
    }

    #[test]
    fn a_megacli_listing_with_a_non_zero_exit_still_counts_but_a_cut_one_does_not() {
        let odd_exit = ProbeOutput { stdout: COURSE.as_bytes().to_vec(), stderr: String::new(), exit: Exit::Code(1) };
        assert_eq!(collect(&outputs(&[(MEGACLI_PROBE, odd_exit)])).expect("listing").disks.len(), 6);
        let cut = ProbeOutput { stdout: COURSE.as_bytes().to_vec(), stderr: String::new(), exit: Exit::TimedOut };
        assert!(collect(&outputs(&[(MEGACLI_PROBE, cut)])).is_err());
    }

    #[test]
    fn section_value_has_the_v1_shape() {
        let value = Disk
            .parse(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(RD650))]), &CollectOptions::default())
            .expect("parses");
        let disks = value["disks"].as_array().expect("disks array");
        assert_eq!(disks.len(), 12);
        assert_eq!(disks[0]["slot"], "0:0");
        assert_eq!(disks[0]["capacity_bytes"], 0x15d50a3b0_u64 * 512);
        assert_eq!(disks[0]["sn"], "Z1Y3ZK3N");
        assert_eq!(disks[0]["model"], "ST3000NM0033-9ZM178");
        assert_eq!(disks[0]["vendor"], "Seagate");
        assert_eq!(disks[0]["firmware"], "LV5B");
        assert_eq!(disks[11]["sn"], "PHWL539307X5480QGN");
        assert_eq!(disks[11]["model"], "INTEL SSDSC2BB480G4L");
        // The server's own validation accepts it.
        let data: DiskData = serde_json::from_value(value).expect("v1 DiskData");
        assert_eq!(data.disks.len(), 12);
    }

    /// A real fixture with a random edit: a span deleted, or random text inserted, or cut short.
    fn mutated(fixture: &'static str) -> impl Strategy<Value = String> {
        (0..=fixture.len(), 0usize..64, ".{0,40}", 0u8..3).prop_map(move |(at, len, insert, kind)| {
            let at = (0..=at).rev().find(|&i| fixture.is_char_boundary(i)).unwrap_or(0);
            let end = (at..=(at + len).min(fixture.len())).rev().find(|&i| fixture.is_char_boundary(i)).unwrap_or(at);
            match kind {
                0 => format!("{}{}", &fixture[..at], &fixture[end..]),
                1 => format!("{}{}{}", &fixture[..at], insert, &fixture[at..]),
                _ => fixture[..at].to_owned(),
            }
        })
    }

    fn assert_unique_slots(data: &DiskData) {
        let mut seen = std::collections::BTreeSet::new();
        for disk in &data.disks {
            assert!(seen.insert(disk.slot.clone()), "duplicate slot {}", disk.slot);
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_text(text in ".{0,400}") {
            let _ = megacli::parse_megacli(&text);
            let _ = storcli::parse_storcli(&text);
            let _ = lsblk::parse_lsblk(&text);
            let _ = inquiry::split_inquiry(&text, Some("SATA"), Some("LV5B"));
            let _ = inquiry::split_inquiry(&text, Some("SAS"), None);
        }

        #[test]
        fn megacli_lines_of_arbitrary_values_never_panic(lines in proptest::collection::vec(("(Adapter #|Enclosure Device ID|Slot Number|Inquiry Data|Raw Size|PD Type|Device Firmware Level|Sector Size)", ".{0,70}"), 0..30)) {
            let text: String = lines.iter().map(|(key, value)| format!("{key}: {value}\n")).collect();
            let data = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(text.into_bytes()))]));
            if let Ok(data) = data {
                assert_unique_slots(&data);
            }
        }

        #[test]
        fn mutated_megacli_fixtures_never_panic(text in prop_oneof![mutated(COURSE), mutated(RD650), mutated(FI_SET6), mutated(MULTI)]) {
            let data = collect(&outputs(&[(MEGACLI_PROBE, ProbeOutput::ok(text.into_bytes()))])).expect("megacli answered");
            assert_unique_slots(&data);
        }

        #[test]
        fn mutated_storcli_and_lsblk_fixtures_never_panic(storcli in mutated(STORCLI_HPE), lsblk in mutated(LSBLK_VM)) {
            let result = collect(&outputs(&[
                (STORCLI_PROBE, ProbeOutput::ok(storcli.into_bytes())),
                (LSBLK_PROBE, ProbeOutput::ok(lsblk.into_bytes())),
            ]));
            if let Ok(data) = result {
                assert_unique_slots(&data);
            }
        }
    }
}
