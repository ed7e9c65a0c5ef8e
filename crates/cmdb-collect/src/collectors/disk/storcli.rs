//! `storcli /call/eall/sall show all J` output (also perccli, Dell's build of storcli).
//!
//! The grammar: one JSON document (several concatenated documents are accepted too) holding
//! `{"Controllers": [ {"Command Status": {"Controller": N, "Status": "Success" | "Failure",
//! "Description": ...}, "Response Data": {...}} ]}`. In `Response Data`, each drive has a summary
//! row under `"Drive /cN/eE/sS"` (an array of one object: `EID:Slt`, `DID`, `State`, `Intf`,
//! `Med`, `Model`, ...) and details under `"Drive /cN/eE/sS - Detailed Information"`, whose
//! `"Drive /cN/eE/sS Device attributes"` object carries `SN`, `Manufacturer Id`, `Model Number`,
//! `WWN`, `Firmware Revision` and `Raw size` (`"111.790 GB [0xdf94bb0 Sectors]"`). Drives without
//! an enclosure are named `/cN/sS` with an `EID:Slt` of `" :S"`. The plain `show` form lists the
//! summary rows in a `"Drive Information"` array instead; those rows are read too (without serial
//! numbers or exact sizes). Values may be strings or numbers; string values carry the drive's
//! space padding (`"SN": "        Z4DS105ZTM3W"`).

use serde_json::{Map, Value};

use super::drive::{
    ControllerDrive, ControllerScan, clean, clean_serial, interface_name, media_from_text, normalize_wwn,
    parse_block_size, parse_sector_size, vendor_from_model, vendor_name,
};

/// Why storcli output gave no drive list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorcliError {
    /// The output is empty.
    #[error("the output is empty")]
    Empty,
    /// The output is not JSON (storcli run without `J`, or cut short).
    #[error("not JSON: {0}")]
    Json(String),
    /// The JSON has no `Controllers` list.
    #[error("the JSON has no \"Controllers\" list")]
    NoControllers,
    /// Every controller answered with a failure; the descriptions say why.
    #[error("storcli reported failure: {0}")]
    Failed(String),
}

/// A drive's identity inside the output: controller, enclosure, slot.
type DriveKey = (u32, Option<String>, String);

/// Parses storcli's JSON. Errors only when the output carries no usable controller at all.
pub fn parse_storcli(text: &str) -> Result<ControllerScan, StorcliError> {
    if text.trim().is_empty() {
        return Err(StorcliError::Empty);
    }
    let mut documents = Vec::new();
    for document in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match document {
            Ok(value) => documents.push(value),
            // A document that parsed is kept even when trailing text does not.
            Err(e) if documents.is_empty() => return Err(StorcliError::Json(e.to_string())),
            Err(_) => break,
        }
    }
    let controllers: Vec<&Value> = documents
        .iter()
        .filter_map(|d| d.get("Controllers").and_then(Value::as_array))
        .flat_map(|list| list.iter())
        .collect();
    if controllers.is_empty() {
        return Err(StorcliError::NoControllers);
    }
    let mut scan = ControllerScan::default();
    let mut failures = Vec::new();
    let mut answered = false;
    for (index, controller) in controllers.iter().enumerate() {
        let status = controller.get("Command Status");
        let number = status
            .and_then(|s| s.get("Controller"))
            .and_then(json_u32)
            .unwrap_or_else(|| u32::try_from(index).unwrap_or(u32::MAX));
        let ok = status
            .and_then(|s| s.get("Status"))
            .and_then(Value::as_str)
            .is_none_or(|s| s.eq_ignore_ascii_case("Success"));
        let description = status.and_then(|s| s.get("Description")).and_then(json_text).unwrap_or_default();
        if !ok {
            // "No drive found!" is a controller without drives in enclosures, not a failure.
            if description.to_ascii_lowercase().contains("no drive") {
                answered = true;
                scan.adapters.insert(number);
            } else {
                failures.push(format!("controller {number}: {}", failure_text(controller, &description)));
            }
            continue;
        }
        answered = true;
        scan.adapters.insert(number);
        if let Some(data) = controller.get("Response Data").and_then(Value::as_object) {
            read_response(number, data, &mut scan);
        }
    }
    if !answered {
        return Err(StorcliError::Failed(failures.join("; ")));
    }
    Ok(scan)
}

/// The description, or the first detailed error message when the description says "None".
fn failure_text(controller: &Value, description: &str) -> String {
    let detailed = controller
        .get("Command Status")
        .and_then(|s| s.get("Detailed Status"))
        .and_then(Value::as_array)
        .and_then(|rows| rows.iter().find_map(|row| row.get("ErrMsg").and_then(json_text)));
    match detailed {
        Some(message) if description.is_empty() || description.eq_ignore_ascii_case("None") => message,
        _ if description.is_empty() => "failure".to_owned(),
        _ => description.to_owned(),
    }
}

fn read_response(controller: u32, data: &Map<String, Value>, scan: &mut ControllerScan) {
    let mut drives: Vec<(DriveKey, ControllerDrive)> = Vec::new();
    for (name, value) in data {
        if name == "Drive Information" {
            for row in value.as_array().into_iter().flatten() {
                if let Some(key) =
                    row.get("EID:Slt").and_then(json_text).and_then(|e| key_from_eid_slot(controller, &e))
                {
                    let at = entry(key, &mut drives);
                    apply_summary(&mut drives[at].1, row);
                }
            }
            continue;
        }
        let Some(path) = name.strip_prefix("Drive ") else { continue };
        if let Some(path) = path.strip_suffix(" - Detailed Information") {
            let Some(key) = key_from_path(path) else { continue };
            let at = entry(key, &mut drives);
            if let Some(details) = value.as_object() {
                apply_details(&mut drives[at].1, details);
            }
        } else if let Some(key) = key_from_path(path) {
            let at = entry(key, &mut drives);
            for row in value.as_array().into_iter().flatten() {
                apply_summary(&mut drives[at].1, row);
            }
        }
    }
    for (_, drive) in drives {
        scan.adapters.insert(drive.adapter);
        scan.drives.push(drive);
    }
}

/// The index of the drive called `key`, added empty when new (summary and details arrive under
/// separate names, in either order).
fn entry(key: DriveKey, drives: &mut Vec<(DriveKey, ControllerDrive)>) -> usize {
    if let Some(at) = drives.iter().position(|(k, _)| *k == key) {
        return at;
    }
    let (adapter, enclosure, slot) = key.clone();
    drives.push((key, ControllerDrive { adapter, enclosure, slot, ..ControllerDrive::default() }));
    drives.len() - 1
}

/// "/c0/e252/s3" -> (0, Some("252"), "3"); "/c1/s4" -> (1, None, "4").
fn key_from_path(path: &str) -> Option<DriveKey> {
    let mut controller = None;
    let mut enclosure = None;
    let mut slot = None;
    for part in path.trim().split('/').filter(|p| !p.is_empty()) {
        let (tag, value) = part.split_at_checked(1)?;
        match tag {
            "c" => controller = Some(value.parse::<u32>().ok()?),
            "e" => enclosure = Some(value.to_owned()),
            "s" => slot = Some(value.to_owned()),
            _ => return None,
        }
    }
    let slot = slot.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))?;
    Some((controller?, enclosure.filter(|e| !e.is_empty()), slot))
}

/// "252:3" -> (controller, Some("252"), "3"); " :3" -> (controller, None, "3").
fn key_from_eid_slot(controller: u32, text: &str) -> Option<DriveKey> {
    let (enclosure, slot) = text.split_once(':')?;
    let slot = slot.trim();
    if slot.is_empty() {
        return None;
    }
    let enclosure = clean(enclosure).filter(|e| e != "-" && !e.eq_ignore_ascii_case("N/A"));
    Some((controller, enclosure, slot.to_owned()))
}

fn apply_summary(drive: &mut ControllerDrive, row: &Value) {
    let get = |name: &str| row.get(name).and_then(json_text);
    fill(&mut drive.device_id, get("DID"));
    fill(&mut drive.state, get("State"));
    fill(&mut drive.pd_type, get("Intf").as_deref().and_then(interface_name));
    fill(&mut drive.media, get("Med").as_deref().and_then(media_from_text));
    fill(&mut drive.model, get("Model"));
    if drive.vendor.is_none() {
        drive.vendor = drive.model.as_deref().and_then(vendor_from_model);
    }
}

fn apply_details(drive: &mut ControllerDrive, details: &Map<String, Value>) {
    let Some(attributes) =
        details.iter().find(|(name, _)| name.ends_with("Device attributes")).and_then(|(_, v)| v.as_object())
    else {
        return;
    };
    let get = |name: &str| attributes.get(name).and_then(json_text);
    let model = get("Model Number");
    // The detailed model is the full one; the summary row may be shortened.
    if model.is_some() {
        drive.model = model;
    }
    fill(&mut drive.serial, get("SN").as_deref().and_then(clean_serial));
    fill(&mut drive.firmware, get("Firmware Revision"));
    fill(&mut drive.wwn, get("WWN").as_deref().and_then(normalize_wwn));
    let sector_size = get("Logical Sector Size").as_deref().and_then(parse_block_size);
    fill(&mut drive.capacity_bytes, get("Raw size").as_deref().and_then(|size| parse_sector_size(size, sector_size)));
    // "Manufacturer Id" is the SCSI vendor field; for SATA drives it says "ATA" and the model
    // names the maker instead.
    let previous = drive.vendor.take();
    drive.vendor = get("Manufacturer Id")
        .as_deref()
        .and_then(vendor_name)
        .or_else(|| drive.model.as_deref().and_then(vendor_from_model))
        .or(previous);
}

fn fill<T>(field: &mut Option<T>, value: Option<T>) {
    if field.is_none() {
        *field = value;
    }
}

/// A JSON string (trimmed, "-" and "N/A" dropped) or number as text.
fn json_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => clean(s).filter(|s| s != "-" && !s.eq_ignore_ascii_case("N/A") && s != "NA"),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn json_u32(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_DRIVE: &str = r#"{"Controllers":[{"Command Status":{"Controller":1,"Status":"Success","Description":"Show Drive Information Succeeded."},
      "Response Data":{
        "Drive /c1/e12/s0":[{"EID:Slt":"12:0","DID":13,"State":"Onln","DG":0,"Size":"237.968 GB","Intf":"SATA","Med":"SSD","Model":"Samsung SSD 860 PRO 256GB"}],
        "Drive /c1/e12/s0 - Detailed Information":{
          "Drive /c1/e12/s0 Device attributes":{"SN":"S42VNF0K516979R     ","Manufacturer Id":"ATA     ","Model Number":"Samsung SSD 860 PRO 256GB","WWN":"5002538e403e1157","Firmware Revision":"RVM01B6Q","Raw size":"238.474 GB [0x1dcf32b0 Sectors]","Logical Sector Size":"512B"}}}}]}"#;

    #[test]
    fn reads_summary_and_details() {
        let scan = parse_storcli(ONE_DRIVE).expect("parses");
        assert_eq!(scan.adapters.iter().copied().collect::<Vec<_>>(), vec![1]);
        let drive = &scan.drives[0];
        assert_eq!((drive.adapter, drive.enclosure.as_deref(), drive.slot.as_str()), (1, Some("12"), "0"));
        assert_eq!(drive.device_id.as_deref(), Some("13"));
        assert_eq!(drive.serial.as_deref(), Some("S42VNF0K516979R"));
        assert_eq!(drive.vendor.as_deref(), Some("Samsung"), "ATA is no vendor; the model names it");
        assert_eq!(drive.model.as_deref(), Some("Samsung SSD 860 PRO 256GB"));
        assert_eq!(drive.firmware.as_deref(), Some("RVM01B6Q"));
        assert_eq!(drive.capacity_bytes, Some(0x1dcf32b0 * 512));
        assert_eq!((drive.pd_type.as_deref(), drive.media.as_deref()), (Some("SATA"), Some("ssd")));
        assert_eq!(drive.wwn.as_deref(), Some("5002538e403e1157"));
    }

    #[test]
    fn drives_without_enclosure_and_the_plain_show_form() {
        let text = r#"{"Controllers":[{"Command Status":{"Controller":0,"Status":"Success"},"Response Data":{
            "Drive /c0/s4":[{"EID:Slt":" :4","DID":10,"State":"JBOD","Intf":"SAS","Med":"HDD","Model":"ST4000NM0023"}],
            "Drive Information":[{"EID:Slt":"252:1","DID":4,"State":"UGood","Intf":"SATA","Med":"SSD","Model":"TOSHIBA THNSNJ120PCSZ"}]}}]}"#;
        let scan = parse_storcli(text).expect("parses");
        let slots: Vec<(Option<&str>, &str)> =
            scan.drives.iter().map(|d| (d.enclosure.as_deref(), d.slot.as_str())).collect();
        assert!(slots.contains(&(None, "4")) && slots.contains(&(Some("252"), "1")), "{slots:?}");
        let toshiba = scan.drives.iter().find(|d| d.slot == "1").expect("252:1");
        assert_eq!(toshiba.vendor.as_deref(), Some("Toshiba"));
        assert_eq!(toshiba.capacity_bytes, None, "the rounded Size is never used");
    }

    #[test]
    fn failures_and_garbage_are_errors_but_no_drives_is_not() {
        assert_eq!(parse_storcli("  "), Err(StorcliError::Empty));
        assert!(matches!(parse_storcli("Controller = 0\nStatus = Success"), Err(StorcliError::Json(_))));
        assert_eq!(parse_storcli("{}"), Err(StorcliError::NoControllers));
        let failed = r#"{"Controllers":[{"Command Status":{"Controller":0,"Status":"Failure","Description":"None",
            "Detailed Status":[{"Ctrl":0,"Status":"Failed","ErrCd":59,"ErrMsg":"Incomplete foreign configuration"}]}}]}"#;
        assert_eq!(
            parse_storcli(failed),
            Err(StorcliError::Failed("controller 0: Incomplete foreign configuration".into()))
        );
        let none = r#"{"Controllers":[{"Command Status":{"Controller":0,"Status":"Failure","Description":"No drive found!"}}]}"#;
        let scan = parse_storcli(none).expect("no drives is an answer");
        assert!(scan.drives.is_empty());
    }

    #[test]
    fn trailing_text_after_a_document_is_ignored() {
        let text = format!("{ONE_DRIVE}\nsome trailing noise");
        assert_eq!(parse_storcli(&text).expect("parses").drives.len(), 1);
    }

    #[test]
    fn paths() {
        assert_eq!(key_from_path("/c0/e252/s3"), Some((0, Some("252".into()), "3".into())));
        assert_eq!(key_from_path("/c1/s4"), Some((1, None, "4".into())));
        assert_eq!(key_from_path("/c0/e252"), None);
        assert_eq!(key_from_path("/cX/s1"), None);
        assert_eq!(key_from_path("/c0/é/s1"), None);
    }
}
