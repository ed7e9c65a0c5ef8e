//! `MegaCli -PDList -aALL` output.
//!
//! The grammar: an optional first line of `\r` and spaces, then per adapter an `Adapter #N`
//! header followed by one block of `Key: Value` lines per physical drive, the block starting at
//! `Enclosure Device ID:`. Blank lines separate drives but also occur inside a block (before
//! `Raw Size` in newer versions), so they never end a block; the next `Enclosure Device ID` (or a
//! second `Slot Number`) does. The output ends with `Exit Code: 0x00`, possibly without a newline.
//! An adapter may have no drives at all. Keys are matched without regard to case and surrounding
//! spaces (`Drive Temperature :29C`), and unknown keys are ignored, so spelling variants such as
//! `Drive's postion` / `Drive's position` do not matter.

use super::drive::{
    ControllerDrive, ControllerScan, clean, interface_name, media_from_text, normalize_wwn, parse_block_size,
    parse_sector_size,
};
use super::inquiry::split_inquiry;

/// One drive block's raw values.
#[derive(Debug, Default)]
struct Block {
    adapter: u32,
    enclosure: Option<String>,
    slot: Option<String>,
    device_id: Option<String>,
    wwn: Option<String>,
    pd_type: Option<String>,
    raw_size: Option<String>,
    sector_size: Option<String>,
    state: Option<String>,
    firmware_level: Option<String>,
    inquiry: Option<String>,
    media: Option<String>,
}

impl Block {
    fn new(adapter: u32) -> Self {
        Block { adapter, ..Block::default() }
    }

    /// The drive this block describes; a block without a slot number names no drive.
    fn into_drive(self) -> Option<ControllerDrive> {
        let slot = self.slot.as_deref().and_then(clean)?;
        let firmware_level = self.firmware_level.as_deref().and_then(clean).filter(|l| !l.eq_ignore_ascii_case("N/A"));
        let inquiry = self
            .inquiry
            .as_deref()
            .map(|raw| split_inquiry(raw, self.pd_type.as_deref(), firmware_level.as_deref()))
            .unwrap_or_default();
        let sector_size = self.sector_size.as_deref().and_then(parse_block_size);
        Some(ControllerDrive {
            adapter: self.adapter,
            enclosure: self.enclosure.as_deref().and_then(enclosure_id),
            slot,
            device_id: self.device_id.as_deref().and_then(clean),
            capacity_bytes: self.raw_size.as_deref().and_then(|size| parse_sector_size(size, sector_size)),
            pd_type: self.pd_type.as_deref().and_then(interface_name),
            media: self.media.as_deref().and_then(media_from_text),
            vendor: inquiry.vendor,
            model: inquiry.model,
            serial: inquiry.serial,
            // MegaCli's own "Device Firmware Level" is the documented source of the firmware (it is
            // what the controller's tools and logs show); the inquiry revision stands in only when
            // that line is missing.
            firmware: firmware_level.or(inquiry.firmware),
            wwn: self.wwn.as_deref().and_then(normalize_wwn),
            state: self.state.as_deref().and_then(clean),
        })
    }
}

/// "32" -> Some("32"); "N/A", "" -> None (a drive cabled to the controller without an enclosure).
fn enclosure_id(value: &str) -> Option<String> {
    clean(value).filter(|v| !v.eq_ignore_ascii_case("N/A") && v != "-")
}

/// `Adapter #1` -> 1.
fn adapter_header(line: &str) -> Option<u32> {
    let rest = line.strip_prefix("Adapter")?.trim_start().strip_prefix('#')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Parses `MegaCli -PDList -aALL` output. Never fails: text that is not MegaCli output yields no
/// drives.
pub fn parse_megacli(text: &str) -> ControllerScan {
    let mut scan = ControllerScan::default();
    let mut adapter = 0;
    let mut current: Option<Block> = None;
    for raw_line in text.split('\n') {
        let line = raw_line.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(number) = adapter_header(trimmed) {
            finish(current.take(), &mut scan);
            adapter = number;
            scan.adapters.insert(number);
            continue;
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        let key = key.trim().to_ascii_lowercase();
        match key.as_str() {
            "enclosure device id" => {
                finish(current.take(), &mut scan);
                let mut block = Block::new(adapter);
                block.enclosure = Some(value.trim().to_owned());
                current = Some(block);
            }
            "slot number" => {
                // A second slot number without an enclosure line in between starts a new drive.
                if current.as_ref().is_none_or(|b| b.slot.is_some()) {
                    finish(current.take(), &mut scan);
                    current = Some(Block::new(adapter));
                }
                if let Some(block) = current.as_mut() {
                    block.slot = Some(value.trim().to_owned());
                }
            }
            "exit code" => finish(current.take(), &mut scan),
            _ => {
                if let Some(block) = current.as_mut() {
                    set_field(block, &key, value);
                }
            }
        }
    }
    finish(current.take(), &mut scan);
    scan
}

/// Turns a finished block into a drive of `scan`.
fn finish(block: Option<Block>, scan: &mut ControllerScan) {
    if let Some(drive) = block.and_then(Block::into_drive) {
        scan.adapters.insert(drive.adapter);
        scan.drives.push(drive);
    }
}

fn set_field(block: &mut Block, key: &str, value: &str) {
    let slot = match key {
        "device id" => &mut block.device_id,
        "wwn" => &mut block.wwn,
        "pd type" => &mut block.pd_type,
        "raw size" => &mut block.raw_size,
        "sector size" => &mut block.sector_size,
        "firmware state" => &mut block.state,
        "device firmware level" => &mut block.firmware_level,
        "media type" => &mut block.media,
        "inquiry data" => {
            // Keep the padding: the SATA layout is fixed-width from the first character after
            // the single space MegaCli puts behind the colon.
            let raw = value.strip_prefix(' ').unwrap_or(value);
            block.inquiry.get_or_insert_with(|| raw.to_owned());
            return;
        }
        _ => return,
    };
    // The first occurrence wins: later keys of the same name belong to sub-sections (ports).
    slot.get_or_insert_with(|| value.trim().to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_DRIVES: &str = "\r                                     \nAdapter #0\n\nEnclosure Device ID: 32\nSlot Number: 0\nDrive's postion: DiskGroup: 0, Span: 0, Arm: 0\nDevice Id: 0\nWWN: 5000C5007272C288\nPD Type: SAS\nRaw Size: 279.396 GB [0x22ecb25c Sectors]\nFirmware state: Online, Spun Up\nDevice Firmware Level: LS08\nInquiry Data: SEAGATE ST300MM0006     LS08S0K2B5NV            \nMedia Type: Hard Disk Device\nDrive Temperature :29C (84.20 F)\n\n\n\nEnclosure Device ID: 32\nSlot Number: 2\nDrive's position: DiskGroup: 1, Span: 0, Arm: 0\nDevice Id: 2\nPD Type: SATA\n\nRaw Size: 476.939 GB [0x3b9e12b0 Sectors]\nDevice Firmware Level: 1B6Q\nInquiry Data: S1SZNSAFA01085L     Samsung SSD 850 PRO 512GB               EXM01B6Q\nMedia Type: Solid State Device\n\n\nExit Code: 0x00";

    #[test]
    fn reads_sas_and_sata_drives() {
        let scan = parse_megacli(TWO_DRIVES);
        assert_eq!(scan.adapters.iter().copied().collect::<Vec<_>>(), vec![0]);
        assert_eq!(scan.drives.len(), 2);
        let sas = &scan.drives[0];
        assert_eq!(sas.enclosure.as_deref(), Some("32"));
        assert_eq!(sas.slot, "0");
        assert_eq!(sas.capacity_bytes, Some(0x22ecb25c * 512));
        assert_eq!(sas.pd_type.as_deref(), Some("SAS"));
        assert_eq!(sas.media.as_deref(), Some("hdd"));
        assert_eq!(sas.vendor.as_deref(), Some("Seagate"));
        assert_eq!(sas.model.as_deref(), Some("ST300MM0006"));
        assert_eq!(sas.serial.as_deref(), Some("S0K2B5NV"));
        assert_eq!(sas.firmware.as_deref(), Some("LS08"));
        assert_eq!(sas.wwn.as_deref(), Some("5000c5007272c288"));
        let sata = &scan.drives[1];
        assert_eq!(sata.capacity_bytes, Some(0x3b9e12b0 * 512), "a blank line inside the block is not its end");
        assert_eq!(sata.media.as_deref(), Some("ssd"));
        assert_eq!(sata.serial.as_deref(), Some("S1SZNSAFA01085L"));
        assert_eq!(sata.model.as_deref(), Some("Samsung SSD 850 PRO 512GB"));
        assert_eq!(sata.firmware.as_deref(), Some("1B6Q"), "Device Firmware Level is the firmware");
    }

    #[test]
    fn several_adapters_and_an_empty_one() {
        let text = "Adapter #0\n\nAdapter #1\n\nEnclosure Device ID: N/A\nSlot Number: 3\nPD Type: SAS\nRaw Size: 1 GB [0x200000 Sectors]\n\nAdapter #2\nEnclosure Device ID: 8\nSlot Number: 3\n\nExit Code: 0x00\n";
        let scan = parse_megacli(text);
        assert_eq!(scan.adapters.iter().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(scan.drives.len(), 2);
        assert_eq!((scan.drives[0].adapter, scan.drives[0].enclosure.as_deref()), (1, None));
        assert_eq!((scan.drives[1].adapter, scan.drives[1].enclosure.as_deref()), (2, Some("8")));
    }

    #[test]
    fn slot_without_enclosure_line_starts_a_new_drive() {
        let text = "Adapter #0\nSlot Number: 0\nPD Type: SAS\nSlot Number: 1\nPD Type: SATA\n";
        let scan = parse_megacli(text);
        assert_eq!(scan.drives.iter().map(|d| d.slot.as_str()).collect::<Vec<_>>(), vec!["0", "1"]);
        assert_eq!(scan.drives[1].pd_type.as_deref(), Some("SATA"));
        assert_eq!(scan.drives[0].enclosure, None);
    }

    #[test]
    fn crlf_line_ends_and_missing_values() {
        let text = "Adapter #0\r\nEnclosure Device ID: 252\r\nSlot Number: 7\r\nRaw Size: N/A\r\nInquiry Data:\r\nDevice Firmware Level: N/A\r\n";
        let scan = parse_megacli(text);
        let drive = &scan.drives[0];
        assert_eq!((drive.enclosure.as_deref(), drive.slot.as_str()), (Some("252"), "7"));
        assert_eq!((drive.capacity_bytes, drive.serial.as_deref(), drive.firmware.as_deref()), (None, None, None));
    }

    #[test]
    fn non_megacli_text_has_no_drives() {
        assert!(parse_megacli("").drives.is_empty());
        assert!(parse_megacli("MegaCli: command not found\n").drives.is_empty());
        assert!(parse_megacli("Enclosure Device ID: 32\n").drives.is_empty(), "no slot, no drive");
        assert_eq!(adapter_header("Adapter #12"), Some(12));
        assert_eq!(adapter_header("Adapter 0: something"), None);
    }
}
