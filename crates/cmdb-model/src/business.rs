//! The fields people maintain: where an asset stands, who owns it, whether it is in service.
//!
//! Collection never writes them. They live in the `business` pseudo-section of the asset state, so
//! an edit is an ordinary change record (source `user:<name>`) and the as-of view rebuilds them
//! like everything else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::custom_fields::Definitions;

/// Lifecycle status of an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AssetStatus {
    /// Installed in a cabinet, not yet in service. The default for hosts registered by hand.
    #[default]
    Racked,
    /// In service; collectors visit it. Hosts first seen through a report start here.
    Online,
    /// Out of service but still owned.
    Offline,
    /// Decommissioned; never matched by new reports.
    Retired,
}

impl AssetStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [AssetStatus; 4] =
        [AssetStatus::Racked, AssetStatus::Online, AssetStatus::Offline, AssetStatus::Retired];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetStatus::Racked => "racked",
            AssetStatus::Online => "online",
            AssetStatus::Offline => "offline",
            AssetStatus::Retired => "retired",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<Self> {
        AssetStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The business fields of one asset, all optional but `status` and `tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessFields {
    /// The organisation's asset tag (the label on the machine), unique among assets not deleted.
    /// Absent from the stored object until set, so older histories replay unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_tag: Option<String>,
    /// Data centre.
    #[serde(default)]
    pub idc: Option<String>,
    /// Cabinet (rack) name.
    #[serde(default)]
    pub cabinet: Option<String>,
    /// Lowest rack unit the asset occupies.
    #[serde(default)]
    pub cabinet_u: Option<u16>,
    /// Business unit that pays for it.
    #[serde(default)]
    pub business_unit: Option<String>,
    /// Responsible person or team.
    #[serde(default)]
    pub owner: Option<String>,
    /// Lifecycle status.
    #[serde(default)]
    pub status: AssetStatus,
    /// Free tags, sorted and unique.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Address collectors connect to (IP or DNS name), when it is not the host name.
    #[serde(default)]
    pub manage_address: Option<String>,
    /// SSH port, when not 22.
    #[serde(default)]
    pub ssh_port: Option<u16>,
    /// Salt minion id, when it is not the host name.
    #[serde(default)]
    pub salt_minion_id: Option<String>,
    /// Free notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Values of custom fields by key, in their stored form (see [`crate::custom_fields`]).
    /// Absent until one is set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, Value>,
}

/// The names of the business fields, in display order.
pub const FIELD_NAMES: &[&str] = &[
    "asset_tag",
    "idc",
    "cabinet",
    "cabinet_u",
    "business_unit",
    "owner",
    "status",
    "tags",
    "manage_address",
    "ssh_port",
    "salt_minion_id",
    "notes",
];

/// Why a business edit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The offending field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_owned(), message: message.into() }
}

/// Longest free-text value accepted for any business field but `notes`.
pub const MAX_FIELD_LEN: usize = 200;
/// Longest `notes` accepted.
pub const MAX_NOTES_LEN: usize = 10_000;

/// Longest asset tag accepted.
pub const MAX_ASSET_TAG_LEN: usize = 64;

/// Checks an asset tag: printable ASCII without spaces, so it prints as a Code 128 barcode and
/// reads back from a scanner exactly as typed.
pub fn check_asset_tag(tag: &str) -> Result<(), String> {
    if tag.len() > MAX_ASSET_TAG_LEN {
        return Err(format!("an asset tag has at most {MAX_ASSET_TAG_LEN} characters"));
    }
    if let Some(c) = tag.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "an asset tag is printable ASCII without spaces (it is printed as a barcode); {c:?} is not"
        ));
    }
    Ok(())
}

/// Longest Salt minion id accepted (a DNS name's limit).
pub const MAX_MINION_ID_LEN: usize = 253;

/// Checks a Salt minion id before it reaches a `salt` command line: the agent targets minions as
/// a comma-separated list, so a `,` would add minions, white space would split arguments, and
/// `/\*?[]` are glob characters. This rule is the one the server applies to business edits and
/// the agent to what the server hands it.
pub fn check_minion_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a minion id must not be empty".to_owned());
    }
    if id.len() > MAX_MINION_ID_LEN {
        return Err(format!("a minion id has at most {MAX_MINION_ID_LEN} bytes"));
    }
    if let Some(c) = id.chars().find(|c| c.is_whitespace() || c.is_control() || ",/\\*?[]".contains(*c)) {
        return Err(format!("a minion id must not contain {c:?} (no commas, white space, control or glob characters)"));
    }
    Ok(())
}

/// Checks an address SSH collectors connect to: a host name or IP address, never anything a
/// shell or an SSH option parser could read as more than one word.
pub fn check_manage_address(address: &str) -> Result<(), String> {
    if let Some(c) = address.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("an address must not contain {c:?} (white space or control characters)"));
    }
    if address.starts_with('-') {
        return Err("an address must not start with '-'".to_owned());
    }
    Ok(())
}

impl BusinessFields {
    /// The fields as the `business` section's JSON object.
    pub fn to_fields(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// Reads the `business` section's JSON object back; unknown or mistyped fields are ignored
    /// so an old history never fails to load. Custom values are kept as stored, whatever the
    /// definitions say now (a deleted field's values stay readable).
    pub fn from_fields(fields: &Map<String, Value>) -> Self {
        let mut out = BusinessFields::default();
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("custom", Value::Object(values)) => {
                    out.custom = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                }
                _ => {
                    let _ = out.set(key, value.clone(), &Definitions::default());
                }
            }
        }
        out
    }

    /// Sets one field from JSON, validating it. `null` clears (status goes back to racked, tags to
    /// none). `custom` takes an object of custom values, read by `definitions`; its keys are set or
    /// (null, empty) cleared one by one, the others kept.
    pub fn set(&mut self, field: &str, value: Value, definitions: &Definitions) -> Result<(), FieldError> {
        let text = |value: Value, max: usize| -> Result<Option<String>, FieldError> {
            match value {
                Value::Null => Ok(None),
                Value::String(s) => {
                    let trimmed = s.trim();
                    if trimmed.len() > max {
                        Err(field_error(field, format!("longer than {max} bytes")))
                    } else if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                        Err(field_error(field, "contains control characters"))
                    } else if trimmed.is_empty() {
                        Ok(None)
                    } else {
                        Ok(Some(trimmed.to_owned()))
                    }
                }
                _ => Err(field_error(field, "must be a string or null")),
            }
        };
        let port = |value: Value| -> Result<Option<u16>, FieldError> {
            match value {
                Value::Null => Ok(None),
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .map(Some)
                    .ok_or_else(|| field_error(field, "must be an integer from 1 to 65535")),
                Value::String(s) if s.trim().is_empty() => Ok(None),
                Value::String(s) => s
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Some)
                    .ok_or_else(|| field_error(field, "must be an integer from 1 to 65535")),
                _ => Err(field_error(field, "must be an integer")),
            }
        };
        match field {
            "asset_tag" => {
                let tag = text(value, MAX_ASSET_TAG_LEN)?;
                if let Some(tag) = &tag {
                    check_asset_tag(tag).map_err(|m| field_error(field, m))?;
                }
                self.asset_tag = tag;
            }
            "custom" => match value {
                Value::Object(patch) => {
                    definitions.apply(&mut self.custom, &patch).map_err(|e| field_error("custom", e.0))?;
                }
                Value::Null => self.custom.clear(),
                _ => return Err(field_error(field, "must be an object of custom field values by key")),
            },
            "idc" => self.idc = text(value, MAX_FIELD_LEN)?,
            "cabinet" => self.cabinet = text(value, MAX_FIELD_LEN)?,
            "cabinet_u" => {
                self.cabinet_u = port(value)?;
                if self.cabinet_u.is_some_and(|u| u > 100) {
                    return Err(field_error(field, "must be a rack unit from 1 to 100"));
                }
            }
            "business_unit" => self.business_unit = text(value, MAX_FIELD_LEN)?,
            "owner" => self.owner = text(value, MAX_FIELD_LEN)?,
            "status" => {
                self.status = match value {
                    Value::Null => AssetStatus::Racked,
                    Value::String(s) => AssetStatus::parse(s.trim())
                        .ok_or_else(|| field_error(field, "must be racked, online, offline or retired"))?,
                    _ => return Err(field_error(field, "must be a string")),
                }
            }
            "tags" => {
                let mut tags: Vec<String> = match value {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items
                        .into_iter()
                        .map(|item| text(item, 64))
                        .collect::<Result<Vec<_>, _>>()?
                        .into_iter()
                        .flatten()
                        .collect(),
                    Value::String(s) => s
                        .split(',')
                        .map(|t| text(Value::String(t.to_owned()), 64))
                        .collect::<Result<Vec<_>, _>>()?
                        .into_iter()
                        .flatten()
                        .collect(),
                    _ => return Err(field_error(field, "must be a list of strings")),
                };
                tags.sort();
                tags.dedup();
                if tags.len() > 50 {
                    return Err(field_error(field, "at most 50 tags"));
                }
                self.tags = tags;
            }
            "manage_address" => {
                let address = text(value, 253)?;
                if let Some(address) = &address {
                    check_manage_address(address).map_err(|m| field_error(field, m))?;
                }
                self.manage_address = address;
            }
            "ssh_port" => self.ssh_port = port(value)?,
            "salt_minion_id" => {
                let id = text(value, MAX_MINION_ID_LEN)?;
                if let Some(id) = &id {
                    check_minion_id(id).map_err(|m| field_error(field, m))?;
                }
                self.salt_minion_id = id;
            }
            "notes" => self.notes = text(value, MAX_NOTES_LEN)?,
            other => return Err(field_error(other, "not a business field")),
        }
        Ok(())
    }

    /// Applies a patch object (`{"owner": "ops", "tags": null, "custom": {...}}`), all or
    /// nothing; custom values are read by `definitions`.
    pub fn patched(&self, patch: &Map<String, Value>, definitions: &Definitions) -> Result<BusinessFields, FieldError> {
        let mut next = self.clone();
        for (field, value) in patch {
            next.set(field, value.clone(), definitions)?;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_validates_and_normalizes() {
        let fields = BusinessFields::default();
        let patch = json!({"owner": "  ops  ", "tags": ["b", "a", "b"], "ssh_port": "2222", "status": "online"});
        let next = fields.patched(patch.as_object().expect("object"), &Definitions::default()).expect("valid");
        assert_eq!(next.owner.as_deref(), Some("ops"));
        assert_eq!(next.tags, vec!["a", "b"]);
        assert_eq!(next.ssh_port, Some(2222));
        assert_eq!(next.status, AssetStatus::Online);
        assert!(fields.patched(json!({"status": "gone"}).as_object().expect("o"), &Definitions::default()).is_err());
        assert!(fields.patched(json!({"ssh_port": 70000}).as_object().expect("o"), &Definitions::default()).is_err());
        assert!(fields.patched(json!({"colour": "red"}).as_object().expect("o"), &Definitions::default()).is_err());
        // Minion ids and addresses reach command lines on collectors (security issue, point 13).
        for bad in ["a,b", "a b", "web*", "x?", "[ab]", "a/b", "a\\b", "a\u{7}", "a\tb", &"m".repeat(254)] {
            let patch = json!({"salt_minion_id": bad});
            assert!(fields.patched(patch.as_object().expect("o"), &Definitions::default()).is_err(), "{bad:?} refused");
        }
        let ok = fields
            .patched(json!({"salt_minion_id": "web-01.example.com"}).as_object().expect("o"), &Definitions::default())
            .expect("ok");
        assert_eq!(ok.salt_minion_id.as_deref(), Some("web-01.example.com"));
        for bad in ["10.0.0.1 -oProxyCommand=x", "-oProxyCommand=x", "host\u{1b}[2J"] {
            let patch = json!({"manage_address": bad});
            assert!(fields.patched(patch.as_object().expect("o"), &Definitions::default()).is_err(), "{bad:?} refused");
        }
    }

    #[test]
    fn asset_tags_print_as_barcodes_and_custom_values_follow_definitions() {
        let none = Definitions::default();
        let fields = BusinessFields::default();
        let tagged =
            fields.patched(json!({"asset_tag": " IT-2024-0001 "}).as_object().expect("o"), &none).expect("tag");
        assert_eq!(tagged.asset_tag.as_deref(), Some("IT-2024-0001"));
        for bad in ["IT 0001", "资产-1", &"T".repeat(65)] {
            assert!(fields.patched(json!({"asset_tag": bad}).as_object().expect("o"), &none).is_err(), "{bad:?}");
        }
        let mut defs = Definitions::default();
        for (key, label, field_type, _) in crate::custom_fields::FINANCE_SET {
            let def = crate::custom_fields::FieldDefinition {
                key: (*key).to_owned(),
                label: (*label).to_owned(),
                field_type: *field_type,
                choices: vec![],
                help: None,
            };
            defs.fields.insert((*key).to_owned(), def);
        }
        let patch = json!({"custom": {"purchase_date": "2024/3/1", "purchase_cost": "1200.50"}});
        let next = fields.patched(patch.as_object().expect("o"), &defs).expect("custom");
        assert_eq!(next.custom["purchase_date"], json!("2024-03-01"));
        assert_eq!(next.custom["purchase_cost"], json!("1200.5"));
        // A second patch touches only its keys; null clears one.
        let patch = json!({"custom": {"purchase_cost": null, "supplier": "Acme"}});
        let later = next.patched(patch.as_object().expect("o"), &defs).expect("custom");
        assert_eq!(later.custom.keys().collect::<Vec<_>>(), ["purchase_date", "supplier"]);
        let bad = json!({"custom": {"purchase_cost": "1,200"}});
        let error = next.patched(bad.as_object().expect("o"), &defs).expect_err("comma");
        assert!(error.to_string().contains("purchase_cost (Purchase cost)"), "{error}");
        // Stored objects read back whatever today's definitions are.
        assert_eq!(BusinessFields::from_fields(&later.to_fields()), later);
        assert!(!BusinessFields::default().to_fields().contains_key("custom"), "absent until set");
        assert!(!BusinessFields::default().to_fields().contains_key("asset_tag"), "absent until set");
    }

    #[test]
    fn round_trips_through_section_fields() {
        let fields = BusinessFields { owner: Some("x".into()), tags: vec!["t".into()], ..Default::default() };
        assert_eq!(BusinessFields::from_fields(&fields.to_fields()), fields);
    }
}
