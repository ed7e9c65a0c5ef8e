//! Which stored asset a report describes.
//!
//! Identity keys, strongest first: board UUID, board serial (with manufacturer), machine id, the
//! previous host name, the host name. A weaker key may only match an asset whose stronger keys are
//! unknown or agree with the report, so a host name reused on new hardware becomes a new asset,
//! while a renamed host (same board) stays the same asset.
//!
//! Vendors fill unset SMBIOS fields with placeholders ("To Be Filled By O.E.M.", all-zero UUIDs,
//! ...). Those are never identity: two machines with the same placeholder would merge.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::report::{BoardData, Report};

/// Serial-number and UUID strings vendors use for "unset", compared case-insensitively after trimming.
const PLACEHOLDERS: &[&str] = &[
    "not specified",
    "not available",
    "not applicable",
    "not present",
    "not settable",
    "to be filled by o.e.m.",
    "to be filled by oem",
    "default string",
    "system serial number",
    "chassis serial number",
    "base board serial number",
    "system product name",
    "system manufacturer",
    "serial number",
    "serialnumber",
    "0123456789",
    "123456789",
    "1234567890",
    "12345678",
    "none",
    "null",
    "n/a",
    "na",
    "unknown",
    "invalid",
    "oem",
    "o.e.m.",
    "empty",
    "no asset tag",
    "no dimm",
    "unspecified",
];

/// True when `value` is a vendor's way of saying "unset" (or is empty).
pub fn is_placeholder(value: &str) -> bool {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return true;
    }
    let lower = trimmed.to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str()) || lower.starts_with("to be filled") {
        return true;
    }
    // Runs of one character ("00000000", "FFFFFFFF", "........", "XXXXXXXX") carry no identity.
    let mut chars = lower.chars().filter(|c| !matches!(c, '-' | ' ' | ':'));
    match chars.next() {
        None => true,
        Some(first) => chars.all(|c| c == first),
    }
}

/// A serial number fit to identify hardware: trimmed, `None` for placeholders.
pub fn normalize_serial(value: &str) -> Option<String> {
    if is_placeholder(value) { None } else { Some(value.trim().to_owned()) }
}

/// UUIDs that firmware vendors ship on every board of a model (AMI's "03000200-0400-0500-0006-
/// 000700080009" is the best known): they identify nothing.
const PLACEHOLDER_UUIDS: &[&str] = &["03000200-0400-0500-0006-000700080009", "01234567-8901-2345-6789-012345678901"];

/// An SMBIOS UUID fit to identify hardware: lowercase hyphenated, `None` when malformed or a
/// placeholder (all zeros, all ones, one repeated digit, a known vendor default).
pub fn normalize_uuid(value: &str) -> Option<String> {
    let uuid = Uuid::parse_str(value.trim()).ok()?;
    let text = uuid.hyphenated().to_string();
    if is_placeholder(&text) || PLACEHOLDER_UUIDS.contains(&text.as_str()) { None } else { Some(text) }
}

/// A machine id fit to identify an OS install: 32 hex digits, lowercase; `None` for systemd's
/// "uninitialized" marker, all-zero ids and anything malformed.
pub fn normalize_machine_id(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.len() != 32 || !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) || is_placeholder(trimmed) {
        return None;
    }
    Some(trimmed.to_ascii_lowercase())
}

/// A key the report may or may not know: a failed board probe says nothing about the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known<T> {
    /// The report does not say (section failed or missing).
    Unknown,
    /// The report says; `None` means "this host has none".
    Value(Option<T>),
}

impl<T: PartialEq> Known<T> {
    /// Whether a stored key may coexist with this report's key: stored unknown, report unknown, or equal.
    fn admits(&self, stored: Option<&T>) -> bool {
        match (self, stored) {
            (_, None) | (Known::Unknown, _) => true,
            (Known::Value(reported), Some(stored)) => reported.as_ref() == Some(stored),
        }
    }

    /// The value, when known and present.
    pub fn value(&self) -> Option<&T> {
        match self {
            Known::Value(Some(v)) => Some(v),
            _ => None,
        }
    }
}

/// The identity keys a report offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportKeys {
    /// Normalized board UUID.
    pub board_uuid: Known<String>,
    /// Normalized board serial with the manufacturer as reported (trimmed).
    pub board_serial: Known<(Option<String>, String)>,
    /// Normalized machine id; `None` when the report has none usable.
    pub machine_id: Option<String>,
    /// The host name the agent delivered last time, when it differs.
    pub previous_hostname: Option<String>,
    /// The host name now.
    pub hostname: String,
}

impl ReportKeys {
    /// Extracts the keys from a validated report.
    pub fn from_report(report: &Report) -> Self {
        let board = report.ok_section("board").map(|section| BoardData {
            manufacturer: section.fields.get("manufacturer").and_then(|v| v.as_str()).map(str::to_owned),
            model: None,
            sn: section.fields.get("sn").and_then(|v| v.as_str()).map(str::to_owned),
            uuid: section.fields.get("uuid").and_then(|v| v.as_str()).map(str::to_owned),
        });
        let (board_uuid, board_serial) = match board {
            None => (Known::Unknown, Known::Unknown),
            Some(board) => (
                Known::Value(board.uuid.as_deref().and_then(normalize_uuid)),
                Known::Value(board.sn.as_deref().and_then(normalize_serial).map(|sn| {
                    let manufacturer = board.manufacturer.as_deref().and_then(normalize_serial);
                    (manufacturer, sn)
                })),
            ),
        };
        ReportKeys {
            board_uuid,
            board_serial,
            machine_id: report.host.machine_id.as_deref().and_then(normalize_machine_id),
            previous_hostname: report
                .host
                .previous_hostname
                .clone()
                .filter(|previous| previous != &report.host.hostname && !previous.trim().is_empty()),
            hostname: report.host.hostname.clone(),
        }
    }
}

/// The identity keys an asset has stored (as derived from its state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKeys {
    /// Normalized board UUID.
    pub board_uuid: Option<String>,
    /// Normalized board serial.
    pub board_sn: Option<String>,
    /// Board manufacturer, normalized like a serial.
    pub board_manufacturer: Option<String>,
    /// Normalized machine id.
    pub machine_id: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
}

/// The key a report matched its asset by, reported to the agent as `matched_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKey {
    /// The SMBIOS UUID.
    BoardUuid,
    /// The serial number together with the manufacturer.
    BoardSerial,
    /// /etc/machine-id.
    MachineId,
    /// The host name the asset had before a rename.
    PreviousHostname,
    /// The host name.
    Hostname,
}

impl MatchKey {
    /// Every key, strongest first.
    pub const ALL: [MatchKey; 5] = [
        MatchKey::BoardUuid,
        MatchKey::BoardSerial,
        MatchKey::MachineId,
        MatchKey::PreviousHostname,
        MatchKey::Hostname,
    ];

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKey::BoardUuid => "board_uuid",
            MatchKey::BoardSerial => "board_serial",
            MatchKey::MachineId => "machine_id",
            MatchKey::PreviousHostname => "previous_hostname",
            MatchKey::Hostname => "hostname",
        }
    }
}

/// Whether an asset found through `key` may be the report's asset: every key stronger than `key`
/// must be unknown on one side or equal on both. (The caller has already excluded retired assets.)
pub fn admissible(key: MatchKey, stored: &StoredKeys, report: &ReportKeys) -> bool {
    let stronger = |k: MatchKey| k < key;
    if stronger(MatchKey::BoardUuid) && !report.board_uuid.admits(stored.board_uuid.as_ref()) {
        return false;
    }
    if stronger(MatchKey::BoardSerial) {
        let admits = match (&report.board_serial, &stored.board_sn) {
            (_, None) | (Known::Unknown, _) => true,
            (Known::Value(None), Some(_)) => false,
            (Known::Value(Some((manufacturer, sn))), Some(stored_sn)) => {
                sn == stored_sn && manufacturer.as_ref() == stored.board_manufacturer.as_ref()
            }
        };
        if !admits {
            return false;
        }
    }
    if stronger(MatchKey::MachineId)
        && let (Some(reported), Some(stored)) = (&report.machine_id, &stored.machine_id)
        && reported != stored
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_not_identity() {
        for p in [
            "Not Specified",
            "To Be Filled By O.E.M.",
            "Default string",
            "System Serial Number",
            "0123456789",
            "  ",
            "00000000",
            "XXXXXXXXXX",
            "........",
        ] {
            assert!(normalize_serial(p).is_none(), "{p:?}");
        }
        assert_eq!(normalize_serial(" 2WF88P2 ").as_deref(), Some("2WF88P2"));
        assert_eq!(
            normalize_serial("Parallels-1A 1B CB 3B 64 66 4B 13 86 B0 86 FF 7E 2B 20 30").as_deref(),
            Some("Parallels-1A 1B CB 3B 64 66 4B 13 86 B0 86 FF 7E 2B 20 30")
        );
    }

    #[test]
    fn uuids_are_normalized_and_placeholders_refused() {
        assert_eq!(
            normalize_uuid("4C4C4544-0057-4610-8038-B2C04F503832").as_deref(),
            Some("4c4c4544-0057-4610-8038-b2c04f503832")
        );
        for bad in
            ["00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "Not Settable", "12"]
        {
            assert!(normalize_uuid(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn machine_ids() {
        assert!(normalize_machine_id("uninitialized").is_none());
        assert!(normalize_machine_id("00000000000000000000000000000000").is_none());
        assert_eq!(
            normalize_machine_id("0123456789ABCDEF0123456789abcdef\n").as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
    }

    fn keys(uuid: Option<&str>, sn: Option<&str>) -> ReportKeys {
        ReportKeys {
            board_uuid: Known::Value(uuid.map(str::to_owned)),
            board_serial: Known::Value(sn.map(|s| (Some("Dell".to_owned()), s.to_owned()))),
            machine_id: None,
            previous_hostname: None,
            hostname: "web-01".into(),
        }
    }

    #[test]
    fn hostname_on_new_hardware_is_not_admissible() {
        let stored =
            StoredKeys { board_uuid: Some("u-old".into()), hostname: Some("web-01".into()), ..StoredKeys::default() };
        assert!(!admissible(MatchKey::Hostname, &stored, &keys(Some("u-new"), None)));
        assert!(admissible(MatchKey::Hostname, &stored, &keys(Some("u-old"), None)));
        let unknown = ReportKeys { board_uuid: Known::Unknown, ..keys(None, None) };
        assert!(admissible(MatchKey::Hostname, &stored, &unknown), "a failed board probe does not split the asset");
    }

    #[test]
    fn serial_must_agree_for_weaker_keys() {
        let stored = StoredKeys {
            board_sn: Some("SN1".into()),
            board_manufacturer: Some("Dell".into()),
            ..StoredKeys::default()
        };
        assert!(admissible(MatchKey::MachineId, &stored, &keys(None, Some("SN1"))));
        assert!(!admissible(MatchKey::MachineId, &stored, &keys(None, Some("SN2"))));
        assert!(
            admissible(MatchKey::BoardSerial, &stored, &keys(None, Some("SN2"))),
            "the key itself is checked by the lookup"
        );
    }
}
