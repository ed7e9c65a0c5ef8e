//! `lsblk -J` output, in every shape util-linux has printed it.
//!
//! The grammar: `{"blockdevices": [ {column: value, ..., "children": [ ... ]} ]}`, one object per
//! device, lowercase column names. What varies:
//!
//! - util-linux before 2.33 prints every value as a string (`"rota": "0"`,
//!   `"size": "1000204886016"`); newer versions print booleans, numbers and `null`.
//! - Without `-b` sizes are rounded human figures (`"256G"`); those are not exact and are
//!   dropped rather than guessed.
//! - Without `-d` devices nest under their parents in `children` (partitions, LVM, md, crypt);
//!   the tree is flattened and every level is read.
//! - `-p` prints paths (`/dev/sda`) as names; the kernel name is the last component.
//! - SCSI-style strings are space padded (`"vendor": "ATA     "`); `vendor` may be a PCI id
//!   (`0x1af4`) and any column may be `null` or absent (older versions lack `TRAN`, `HCTL`,
//!   `WWN`, the probe then retries with fewer columns).
//! - An empty output (nothing at all) is a machine without block devices.

use std::collections::BTreeSet;

use serde_json::Value;

use super::drive::clean;

/// One device from lsblk, values trimmed and typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name ("sda", "nvme0n1").
    pub name: String,
    /// lsblk TYPE ("disk", "part", "loop", "rom", "lvm", "raid1", ...), when printed.
    pub kind: Option<String>,
    /// Size in bytes, when lsblk printed an exact byte count.
    pub size: Option<u64>,
    /// ROTA: true for spinning media.
    pub rotational: Option<bool>,
    /// MODEL, trimmed.
    pub model: Option<String>,
    /// SERIAL, trimmed.
    pub serial: Option<String>,
    /// TRAN: transport ("sata", "sas", "nvme", "usb", ...).
    pub transport: Option<String>,
    /// VENDOR, trimmed ("ATA", "SEAGATE", "0x1af4", ...).
    pub vendor: Option<String>,
    /// HCTL ("0:2:0:0").
    pub hctl: Option<String>,
    /// WWN ("0x5000c500a1b2c3d4").
    pub wwn: Option<String>,
    /// REV: firmware revision, when the output has that column.
    pub revision: Option<String>,
}

/// Why lsblk output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LsblkError {
    /// Not JSON (lsblk without `-J`, or cut short).
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON without a `blockdevices` list.
    #[error("the JSON has no \"blockdevices\" list")]
    NoBlockdevices,
}

/// Parses `lsblk -J` output into a flat list of devices (parents before their children).
pub fn parse_lsblk(text: &str) -> Result<Vec<BlockDevice>, LsblkError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let document: Value = serde_json::from_str(text).map_err(|e| LsblkError::Json(e.to_string()))?;
    let list = document.get("blockdevices").and_then(Value::as_array).ok_or(LsblkError::NoBlockdevices)?;
    let mut devices = Vec::new();
    let mut seen = BTreeSet::new();
    // An explicit stack instead of recursion: serde_json already bounds the nesting depth, but a
    // loop keeps this function's own stack use flat.
    let mut pending: Vec<&Value> = list.iter().rev().collect();
    while let Some(entry) = pending.pop() {
        // A device with several parents (a disk under two md arrays' members) is listed once.
        if let Some(device) = read_device(entry)
            && seen.insert(device.name.clone())
        {
            devices.push(device);
        }
        if let Some(children) = entry.get("children").and_then(Value::as_array) {
            pending.extend(children.iter().rev());
        }
    }
    Ok(devices)
}

fn read_device(entry: &Value) -> Option<BlockDevice> {
    let text = |name: &str| entry.get(name).and_then(json_text);
    let raw_name = text("name").or_else(|| text("kname"))?;
    let name = raw_name.rsplit('/').next().and_then(clean)?;
    Some(BlockDevice {
        name,
        kind: text("type").map(|t| t.to_ascii_lowercase()),
        size: entry.get("size").and_then(json_bytes),
        rotational: entry.get("rota").and_then(json_bool),
        model: text("model"),
        serial: text("serial"),
        transport: text("tran").map(|t| t.to_ascii_lowercase()),
        vendor: text("vendor"),
        hctl: text("hctl"),
        wwn: text("wwn"),
        revision: text("rev"),
    })
}

fn json_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => clean(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An exact byte count: a number, or a string of digits (old lsblk with `-b`).
fn json_bytes(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `true`/`false`, `"1"`/`"0"`, `1`/`0`.
fn json_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.trim() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Kernel name prefixes of block devices that lsblk may call "disk" but that are no physical
/// drive: compressed RAM (zram), RAM disks, loop files, md/dm stacks, optical and floppy drives,
/// network block devices (nbd, rbd, drbd) and ZFS volumes.
const NOT_PHYSICAL: &[&str] = &["zram", "ram", "loop", "md", "dm-", "sr", "fd", "nbd", "rbd", "drbd", "zd"];

/// Whether a device from lsblk is a physical (or, in a VM, virtual-hardware) disk: TYPE disk,
/// not one of the software devices above, not an eMMC boot or RPMB area of a disk already
/// listed, and with a medium (card readers and empty virtual drives report size 0).
pub fn is_physical_disk(device: &BlockDevice) -> bool {
    if device.kind.as_deref().is_some_and(|kind| kind != "disk") {
        return false;
    }
    let name = device.name.as_str();
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()) || prefix.ends_with('-'))
    };
    if NOT_PHYSICAL.iter().any(|prefix| numbered(prefix)) {
        return false;
    }
    if name.starts_with("mmcblk") && (name.contains("boot") || name.ends_with("rpmb")) {
        return false;
    }
    device.size != Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_json_from_util_linux_2_38() {
        let text = r#"{"blockdevices": [
            {"name": "zram0", "size": 0, "rota": false, "type": "disk", "model": null, "serial": null, "tran": null, "vendor": null, "hctl": null, "wwn": null},
            {"name": "vda", "size": 274877906944, "rota": true, "type": "disk", "model": null, "serial": null, "tran": null, "vendor": "0x1af4", "hctl": null, "wwn": null}]}"#;
        let devices = parse_lsblk(text).expect("parses");
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].size, Some(274_877_906_944));
        assert_eq!(devices[1].rotational, Some(true));
        assert_eq!(devices[1].vendor.as_deref(), Some("0x1af4"));
        assert!(!is_physical_disk(&devices[0]), "zram is not a disk");
        assert!(is_physical_disk(&devices[1]));
    }

    #[test]
    fn string_typed_json_from_old_util_linux() {
        let text = r#"{"blockdevices": [
            {"name": "sda", "size": "1000204886016", "rota": "0", "type": "disk", "model": "Samsung SSD 860 ", "serial": "S3Z9NB0K123456A", "tran": "sata", "vendor": "ATA     ", "hctl": "0:0:0:0", "wwn": "0x5002538e40a1b2c3"}]}"#;
        let devices = parse_lsblk(text).expect("parses");
        let sda = &devices[0];
        assert_eq!((sda.size, sda.rotational), (Some(1_000_204_886_016), Some(false)));
        assert_eq!(sda.model.as_deref(), Some("Samsung SSD 860"), "padding is trimmed");
        assert_eq!(sda.vendor.as_deref(), Some("ATA"));
        assert_eq!(sda.transport.as_deref(), Some("sata"));
    }

    #[test]
    fn trees_are_flattened_and_human_sizes_dropped() {
        let text = r#"{"blockdevices": [
            {"name": "/dev/sda", "maj:min": "8:0", "rm": false, "size": "256G", "ro": false, "type": "disk", "mountpoints": [null],
             "children": [{"name": "/dev/sda1", "size": "255G", "type": "part", "children": [{"name": "/dev/mapper/vg-root", "type": "lvm"}]}]},
            {"name": "loop0", "type": "loop", "size": 1024},
            {"name": "md0", "type": "raid1", "size": 1024},
            {"name": "sr0", "type": "rom", "size": 1024},
            {"name": "nbd0", "type": "disk", "size": 1024},
            {"name": "mmcblk0boot0", "type": "disk", "size": 4194304}]}"#;
        let devices = parse_lsblk(text).expect("parses");
        let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["sda", "sda1", "vg-root", "loop0", "md0", "sr0", "nbd0", "mmcblk0boot0"]);
        assert_eq!(devices[0].size, None, "256G is not an exact size");
        let disks: Vec<&str> = devices.iter().filter(|d| is_physical_disk(d)).map(|d| d.name.as_str()).collect();
        assert_eq!(disks, vec!["sda"]);
    }

    #[test]
    fn empty_output_is_no_devices_and_garbage_is_an_error() {
        assert_eq!(parse_lsblk(""), Ok(Vec::new()));
        assert_eq!(parse_lsblk("{\"blockdevices\": []}"), Ok(Vec::new()));
        assert!(matches!(parse_lsblk("NAME MAJ:MIN RM SIZE\nsda 8:0 0 1G"), Err(LsblkError::Json(_))));
        assert_eq!(parse_lsblk("{\"devices\": []}"), Err(LsblkError::NoBlockdevices));
        assert_eq!(parse_lsblk("[1, 2]"), Err(LsblkError::NoBlockdevices));
    }

    #[test]
    fn real_disk_names_are_kept() {
        for name in ["sda", "nvme0n1", "vda", "xvda", "mmcblk0", "sdaa", "hda", "rssda", "mdisk"] {
            let device =
                BlockDevice { name: name.into(), kind: Some("disk".into()), size: Some(1), ..BlockDevice::default() };
            assert!(is_physical_disk(&device), "{name}");
        }
        for name in ["ram0", "zram1", "loop7", "dm-0", "md127", "nbd3", "rbd0", "drbd1", "zd16", "sr0"] {
            let device =
                BlockDevice { name: name.into(), kind: Some("disk".into()), size: Some(1), ..BlockDevice::default() };
            assert!(!is_physical_disk(&device), "{name}");
        }
    }
}
