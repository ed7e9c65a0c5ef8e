//! Splitting MegaCli's "Inquiry Data" line into vendor, model, serial and firmware.
//!
//! MegaCli prints the drive's identification strings back to back, in the layout of the command
//! that produced them:
//!
//! - SAS (and SCSI) drives: the standard INQUIRY data from byte 8 on: vendor id (8 characters,
//!   space padded), product id (16), product revision (4), then the vendor-specific bytes that
//!   hold the serial number: `SEAGATE ST300MM0006     LS08S0K2B5NV            `.
//! - SATA drives behind the controller: the ATA IDENTIFY strings: serial number (20 characters,
//!   padded on either side), model (40, left aligned), firmware revision (8):
//!   `            Z1Y3ZK3NST3000NM0033-9ZM178                     LV5B`. A right-aligned serial
//!   runs straight into the model.
//! - SATA drives behind a SAS-to-ATA translation layer show up in the SCSI layout with vendor
//!   `ATA`.
//!
//! The fixed widths are tried first and accepted only when the revision they yield agrees with
//! MegaCli's separate "Device Firmware Level". When whitespace was collapsed on the way (copied
//! logs, `column`, some agents), the fields are found by their content instead: the firmware level
//! marks the end of the model (SAS: revision glued to the serial; SATA: the last word), and a
//! glued serial and model are split where a known model prefix begins.

use super::drive::{clean, clean_serial, glued_model_start, vendor_from_model, vendor_name};

/// Identification strings taken from one Inquiry Data line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inquiry {
    /// Display vendor name, from the SCSI vendor id or the model's prefix.
    pub vendor: Option<String>,
    /// Product id (SAS) or ATA model number (SATA).
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware revision as the inquiry data carries it (8 characters for ATA drives).
    pub firmware: Option<String>,
}

const SCSI_VENDOR_LEN: usize = 8;
const SCSI_PRODUCT_END: usize = 24;
const SCSI_REVISION_END: usize = 28;
const ATA_SERIAL_LEN: usize = 20;
const ATA_MODEL_END: usize = 60;

/// Splits the text after "Inquiry Data:" (`raw`, exactly as printed, leading padding included).
/// `pd_type` is MegaCli's "PD Type" and `firmware_level` its "Device Firmware Level".
pub fn split_inquiry(raw: &str, pd_type: Option<&str>, firmware_level: Option<&str>) -> Inquiry {
    let raw = raw.trim_end_matches(|c: char| c.is_whitespace() || c == '\0');
    if raw.trim().is_empty() {
        return Inquiry::default();
    }
    let level = firmware_level.map(str::trim).filter(|l| !l.is_empty() && !l.eq_ignore_ascii_case("N/A"));
    let pd_type = pd_type.map(str::trim).filter(|t| !t.is_empty());
    let translated = raw.starts_with("ATA ");
    let parsed = match pd_type {
        _ if translated => scsi_fixed(raw, level).or_else(|| scsi_collapsed(raw, level)),
        Some(t) if t.eq_ignore_ascii_case("SATA") => ata_fixed(raw, level).or_else(|| ata_collapsed(raw, level)),
        Some(_) => scsi_fixed(raw, level).or_else(|| scsi_collapsed(raw, level)),
        // No PD Type line: whichever fixed layout the firmware level confirms.
        None => scsi_fixed(raw, level).or_else(|| ata_fixed(raw, level)).or_else(|| scsi_collapsed(raw, level)),
    };
    parsed.unwrap_or_default()
}

/// Characters `start..end` of `chars` as a string (clamped to the length).
fn field(chars: &[char], start: usize, end: usize) -> String {
    let end = end.min(chars.len());
    if start >= end { String::new() } else { chars[start..end].iter().collect() }
}

fn same_revision(found: &str, level: &str) -> bool {
    found.trim().eq_ignore_ascii_case(level)
}

/// ATA drives: firmware levels are the IDENTIFY revision or its last four characters.
fn revision_ends_with(found: &str, level: &str) -> bool {
    let found = found.trim().to_ascii_uppercase();
    !found.is_empty() && found.ends_with(&level.to_ascii_uppercase())
}

fn scsi_fixed(raw: &str, level: Option<&str>) -> Option<Inquiry> {
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() < SCSI_REVISION_END {
        return None;
    }
    let vendor = field(&chars, 0, SCSI_VENDOR_LEN);
    let product = field(&chars, SCSI_VENDOR_LEN, SCSI_PRODUCT_END);
    let revision = field(&chars, SCSI_PRODUCT_END, SCSI_REVISION_END);
    let rest = field(&chars, SCSI_REVISION_END, chars.len());
    match level {
        Some(level) if !same_revision(&revision, level) => return None,
        // Without a firmware level the widths cannot be confirmed; accept them only when the
        // line still carries padding (a run of spaces) and the fields start with text. A fully
        // packed line reads the same either way.
        None if vendor.trim().is_empty() || product.starts_with(' ') || !raw.contains("  ") => return None,
        _ => {}
    }
    let vendor_id = clean(&vendor);
    let model = clean(&product);
    let serial = rest.split_whitespace().next().and_then(clean_serial);
    Some(Inquiry {
        vendor: scsi_vendor(vendor_id.as_deref(), model.as_deref()),
        model,
        serial,
        firmware: clean(&revision),
    })
}

/// The vendor of a SCSI-layout drive: its vendor id, or for "ATA" (translated SATA) the maker
/// named by the model.
fn scsi_vendor(vendor_id: Option<&str>, model: Option<&str>) -> Option<String> {
    vendor_id.and_then(vendor_name).or_else(|| model.and_then(vendor_from_model))
}

/// Eight-character SCSI vendor ids that fill their field, so that a collapsed line glues them to
/// the product id (`IBM-ESXSST9146803SS`).
const FULL_WIDTH_VENDORS: &[&str] = &["IBM-ESXS", "LENOVO-X", "HITACHI ", "FUJITSU ", "WESTERND"];

fn scsi_collapsed(raw: &str, level: Option<&str>) -> Option<Inquiry> {
    let mut tokens: Vec<String> = raw.split_whitespace().map(str::to_owned).collect();
    if tokens.is_empty() {
        return None;
    }
    // A full-width vendor id runs into the product id once padding is gone.
    if let Some(first) = tokens.first().cloned()
        && first.len() > SCSI_VENDOR_LEN
        && first.is_char_boundary(SCSI_VENDOR_LEN)
        && FULL_WIDTH_VENDORS.iter().any(|v| v.trim_end() == &first[..SCSI_VENDOR_LEN])
    {
        tokens.splice(0..1, [first[..SCSI_VENDOR_LEN].to_owned(), first[SCSI_VENDOR_LEN..].to_owned()]);
    }
    let vendor_id = if tokens.len() >= 2 { Some(tokens.remove(0)) } else { None };
    let rest = tokens.join(" ");
    let (model, firmware, serial) = match level.and_then(|level| find_revision(&rest, level)) {
        Some(at) => {
            let level_len = level.map_or(0, str::len);
            let after = &rest[at + level_len..];
            (clean(&rest[..at]), level.map(str::to_owned), after.split_whitespace().next().and_then(clean_serial))
        }
        None => {
            // No firmware level to anchor on: product is the first word, and the next word is the
            // four-character revision glued to the serial.
            let mut words = rest.split_whitespace();
            let model = words.next().and_then(clean);
            match words.next() {
                Some(word) if word.len() > 4 && word.is_char_boundary(4) => {
                    (model, clean(&word[..4]), clean_serial(&word[4..]))
                }
                Some(word) => (model, clean(word), words.next().and_then(clean_serial)),
                None => (model, None, None),
            }
        }
    };
    Some(Inquiry { vendor: scsi_vendor(vendor_id.as_deref(), model.as_deref()), model, serial, firmware })
}

/// Where the product revision `level` sits in a collapsed "product revision+serial" text: the
/// last occurrence that starts a word, else the last occurrence glued to a 16-character product.
fn find_revision(rest: &str, level: &str) -> Option<usize> {
    let positions: Vec<usize> = rest.match_indices(level).map(|(at, _)| at).filter(|&at| at > 0).collect();
    positions
        .iter()
        .rev()
        .copied()
        .find(|&at| rest[..at].ends_with(' '))
        .or_else(|| positions.iter().rev().copied().find(|&at| !rest[..at].contains(' ')))
}

fn ata_fixed(raw: &str, level: Option<&str>) -> Option<Inquiry> {
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() <= ATA_SERIAL_LEN {
        return None;
    }
    let serial = field(&chars, 0, ATA_SERIAL_LEN);
    let model = field(&chars, ATA_SERIAL_LEN, ATA_MODEL_END);
    let revision = field(&chars, ATA_MODEL_END, chars.len());
    // The model is left aligned in its field, so it never starts with padding.
    if model.starts_with(' ') || model.trim().is_empty() || serial.trim().is_empty() {
        return None;
    }
    match level {
        Some(level) if !revision_ends_with(&revision, level) => return None,
        None if revision.trim().is_empty() => return None,
        _ => {}
    }
    let model = clean(&model);
    Some(Inquiry {
        vendor: model.as_deref().and_then(vendor_from_model),
        model,
        serial: clean_serial(&serial),
        firmware: clean(&revision),
    })
}

fn ata_collapsed(raw: &str, level: Option<&str>) -> Option<Inquiry> {
    let mut tokens: Vec<&str> = raw.split_whitespace().collect();
    let firmware = match (level, tokens.last()) {
        (Some(level), Some(last)) if tokens.len() >= 2 && revision_ends_with(last, level) => {
            let last = (*last).to_owned();
            tokens.pop();
            Some(last)
        }
        _ => None,
    };
    let (first, rest) = tokens.split_first()?;
    let (serial, model) = match split_glued(first) {
        Some((serial, model_start)) => {
            let mut model = model_start.to_owned();
            for word in rest {
                model.push(' ');
                model.push_str(word);
            }
            (clean_serial(serial), clean(&model))
        }
        None if rest.is_empty() => (None, clean(first)),
        None => (clean_serial(first), clean(&rest.join(" "))),
    };
    Some(Inquiry { vendor: model.as_deref().and_then(vendor_from_model), model, serial, firmware })
}

/// Splits `Z1Y3ZK3NST3000NM0033-9ZM178` into serial and model at the first position (after at
/// least four serial characters, at most the 20 of the serial field) where a known model prefix
/// begins and at least six model characters follow.
fn split_glued(token: &str) -> Option<(&str, &str)> {
    token
        .char_indices()
        .map(|(at, _)| at)
        .filter(|&at| (4..=ATA_SERIAL_LEN).contains(&at) && token.len() - at >= 6)
        .find(|&at| glued_model_start(&token[at..]))
        .map(|at| (&token[..at], &token[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inq(vendor: &str, model: &str, serial: &str, firmware: &str) -> Inquiry {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Inquiry { vendor: opt(vendor), model: opt(model), serial: opt(serial), firmware: opt(firmware) }
    }

    #[test]
    fn sas_fixed_width() {
        assert_eq!(
            split_inquiry("SEAGATE ST300MM0006     LS08S0K2B5NV            ", Some("SAS"), Some("LS08")),
            inq("Seagate", "ST300MM0006", "S0K2B5NV", "LS08")
        );
        assert_eq!(
            split_inquiry("TOSHIBA AL13SEB600      DE1154O0A05KFRD4        ", Some("SAS"), Some("DE11")),
            inq("Toshiba", "AL13SEB600", "54O0A05KFRD4", "DE11")
        );
        assert_eq!(
            split_inquiry("HGST    HUC101212CSS600 U5E0KZGLE2EE            ", Some("SAS"), Some("U5E0")),
            inq("HGST", "HUC101212CSS600", "KZGLE2EE", "U5E0")
        );
    }

    #[test]
    fn sas_product_filling_its_field_runs_into_the_revision() {
        assert_eq!(
            split_inquiry("IBM-ESXSST9146803SS     BA2DB3A0XYZ1", Some("SAS"), Some("BA2D")),
            inq("IBM", "ST9146803SS", "B3A0XYZ1", "BA2D")
        );
        assert_eq!(
            split_inquiry("HP      EG0300FBDBR     HPD43SJ0ZZKE", Some("SAS"), Some("HPD4")),
            inq("HP", "EG0300FBDBR", "3SJ0ZZKE", "HPD4")
        );
    }

    #[test]
    fn sas_collapsed_whitespace() {
        assert_eq!(
            split_inquiry("SEAGATE ST300MM0006 LS08S0K2B5NV", Some("SAS"), Some("LS08")),
            inq("Seagate", "ST300MM0006", "S0K2B5NV", "LS08")
        );
        assert_eq!(
            split_inquiry("IBM-ESXSST9146803SS BA2DB3A0XYZ1", Some("SAS"), Some("BA2D")),
            inq("IBM", "ST9146803SS", "B3A0XYZ1", "BA2D")
        );
        // A 16-character product glued to its revision.
        assert_eq!(
            split_inquiry("TOSHIBA MBF2300RC_ABCDEF5704ZZZ1", Some("SAS"), Some("5704")),
            inq("Toshiba", "MBF2300RC_ABCDEF", "ZZZ1", "5704")
        );
        // No firmware level printed: the revision is the first four characters of the third word.
        assert_eq!(
            split_inquiry("SEAGATE ST300MM0006 LS08S0K2B5NV", Some("SAS"), None),
            inq("Seagate", "ST300MM0006", "S0K2B5NV", "LS08")
        );
    }

    #[test]
    fn sata_fixed_width() {
        assert_eq!(
            split_inquiry(
                "            Z1Y3ZK3NST3000NM0033-9ZM178                     LV5B",
                Some("SATA"),
                Some("LV5B")
            ),
            inq("Seagate", "ST3000NM0033-9ZM178", "Z1Y3ZK3N", "LV5B")
        );
        assert_eq!(
            split_inquiry(
                "S1SZNSAFA01085L     Samsung SSD 850 PRO 512GB               EXM01B6Q",
                Some("SATA"),
                Some("1B6Q")
            ),
            inq("Samsung", "Samsung SSD 850 PRO 512GB", "S1SZNSAFA01085L", "EXM01B6Q")
        );
        assert_eq!(
            split_inquiry(
                "CVCV31700005240FGN  INTEL SSDSC2CW240A3                     400i    ",
                Some("SATA"),
                Some("400i")
            ),
            inq("Intel", "INTEL SSDSC2CW240A3", "CVCV31700005240FGN", "400i")
        );
        assert_eq!(
            split_inquiry(
                "BTYG95130FL3480BGN  SSDSC2KG480G8R                          XCV1DL65",
                Some("SATA"),
                Some("DL65")
            ),
            inq("Intel", "SSDSC2KG480G8R", "BTYG95130FL3480BGN", "XCV1DL65")
        );
    }

    #[test]
    fn sata_collapsed_whitespace() {
        assert_eq!(
            split_inquiry("Z1Y3ZK3NST3000NM0033-9ZM178 LV5B", Some("SATA"), Some("LV5B")),
            inq("Seagate", "ST3000NM0033-9ZM178", "Z1Y3ZK3N", "LV5B")
        );
        assert_eq!(
            split_inquiry("S1SZNSAFA01085L Samsung SSD 850 PRO 512GB EXM01B6Q", Some("SATA"), Some("1B6Q")),
            inq("Samsung", "Samsung SSD 850 PRO 512GB", "S1SZNSAFA01085L", "EXM01B6Q")
        );
        assert_eq!(
            split_inquiry("PHWL539200YR480QGN INTEL SSDSC2BB480G4L D201LD12", Some("SATA"), Some("LD12")),
            inq("Intel", "INTEL SSDSC2BB480G4L", "PHWL539200YR480QGN", "D201LD12")
        );
        // A leading space only (MegaCli's own separator kept) still means collapsed.
        assert_eq!(
            split_inquiry(" Z1Y3ZK3NST3000NM0033-9ZM178 LV5B", Some("SATA"), Some("LV5B")),
            inq("Seagate", "ST3000NM0033-9ZM178", "Z1Y3ZK3N", "LV5B")
        );
    }

    #[test]
    fn without_a_pd_type_the_firmware_level_picks_the_layout() {
        assert_eq!(
            split_inquiry("            Z1Y3ZK3NST3000NM0033-9ZM178                     LV5B", None, Some("LV5B")),
            inq("Seagate", "ST3000NM0033-9ZM178", "Z1Y3ZK3N", "LV5B")
        );
        assert_eq!(
            split_inquiry("SEAGATE ST300MM0006     LS08S0K2B5NV            ", None, Some("LS08")),
            inq("Seagate", "ST300MM0006", "S0K2B5NV", "LS08")
        );
    }

    #[test]
    fn translated_sata_uses_the_scsi_layout() {
        assert_eq!(
            split_inquiry("ATA     ST91000640NS    SN03W0V0KC6J", Some("SATA"), Some("SN03")),
            inq("Seagate", "ST91000640NS", "W0V0KC6J", "SN03")
        );
    }

    #[test]
    fn empty_and_odd_lines_give_nothing_rather_than_garbage() {
        assert_eq!(split_inquiry("   ", Some("SAS"), Some("LS08")), Inquiry::default());
        assert_eq!(split_inquiry("", None, None), Inquiry::default());
        let one_word = split_inquiry("ABCDEFG", Some("SATA"), Some("LV5B"));
        assert_eq!(one_word.serial, None);
    }
}
