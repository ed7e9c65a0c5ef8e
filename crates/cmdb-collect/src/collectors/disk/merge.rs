//! Combining the controller tools' drives with the kernel's disks into one list.
//!
//! The rule: every physical drive behind a MegaRAID controller (MegaCli and storcli describe the
//! same drives; MegaCli's values win, storcli fills what MegaCli left out), plus every physical
//! disk lsblk shows, minus the controller's virtual drives (its RAID volumes appear in lsblk as
//! `sdX` "DELL PERC H730", "LSI MR9361-8i", ...), minus lsblk disks that are a controller drive
//! passed through as JBOD (same serial number or WWN). Nothing is listed twice and nothing is
//! dropped that is not one of those.
//!
//! MegaCli wins over storcli because MegaCli is the older tool: a host that gains storcli keeps
//! the values it reported before (storcli prints the full 8-character ATA firmware where MegaCli
//! prints the 4-character "Device Firmware Level").
//!
//! Slots: "ENCLOSURE:SLOT" for controller drives, the notation MegaCli (`-PhysDrv [E:S]`) and
//! storcli (`EID:Slt`) use; ":SLOT" when the drive has no enclosure ("Enclosure Device ID: N/A",
//! MegaCli's `[:S]`, storcli's `" :S"`), so the key stays the same whichever tool answered.
//! With more than one adapter every controller slot gets an "aN/" prefix. Kernel disks use their
//! kernel name. Slots are unique: a repeated one gets "#" and the controller's device id.

use std::collections::{BTreeMap, BTreeSet};

use cmdb_model::report::Disk;

use super::drive::{
    ControllerDrive, ControllerScan, clean_serial, interface_name, normalize_wwn, vendor_from_model, vendor_name,
};
use super::lsblk::{BlockDevice, is_physical_disk};

/// Merges the sources that answered (`None` for a source that did not).
pub fn merge(
    megacli: Option<&ControllerScan>,
    storcli: Option<&ControllerScan>,
    lsblk: Option<&[BlockDevice]>,
) -> Vec<Disk> {
    let mut adapters: BTreeSet<u32> = BTreeSet::new();
    for scan in [megacli, storcli].into_iter().flatten() {
        adapters.extend(scan.adapters.iter().copied());
        adapters.extend(scan.drives.iter().map(|d| d.adapter));
    }
    // Drives within one tool's output are distinct even when they repeat a slot; only storcli's
    // drives are matched against MegaCli's.
    let mut drives: Vec<ControllerDrive> = megacli.map(|scan| scan.drives.clone()).unwrap_or_default();
    let from_megacli = drives.len();
    for drive in storcli.map(|scan| scan.drives.as_slice()).unwrap_or_default() {
        match drives[..from_megacli].iter_mut().find(|known| same_controller_drive(known, drive)) {
            Some(known) => fill_gaps(known, drive),
            None => drives.push(drive.clone()),
        }
    }
    drives.sort_by_key(slot_order);
    let several_adapters = adapters.len() > 1;

    let mut disks: Vec<Disk> = drives.iter().map(|drive| controller_disk(drive, several_adapters)).collect();
    if let Some(devices) = lsblk {
        for device in devices.iter().filter(|d| is_physical_disk(d)) {
            if drives.iter().any(|drive| same_identity(drive, device)) {
                // A JBOD / pass-through drive: the controller's entry (with its slot) stands.
                continue;
            }
            if !drives.is_empty() && is_controller_volume(device.vendor.as_deref(), device.model.as_deref()) {
                // A RAID volume whose member drives are listed above.
                continue;
            }
            disks.push(kernel_disk(device));
        }
    }
    make_slots_unique(&mut disks, &drives);
    disks
}

/// The same drive seen by two tools: same adapter, enclosure and slot, or the same serial or WWN.
fn same_controller_drive(a: &ControllerDrive, b: &ControllerDrive) -> bool {
    (a.adapter == b.adapter && a.enclosure == b.enclosure && a.slot == b.slot)
        || wwns_match(a.wwn.as_deref(), b.wwn.as_deref())
        || serials_match(a.serial.as_deref(), b.serial.as_deref())
}

fn same_identity(drive: &ControllerDrive, device: &BlockDevice) -> bool {
    let wwn = device.wwn.as_deref().and_then(normalize_wwn);
    let serial = device.serial.as_deref().and_then(clean_serial);
    wwns_match(drive.wwn.as_deref(), wwn.as_deref()) || serials_match(drive.serial.as_deref(), serial.as_deref())
}

fn wwns_match(a: Option<&str>, b: Option<&str>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a == b)
}

/// Serial numbers match when equal, or when one is the start of the other and at least eight
/// characters long: SAS drives put an 8-character serial in their INQUIRY data (what MegaCli
/// prints) and a longer one in VPD page 0x80 (what lsblk prints).
fn serials_match(a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return false };
    let (a, b) = (a.to_ascii_uppercase(), b.to_ascii_uppercase());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long || (short.len() >= 8 && long.starts_with(&short))
}

fn fill_gaps(known: &mut ControllerDrive, other: &ControllerDrive) {
    fn fill<T: Clone>(field: &mut Option<T>, value: &Option<T>) {
        if field.is_none() {
            field.clone_from(value);
        }
    }
    fill(&mut known.enclosure, &other.enclosure);
    fill(&mut known.device_id, &other.device_id);
    fill(&mut known.capacity_bytes, &other.capacity_bytes);
    fill(&mut known.pd_type, &other.pd_type);
    fill(&mut known.media, &other.media);
    fill(&mut known.vendor, &other.vendor);
    fill(&mut known.model, &other.model);
    fill(&mut known.serial, &other.serial);
    fill(&mut known.firmware, &other.firmware);
    fill(&mut known.wwn, &other.wwn);
    fill(&mut known.state, &other.state);
}

/// Adapter, then enclosure, then slot, numbers compared as numbers ("2" before "10").
fn slot_order(drive: &ControllerDrive) -> (u32, (u64, String), (u64, String)) {
    let numeric = |text: &str| (text.parse::<u64>().unwrap_or(u64::MAX), text.to_owned());
    let enclosure = drive.enclosure.as_deref().map_or((0, String::new()), numeric);
    (drive.adapter, enclosure, numeric(&drive.slot))
}

fn controller_slot(drive: &ControllerDrive, several_adapters: bool) -> String {
    let enclosure = drive.enclosure.as_deref().unwrap_or("");
    if several_adapters {
        format!("a{}/{enclosure}:{}", drive.adapter, drive.slot)
    } else {
        format!("{enclosure}:{}", drive.slot)
    }
}

fn controller_disk(drive: &ControllerDrive, several_adapters: bool) -> Disk {
    Disk {
        slot: controller_slot(drive, several_adapters),
        capacity_bytes: drive.capacity_bytes,
        model: drive.model.clone(),
        sn: drive.serial.clone(),
        pd_type: drive.pd_type.clone(),
        media: drive.media.clone(),
        vendor: drive.vendor.clone(),
        firmware: drive.firmware.clone(),
    }
}

fn kernel_disk(device: &BlockDevice) -> Disk {
    let pd_type = device.transport.as_deref().and_then(interface_name).or_else(|| interface_from_name(&device.name));
    // NVMe is flash by definition; the kernel's rotational flag decides the rest.
    let media = if pd_type.as_deref() == Some("NVMe") {
        Some("ssd".to_owned())
    } else {
        device.rotational.map(|rotational| if rotational { "hdd" } else { "ssd" }.to_owned())
    };
    Disk {
        slot: device.name.clone(),
        capacity_bytes: device.size,
        model: device.model.clone(),
        sn: device.serial.as_deref().and_then(clean_serial),
        pd_type,
        media,
        vendor: device
            .vendor
            .as_deref()
            .and_then(vendor_name)
            .or_else(|| device.model.as_deref().and_then(vendor_from_model)),
        firmware: device.revision.clone(),
    }
}

/// The interface a kernel name implies when lsblk printed no transport.
fn interface_from_name(name: &str) -> Option<String> {
    if name.starts_with("nvme") {
        Some("NVMe".to_owned())
    } else if name.starts_with("vd") {
        Some("virtio".to_owned())
    } else if name.starts_with("mmcblk") {
        Some("MMC".to_owned())
    } else {
        None
    }
}

/// Whether an lsblk disk is a MegaRAID virtual drive (a RAID volume), judged by the vendor and
/// model strings the controller family gives its volumes: LSI / Avago / Broadcom ("LSI
/// MR9260-8i", "AVAGO SMC3108", "BROADCOM MR9560-16i"), Dell ("PERC H730 Mini"), IBM / Lenovo
/// ("ServeRAID M5210", "RAID 930-8i"), Fujitsu ("PRAID EP420i"), Cisco ("UCSC-RAID12G"), Intel
/// ("RS3DC080", "RMS3CC080") and LSI Integrated RAID ("Logical Volume"). HP/HPE Smart Array
/// volumes are left alone: MegaCli and storcli cannot see their member drives.
pub fn is_controller_volume(vendor: Option<&str>, model: Option<&str>) -> bool {
    let vendor = vendor.map(|v| v.trim().to_ascii_uppercase()).unwrap_or_default();
    let model = model.map(|m| m.trim().to_ascii_uppercase()).unwrap_or_default();
    if matches!(vendor.as_str(), "HP" | "HPE" | "COMPAQ") {
        return false;
    }
    if matches!(vendor.as_str(), "LSI" | "LSILOGIC" | "AVAGO" | "BROADCOM" | "MEGARAID") {
        return true;
    }
    const MODEL_MARKS: &[&str] =
        &["PERC", "MEGARAID", "SERVERAID", "LOGICAL VOLUME", "RAID", "MR9", "SMC2108", "SMC3108"];
    if MODEL_MARKS.iter().any(|mark| model.contains(mark)) {
        return true;
    }
    vendor == "INTEL" && ["RS2", "RS3", "RMS2", "RMS3"].iter().any(|prefix| model.starts_with(prefix))
}

/// Makes every slot unique: a repeated controller slot gets "#" and the controller's device id,
/// anything still repeated gets "#2", "#3", ... in order. The report refuses duplicate keys, so
/// this must hold whatever the tools printed.
fn make_slots_unique(disks: &mut [Disk], drives: &[ControllerDrive]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for disk in disks.iter() {
        *counts.entry(disk.slot.clone()).or_default() += 1;
    }
    for (disk, drive) in disks.iter_mut().zip(drives) {
        if counts.get(&disk.slot).copied().unwrap_or(0) > 1
            && let Some(id) = &drive.device_id
        {
            disk.slot = format!("{}#{id}", disk.slot);
        }
    }
    let mut used: BTreeSet<String> = BTreeSet::new();
    for disk in disks.iter_mut() {
        if used.insert(disk.slot.clone()) {
            continue;
        }
        let mut n = 2;
        while !used.insert(format!("{}#{n}", disk.slot)) {
            n += 1;
        }
        disk.slot = format!("{}#{n}", disk.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(adapter: u32, enclosure: Option<&str>, slot: &str, serial: &str) -> ControllerDrive {
        ControllerDrive {
            adapter,
            enclosure: enclosure.map(str::to_owned),
            slot: slot.to_owned(),
            serial: Some(serial.to_owned()),
            ..ControllerDrive::default()
        }
    }

    fn scan(adapters: &[u32], drives: Vec<ControllerDrive>) -> ControllerScan {
        ControllerScan { adapters: adapters.iter().copied().collect(), drives }
    }

    fn device(name: &str, vendor: Option<&str>, model: Option<&str>, serial: Option<&str>) -> BlockDevice {
        BlockDevice {
            name: name.to_owned(),
            kind: Some("disk".to_owned()),
            size: Some(1_000_000),
            rotational: Some(true),
            vendor: vendor.map(str::to_owned),
            model: model.map(str::to_owned),
            serial: serial.map(str::to_owned),
            ..BlockDevice::default()
        }
    }

    fn slots(disks: &[Disk]) -> Vec<&str> {
        disks.iter().map(|d| d.slot.as_str()).collect()
    }

    #[test]
    fn controller_drives_plus_kernel_disks_minus_volumes_and_jbod_copies() {
        let megacli = scan(&[0], vec![drive(0, Some("32"), "1", "S0K2B5NV"), drive(0, Some("32"), "0", "S0K2B5AH")]);
        let lsblk = vec![
            device("sda", Some("DELL"), Some("PERC H730 Mini"), Some("0042a5c5f0a0b0c0")),
            device("sdb", Some("SEAGATE"), Some("ST300MM0006"), Some("S0K2B5NV0000K4319XYZ")),
            device("nvme0n1", None, Some("SAMSUNG MZVLB512HAJQ-000L7"), Some("S4DYNX0N123456")),
        ];
        let disks = merge(Some(&megacli), None, Some(&lsblk));
        assert_eq!(slots(&disks), vec!["32:0", "32:1", "nvme0n1"]);
        let nvme = &disks[2];
        assert_eq!((nvme.pd_type.as_deref(), nvme.media.as_deref()), (Some("NVMe"), Some("ssd")));
        assert_eq!(nvme.vendor.as_deref(), Some("Samsung"));
    }

    #[test]
    fn without_a_controller_tool_lsblk_stands_alone() {
        let lsblk = vec![device("sda", Some("DELL"), Some("PERC H730 Mini"), None)];
        let disks = merge(None, None, Some(&lsblk));
        assert_eq!(slots(&disks), vec!["sda"], "the volume is the only view of that storage");
    }

    #[test]
    fn megacli_and_storcli_describe_the_same_drives_once() {
        let mut from_megacli = drive(0, Some("252"), "0", "Z4DS105ZTM3W");
        from_megacli.firmware = Some("6102".into());
        let mut from_storcli = drive(0, Some("252"), "0", "Z4DS105ZTM3W");
        from_storcli.firmware = Some("JZET6102".into());
        from_storcli.capacity_bytes = Some(42);
        let extra = drive(0, Some("252"), "1", "OTHER");
        let disks = merge(Some(&scan(&[0], vec![from_megacli])), Some(&scan(&[0], vec![from_storcli, extra])), None);
        assert_eq!(slots(&disks), vec!["252:0", "252:1"]);
        assert_eq!(disks[0].firmware.as_deref(), Some("6102"), "MegaCli's value wins");
        assert_eq!(disks[0].capacity_bytes, Some(42), "storcli fills the gap");
    }

    #[test]
    fn several_adapters_prefix_every_slot_and_missing_enclosures_are_empty() {
        let megacli = scan(
            &[0, 1],
            vec![
                drive(1, None, "3", "A1234567"),
                drive(1, Some("8"), "10", "B1234567"),
                drive(1, Some("8"), "2", "C1234567"),
            ],
        );
        let disks = merge(Some(&megacli), None, None);
        assert_eq!(slots(&disks), vec!["a1/:3", "a1/8:2", "a1/8:10"]);
    }

    #[test]
    fn repeated_slots_are_made_unique() {
        let mut a = drive(0, Some("32"), "0", "AAAA1111");
        a.device_id = Some("7".into());
        let mut b = drive(0, Some("32"), "0", "BBBB2222");
        b.device_id = Some("9".into());
        let c = drive(0, Some("33"), "0", "CCCC3333");
        let d = drive(0, Some("33"), "0", "DDDD4444");
        let disks = merge(Some(&scan(&[0], vec![a, b, c, d])), None, None);
        let mut got = slots(&disks);
        got.sort_unstable();
        assert_eq!(got, vec!["32:0#7", "32:0#9", "33:0", "33:0#2"]);
    }

    #[test]
    fn serial_prefixes_match_only_when_long_enough() {
        assert!(serials_match(Some("S0K2B5NV"), Some("S0K2B5NV0000K4319XYZ")));
        assert!(serials_match(Some("z1y3zk3n"), Some("Z1Y3ZK3N")));
        assert!(!serials_match(Some("ABC"), Some("ABCDEFGHIJ")));
        assert!(!serials_match(None, Some("X")));
    }

    #[test]
    fn controller_volumes() {
        for (vendor, model) in [
            ("LSI", "MR9260-8i"),
            ("AVAGO", "SMC3108"),
            ("DELL", "PERC H730 Mini"),
            ("IBM", "ServeRAID M5210"),
            ("Lenovo", "RAID 930-8i-2GB"),
            ("FTS", "PRAID EP420i"),
            ("LSI", "Logical Volume"),
            ("BROADCOM", "MR9560-16i"),
            ("Intel", "RS3DC080"),
        ] {
            assert!(is_controller_volume(Some(vendor), Some(model)), "{vendor} {model}");
        }
        for (vendor, model) in [
            ("ATA", "ST3000NM0033-9ZM1"),
            ("SEAGATE", "ST300MM0006"),
            ("HP", "LOGICAL VOLUME"),
            ("VMware", "Virtual disk"),
        ] {
            assert!(!is_controller_volume(Some(vendor), Some(model)), "{vendor} {model}");
        }
    }
}
