//! What the disk parsers produce, and the small normalisations they share (vendor names,
//! serial numbers, WWNs, "N TB [0x... Sectors]" sizes).

use std::collections::BTreeSet;

use cmdb_model::identity::normalize_serial;

/// One physical drive as a RAID controller tool (MegaCli or storcli) lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerDrive {
    /// The adapter (controller) number: MegaCli's "Adapter #N", storcli's "/cN".
    pub adapter: u32,
    /// The enclosure id ("Enclosure Device ID", storcli's EID); `None` when the tool prints "N/A"
    /// or nothing, i.e. the drive is cabled to the controller without an enclosure.
    pub enclosure: Option<String>,
    /// The slot number inside the enclosure (or on the controller).
    pub slot: String,
    /// The controller's device id ("Device Id", storcli's DID); disambiguates duplicate slots.
    pub device_id: Option<String>,
    /// Raw capacity in bytes, from the exact sector count.
    pub capacity_bytes: Option<u64>,
    /// Interface: "SAS", "SATA", "NVMe", ...
    pub pd_type: Option<String>,
    /// "hdd" or "ssd".
    pub media: Option<String>,
    /// Display vendor name ("Seagate", "Intel", ...), `None` when unknown.
    pub vendor: Option<String>,
    /// Model as the drive reports it.
    pub model: Option<String>,
    /// Serial number (placeholders removed).
    pub serial: Option<String>,
    /// Firmware revision.
    pub firmware: Option<String>,
    /// World wide name, lowercase hex without "0x" (used to recognise the drive in lsblk).
    pub wwn: Option<String>,
    /// The controller's state for the drive ("Online, Spun Up", "JBOD", "Onln", ...).
    pub state: Option<String>,
}

/// The drives one controller tool listed, and which adapters it saw (an adapter with no drives
/// still counts: it decides whether slots need an "aN/" prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerScan {
    /// Adapter numbers the output mentions.
    pub adapters: BTreeSet<u32>,
    /// Every drive found, in output order.
    pub drives: Vec<ControllerDrive>,
}

/// Binary unit multipliers MegaCli and storcli use in "279.396 GB" (the figures are TiB/GiB
/// computed from the sector count, whatever the label says).
fn unit_multiplier(unit: &str) -> Option<f64> {
    match unit.to_ascii_uppercase().as_str() {
        "B" => Some(1.0),
        "KB" | "KIB" => Some(1024.0),
        "MB" | "MIB" => Some(1024.0 * 1024.0),
        "GB" | "GIB" => Some(1024.0 * 1024.0 * 1024.0),
        "TB" | "TIB" => Some(1024.0 * 1024.0 * 1024.0 * 1024.0),
        "PB" | "PIB" => Some(1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        _ => None,
    }
}

/// Parses a size such as `2.728 TB [0x15d50a3b0 Sectors]` into bytes: the bracketed sector
/// count times 512, never the rounded figure. `sector_size` is the drive's reported sector size
/// (MegaCli "Sector Size", storcli "Logical Sector Size"): when the count times 512 disagrees
/// with the rounded figure but the count times `sector_size` agrees, the count is in those
/// larger sectors (4Kn drives) and that product is returned instead.
pub fn parse_sector_size(text: &str, sector_size: Option<u64>) -> Option<u64> {
    let open = text.find('[')?;
    let inner = &text[open + 1..];
    let inner = &inner[..inner.find(']').unwrap_or(inner.len())];
    let count_text = inner.split_whitespace().next()?;
    let sectors = match count_text.strip_prefix("0x").or_else(|| count_text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => count_text.parse::<u64>().ok()?,
    };
    let bytes_512 = sectors.checked_mul(512)?;
    // The rounded figure only picks the sector unit; it is never the answer.
    let rounded = rounded_bytes(&text[..open]);
    if let (Some(rounded), Some(size)) = (rounded, sector_size)
        && size > 512
        && !close_enough(bytes_512 as f64, rounded)
        && let Some(bytes_large) = sectors.checked_mul(size)
        && close_enough(bytes_large as f64, rounded)
    {
        return Some(bytes_large);
    }
    Some(bytes_512)
}

/// "279.396 GB" -> bytes (approximate, for cross-checks only).
fn rounded_bytes(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let number: f64 = words.next()?.parse().ok()?;
    let unit = unit_multiplier(words.next()?)?;
    let bytes = number * unit;
    bytes.is_finite().then_some(bytes)
}

/// Within 1 % (the rounded figures carry three decimals).
fn close_enough(exact: f64, rounded: f64) -> bool {
    rounded > 0.0 && ((exact - rounded).abs() / rounded) < 0.01
}

/// Parses a sector size such as "512", "512B", "4 KB" or "4096" into bytes.
pub fn parse_block_size(text: &str) -> Option<u64> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let digits_end = compact.find(|c: char| !c.is_ascii_digit()).unwrap_or(compact.len());
    let number: u64 = compact[..digits_end].parse().ok()?;
    match compact[digits_end..].to_ascii_uppercase().as_str() {
        "" | "B" => Some(number),
        "K" | "KB" | "KIB" => number.checked_mul(1024),
        _ => None,
    }
}

/// A trimmed, non-empty string, or `None`.
pub fn clean(text: &str) -> Option<String> {
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// A trimmed serial number, `None` for placeholders ("N/A", all zeros, ...).
pub fn clean_serial(text: &str) -> Option<String> {
    normalize_serial(text.trim_matches('\0'))
}

/// A WWN as lowercase hex digits without "0x" (MegaCli prints `5000C5007272C288`, storcli
/// `500a07510c01a4df`, lsblk `0x5000c5007272c288`); `None` unless it is 8+ hex digits.
pub fn normalize_wwn(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let trimmed = trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")).unwrap_or(trimmed);
    let trimmed = trimmed.strip_prefix("naa.").unwrap_or(trimmed);
    let hex = trimmed.to_ascii_lowercase();
    if hex.len() >= 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !hex.bytes().all(|b| b == b'0') {
        Some(hex)
    } else {
        None
    }
}

/// Vendor ids as drives and tools print them (SCSI INQUIRY vendor field, lsblk VENDOR), mapped to
/// one display name so that the same maker reads the same whichever tool answered.
const VENDOR_IDS: &[(&str, &str)] = &[
    ("SEAGATE", "Seagate"),
    ("HGST", "HGST"),
    ("HITACHI", "Hitachi"),
    ("TOSHIBA", "Toshiba"),
    ("WDC", "Western Digital"),
    ("WD", "Western Digital"),
    ("WESTERN DIGITAL", "Western Digital"),
    ("INTEL", "Intel"),
    ("SAMSUNG", "Samsung"),
    ("MICRON", "Micron"),
    ("CRUCIAL", "Crucial"),
    ("KINGSTON", "Kingston"),
    ("SANDISK", "SanDisk"),
    ("FUJITSU", "Fujitsu"),
    ("IBM", "IBM"),
    ("IBM-ESXS", "IBM"),
    ("IBM-SSG", "IBM"),
    ("LENOVO", "Lenovo"),
    ("LENOVO-X", "Lenovo"),
    ("DELL", "Dell"),
    ("HP", "HP"),
    ("HPE", "HPE"),
    ("NETAPP", "NetApp"),
    ("KIOXIA", "KIOXIA"),
    ("SK HYNIX", "SK hynix"),
    ("HYNIX", "SK hynix"),
    ("MAXTOR", "Maxtor"),
    ("SMART", "SMART Modular"),
    ("STEC", "STEC"),
    ("OCZ", "OCZ"),
    ("ADATA", "ADATA"),
    ("LITEON", "LITE-ON"),
    ("PLEXTOR", "Plextor"),
    ("QEMU", "QEMU"),
    ("VMWARE", "VMware"),
    ("VBOX", "VirtualBox"),
    ("MSFT", "Microsoft"),
];

/// PCI vendor ids lsblk prints for virtio and some NVMe disks (`0x1af4`).
const PCI_VENDOR_IDS: &[(&str, &str)] = &[
    ("1af4", "Red Hat"),
    ("8086", "Intel"),
    ("144d", "Samsung"),
    ("15b7", "SanDisk"),
    ("1b96", "Western Digital"),
    ("1c5c", "SK hynix"),
    ("1e0f", "KIOXIA"),
    ("1179", "Toshiba"),
    ("1344", "Micron"),
    ("1987", "Phison"),
    ("2646", "Kingston"),
    ("1cc1", "ADATA"),
    ("126f", "Silicon Motion"),
];

/// Model-string prefixes that name the maker: ATA and NVMe drives carry no vendor field, only a
/// model such as "ST3000NM0033-9ZM178" or "INTEL SSDSC2BB480G4L". Checked in order; the first
/// match wins, so longer prefixes of one family come first.
const MODEL_PREFIXES: &[(&str, &str)] = &[
    ("INTEL ", "Intel"),
    ("SSDSC", "Intel"),
    ("SSDPE", "Intel"),
    ("SAMSUNG ", "Samsung"),
    ("MZ7", "Samsung"),
    ("MZQ", "Samsung"),
    ("MZV", "Samsung"),
    ("MZW", "Samsung"),
    ("MZ1", "Samsung"),
    ("MZP", "Samsung"),
    ("WDC ", "Western Digital"),
    ("WD ", "Western Digital"),
    ("WUH", "Western Digital"),
    ("WUS", "Western Digital"),
    ("HGST ", "HGST"),
    ("HITACHI ", "Hitachi"),
    ("HUS", "HGST"),
    ("HUH", "HGST"),
    ("HUC", "HGST"),
    ("HUA", "HGST"),
    ("HDS", "Hitachi"),
    ("HTS", "Hitachi"),
    ("HTE", "Hitachi"),
    ("TOSHIBA ", "Toshiba"),
    ("KIOXIA ", "KIOXIA"),
    ("MICRON ", "Micron"),
    ("MTFD", "Micron"),
    ("CRUCIAL ", "Crucial"),
    ("KINGSTON ", "Kingston"),
    ("SANDISK ", "SanDisk"),
    ("SK HYNIX ", "SK hynix"),
    ("HFS", "SK hynix"),
    ("MAXTOR ", "Maxtor"),
    ("FUJITSU ", "Fujitsu"),
    ("SEAGATE ", "Seagate"),
    ("QEMU ", "QEMU"),
    ("VBOX ", "VirtualBox"),
    ("ST", "Seagate"),
    ("CT", "Crucial"),
];

/// The display name for a vendor id; unknown ids come back trimmed as printed, and "ATA" (the
/// SCSI-to-ATA translation layer's placeholder) and PCI ids nobody maps are kept out of the way
/// by the caller.
pub fn vendor_name(id: &str) -> Option<String> {
    let trimmed = clean(id)?;
    let upper = trimmed.to_ascii_uppercase();
    if upper == "ATA" || upper == "NVME" || is_placeholder_vendor(&upper) {
        return None;
    }
    if let Some(hex) = upper.strip_prefix("0X") {
        let hex = hex.to_ascii_lowercase();
        return PCI_VENDOR_IDS.iter().find(|(id, _)| *id == hex).map(|(_, name)| (*name).to_owned()).or(Some(trimmed));
    }
    VENDOR_IDS.iter().find(|(id, _)| *id == upper).map(|(_, name)| (*name).to_owned()).or(Some(trimmed))
}

fn is_placeholder_vendor(upper: &str) -> bool {
    matches!(upper, "N/A" | "UNKNOWN" | "NONE" | "-" | "NA")
}

/// The maker named by the start of a model string, if any.
pub fn vendor_from_model(model: &str) -> Option<String> {
    let upper = model.trim().to_ascii_uppercase();
    MODEL_PREFIXES.iter().find(|(prefix, _)| model_starts_with(&upper, prefix)).map(|(_, name)| (*name).to_owned())
}

/// Whether `upper` begins with `prefix`; the two-letter Seagate/Crucial prefixes need a digit
/// after them ("ST3000...", "CT500..."), so words like "STEC" or "CTX" do not match.
fn model_starts_with(upper: &str, prefix: &str) -> bool {
    if !upper.starts_with(prefix) {
        return false;
    }
    if prefix.len() == 2 {
        return upper[2..].starts_with(|c: char| c.is_ascii_digit());
    }
    true
}

/// Model prefixes that may start an ATA model glued to the serial in MegaCli's Inquiry Data
/// (`Z1Y3ZK3NST3000NM0033-9ZM178`): the first word of the model, without its separator.
pub fn glued_model_start(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    const WORDS: &[&str] = &[
        "INTEL", "SAMSUNG", "WDC", "HGST", "HITACHI", "TOSHIBA", "KIOXIA", "MICRON", "CRUCIAL", "KINGSTON", "SANDISK",
        "MAXTOR", "FUJITSU", "SEAGATE", "SSDSC", "MZ7", "MTFD", "HUS", "HUH", "HUA", "HDS", "HTS", "WUH", "WUS",
    ];
    WORDS.iter().any(|w| upper.starts_with(w)) || model_starts_with(&upper, "ST") || model_starts_with(&upper, "CT")
}

/// "hdd" / "ssd" from a controller's media description ("Hard Disk Device", "Solid State
/// Device", "HDD", "SSD").
pub fn media_from_text(text: &str) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper == "HDD" || upper.contains("HARD DISK") {
        Some("hdd".to_owned())
    } else if upper == "SSD" || upper.contains("SOLID STATE") {
        Some("ssd".to_owned())
    } else {
        None
    }
}

/// An interface name in its usual spelling ("SAS", "SATA", "NVMe").
pub fn interface_name(text: &str) -> Option<String> {
    let trimmed = clean(text)?;
    let name = match trimmed.to_ascii_uppercase().as_str() {
        "SAS" => "SAS",
        "SATA" => "SATA",
        "NVME" => "NVMe",
        "ATA" | "PATA" => "ATA",
        "SCSI" | "SPI" => "SCSI",
        "USB" => "USB",
        "FC" => "FC",
        "ISCSI" => "iSCSI",
        "VIRTIO" => "virtio",
        "MMC" => "MMC",
        "-" | "N/A" | "UNKNOWN" => return None,
        _ => return Some(trimmed),
    };
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_counts_are_exact_and_binary() {
        assert_eq!(parse_sector_size("2.728 TB [0x15d50a3b0 Sectors]", None), Some(0x15d50a3b0 * 512));
        assert_eq!(parse_sector_size("279.396 GB [0x22ecb25c Sectors]", Some(0)), Some(300_000_000_000));
        assert_eq!(parse_sector_size("1 GB [2097152 Sectors]", None), Some(1_073_741_824));
        assert_eq!(parse_sector_size("279.396 GB", None), None, "never the rounded figure");
        assert_eq!(parse_sector_size("x [0xZZ Sectors]", None), None);
        assert_eq!(parse_sector_size("[0xffffffffffffffff Sectors]", None), None, "overflow is refused");
    }

    #[test]
    fn four_kn_sector_counts_use_the_sector_size_when_the_figure_says_so() {
        // 0x1d1c0beb0 sectors of 512 B are 3.638 TiB; of 4096 B they are 29.1 TiB.
        assert_eq!(parse_sector_size("3.638 TB [0x1d1c0beb0 Sectors]", Some(4096)), Some(0x1d1c0beb0 * 512));
        // 0x3a3812ab sectors of 4096 B are 3.638 TiB, which the figure confirms.
        assert_eq!(parse_sector_size("3.638 TB [0x3a3812ab Sectors]", Some(4096)), Some(0x3a3812ab * 4096));
    }

    #[test]
    fn block_sizes() {
        assert_eq!(parse_block_size("512B"), Some(512));
        assert_eq!(parse_block_size(" 4 KB"), Some(4096));
        assert_eq!(parse_block_size("0"), Some(0));
        assert_eq!(parse_block_size("abc"), None);
    }

    #[test]
    fn wwns_normalize() {
        assert_eq!(normalize_wwn("5000C5007272C288").as_deref(), Some("5000c5007272c288"));
        assert_eq!(normalize_wwn("0x5000c5007272c288").as_deref(), Some("5000c5007272c288"));
        assert_eq!(normalize_wwn("N/A"), None);
        assert_eq!(normalize_wwn("0x0"), None);
        assert_eq!(normalize_wwn("0000000000000000"), None);
    }

    #[test]
    fn vendors_read_the_same_from_every_source() {
        assert_eq!(vendor_name("SEAGATE ").as_deref(), Some("Seagate"));
        assert_eq!(vendor_name("ATA     "), None);
        assert_eq!(vendor_name("0x1af4").as_deref(), Some("Red Hat"));
        assert_eq!(vendor_name("0xabcd").as_deref(), Some("0xabcd"), "unknown PCI ids are kept");
        assert_eq!(vendor_name("Acme Disks").as_deref(), Some("Acme Disks"));
        assert_eq!(vendor_from_model("ST3000NM0033-9ZM178").as_deref(), Some("Seagate"));
        assert_eq!(vendor_from_model("INTEL SSDSC2BB480G4L").as_deref(), Some("Intel"));
        assert_eq!(vendor_from_model("SSDSC2KG480G8R").as_deref(), Some("Intel"));
        assert_eq!(vendor_from_model("Samsung SSD 850 PRO 512GB").as_deref(), Some("Samsung"));
        assert_eq!(vendor_from_model("WDC WD40EFRX-68N32N0").as_deref(), Some("Western Digital"));
        assert_eq!(vendor_from_model("STEC Z16IZF2E"), None, "ST needs a digit after it");
        assert_eq!(vendor_from_model("VK0120GEFJE"), None);
    }

    #[test]
    fn media_and_interfaces() {
        assert_eq!(media_from_text("Hard Disk Device").as_deref(), Some("hdd"));
        assert_eq!(media_from_text("Solid State Device").as_deref(), Some("ssd"));
        assert_eq!(media_from_text("SSD").as_deref(), Some("ssd"));
        assert_eq!(media_from_text("Tape"), None);
        assert_eq!(interface_name("nvme").as_deref(), Some("NVMe"));
        assert_eq!(interface_name(" SATA ").as_deref(), Some("SATA"));
        assert_eq!(interface_name("-"), None);
    }

    #[test]
    fn serials_drop_placeholders() {
        assert_eq!(clean_serial("  Z1Y3ZK3N ").as_deref(), Some("Z1Y3ZK3N"));
        assert_eq!(clean_serial("N/A"), None);
        assert_eq!(clean_serial("00000000"), None);
    }
}
