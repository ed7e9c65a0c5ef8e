//! The diff engine and its inverse.
//!
//! [`diff_report`] compares an asset's stored state with a validated report and returns the changes
//! the report causes; [`apply`] applies one change to a state; [`replay`] folds a history into a
//! state from nothing. The contract that makes the history auditable is
//! `replay(history) == stored state`, which holds because the server writes the state by applying
//! exactly the changes it records (and the property tests here and in the server check it).
//!
//! A change addresses a section, optionally a component of it, and a JSON pointer inside that (""
//! for the whole section or component). Old and new values are `None` where nothing existed, which
//! is not the same as a JSON `null` value.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog;
use crate::identity::normalize_machine_id;
use crate::report::{Report, SectionResult, pointer_token};
use crate::state::{
    ApplyError, AssetState, BUSINESS_SECTION, HOST_SECTION, IDENTITY_SECTION, SectionState, remove_at, set_at,
};

/// What happened to the addressed thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It did not exist before.
    Added,
    /// It no longer exists.
    Removed,
    /// Its value changed.
    Changed,
}

impl Action {
    /// The lowercase name stored in change records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Removed => "removed",
            Action::Changed => "changed",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "added" => Some(Action::Added),
            "removed" => Some(Action::Removed),
            "changed" => Some(Action::Changed),
            _ => None,
        }
    }
}

/// One change to an asset's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeOp {
    /// Section name (including the pseudo-sections `host` and `business`).
    pub section: String,
    /// Component key, when the change concerns a component.
    pub component: Option<String>,
    /// RFC 6901 pointer inside the section fields or the component ("" = all of it).
    pub path: String,
    /// Added, removed or changed.
    pub action: Action,
    /// The value before, `None` when there was nothing.
    pub old: Option<Value>,
    /// The value after, `None` when nothing is left.
    pub new: Option<Value>,
}

impl ChangeOp {
    fn new(
        section: &str,
        component: Option<&str>,
        path: String,
        action: Action,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Self {
        ChangeOp { section: section.to_owned(), component: component.map(str::to_owned), path, action, old, new }
    }

    /// A readable sentence for people, e.g. `disk 32:1 serial number changed from D1 to ZA1001RPL`
    /// or `disk 32:0 capacity changed from 300 GB to 600 GB`: field names and units from the
    /// [`crate::catalog`], so a sentence reads like the asset page.
    pub fn sentence(&self) -> String {
        // What people decided about the record itself reads as the decision.
        if self.section == IDENTITY_SECTION && self.component.is_none() {
            let text = |v: &Option<Value>| match v {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            match (self.path.as_str(), self.action) {
                ("/deleted_at", Action::Added) => return format!("record deleted at {}", text(&self.new)),
                ("/deleted_at", Action::Removed) => return "record restored".to_owned(),
                ("/merged_into", Action::Added) => return format!("merged into asset {}", text(&self.new)),
                _ => {}
            }
        }
        if self.section == IDENTITY_SECTION
            && let Some(key) = self.component.as_deref().and_then(|k| k.strip_prefix("alias:"))
            && self.path.is_empty()
            && self.action == Action::Added
        {
            let name = self.new.as_ref().and_then(|v| v.get("hostname")).and_then(Value::as_str).unwrap_or("?");
            return format!("asset {key} ({name}) merged into this one");
        }
        let subject = match (&self.component, self.section.as_str()) {
            (Some(key), section) => format!("{section} {key}"),
            (None, HOST_SECTION) | (None, BUSINESS_SECTION) | (None, IDENTITY_SECTION) => String::new(),
            (None, section) => section.to_owned(),
        };
        let field = self.field();
        let label = match (field, self.path.strip_prefix("/custom/")) {
            (Some(f), _) => catalog::in_sentence(f.label),
            // A custom field's label lives in the server's definitions; its key names it here.
            (None, Some(key)) if self.section == BUSINESS_SECTION => format!("custom field {key}"),
            (None, _) => self.path.trim_start_matches('/').replace('/', ".").replace("~1", "/").replace("~0", "~"),
        };
        let what = match (subject.is_empty(), label.is_empty()) {
            (true, true) => self.section.clone(),
            (true, false) => label,
            (false, true) => subject,
            (false, false) => format!("{subject} {label}"),
        };
        let unit = field.map_or(catalog::Unit::Text, |f| f.unit);
        match self.action {
            Action::Added if self.path.is_empty() => match self.new.as_ref().map(|v| summarize(&self.section, v)) {
                Some(summary) if !summary.is_empty() => format!("{what} added ({summary})"),
                _ => format!("{what} added"),
            },
            Action::Removed if self.path.is_empty() => match self.old.as_ref().map(|v| summarize(&self.section, v)) {
                Some(summary) if !summary.is_empty() => format!("{what} removed ({summary})"),
                _ => format!("{what} removed"),
            },
            Action::Added => format!("{what} set to {}", show(unit, self.new.as_ref())),
            Action::Removed => format!("{what} removed (was {})", show(unit, self.old.as_ref())),
            Action::Changed => {
                let (mut old, mut new) = (show(unit, self.old.as_ref()), show(unit, self.new.as_ref()));
                // Rounded figures that read alike (300 GB to 300 GB) say the exact ones.
                if old == new {
                    (old, new) = (exact(unit, self.old.as_ref()), exact(unit, self.new.as_ref()));
                }
                format!("{what} changed from {old} to {new}")
            }
        }
    }

    /// The catalog's entry for the changed field: a top-level field of a component or section.
    fn field(&self) -> Option<&'static catalog::Field> {
        let key = self.path.strip_prefix('/').filter(|k| !k.is_empty() && !k.contains('/'))?;
        let section = catalog::section(&self.section)?;
        let fields = if self.component.is_some() { section.component_fields } else { section.fields };
        fields.iter().find(|f| f.key == key)
    }
}

/// A value in a sentence: in its unit where the catalog gives one, `(none)` for nothing.
fn show(unit: catalog::Unit, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "(none)".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) if items.is_empty() => "(none)".to_owned(),
        Some(other) => catalog::show(unit, other).text,
    }
}

/// A value exactly: the exact figure where the catalog rounds.
fn exact(unit: catalog::Unit, value: Option<&Value>) -> String {
    match value.map(|v| catalog::show(unit, v)) {
        Some(catalog::Shown { exact: Some(exact), .. }) => exact,
        _ => show(catalog::Unit::Text, value),
    }
}

/// The few fields that identify a component or section in a sentence, in a fixed order, each
/// as a person reads it (`SEAGATE, ST300MM0006, 300 GB, serial D1`).
fn summarize(section: &str, value: &Value) -> String {
    const KEYS: &[&str] = &[
        "manufacturer",
        "vendor",
        "model",
        "cpu_model",
        "os_name",
        "os_version",
        "capacity_bytes",
        "capacity_mb",
        "type",
        "hwaddr",
        "sn",
        "hostname",
        "status",
    ];
    let Value::Object(map) = value else { return show(catalog::Unit::Text, Some(value)) };
    let unit_of = |key: &str| {
        catalog::section(section)
            .and_then(|s| s.component_fields.iter().chain(s.fields).find(|f| f.key == key))
            .map_or(catalog::Unit::Text, |f| f.unit)
    };
    KEYS.iter()
        .filter_map(|key| match map.get(*key) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.is_empty() => None,
            Some(v) => Some(match *key {
                "sn" => format!("serial {}", show(catalog::Unit::Text, Some(v))),
                "hwaddr" => format!("MAC {}", show(catalog::Unit::Text, Some(v))),
                "hostname" => format!("host name {}", show(catalog::Unit::Text, Some(v))),
                "status" => format!("status {}", show(catalog::Unit::Text, Some(v))),
                _ => show(unit_of(key), Some(v)),
            }),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends the changes that turn fields `old` into `new`, recursing into nested objects.
fn diff_fields(
    section: &str,
    component: Option<&str>,
    prefix: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    out: &mut Vec<ChangeOp>,
) {
    for (key, old_value) in old {
        let path = format!("{prefix}/{}", pointer_token(key));
        match new.get(key) {
            None => out.push(ChangeOp::new(section, component, path, Action::Removed, Some(old_value.clone()), None)),
            Some(new_value) if new_value == old_value => {}
            Some(Value::Object(new_map)) if old_value.is_object() => {
                if let Value::Object(old_map) = old_value {
                    diff_fields(section, component, &path, old_map, new_map, out);
                }
            }
            Some(new_value) => out.push(ChangeOp::new(
                section,
                component,
                path,
                Action::Changed,
                Some(old_value.clone()),
                Some(new_value.clone()),
            )),
        }
    }
    for (key, new_value) in new {
        if !old.contains_key(key) {
            let path = format!("{prefix}/{}", pointer_token(key));
            out.push(ChangeOp::new(section, component, path, Action::Added, None, Some(new_value.clone())));
        }
    }
}

/// Appends the changes that turn section `old` (absent when `None`) into `new`.
pub fn diff_section(name: &str, old: Option<&SectionState>, new: &SectionState, out: &mut Vec<ChangeOp>) {
    match old {
        None => {
            out.push(ChangeOp::new(
                name,
                None,
                String::new(),
                Action::Added,
                None,
                Some(Value::Object(new.fields.clone())),
            ));
            for (key, component) in &new.components {
                out.push(ChangeOp::new(
                    name,
                    Some(key),
                    String::new(),
                    Action::Added,
                    None,
                    Some(Value::Object(component.clone())),
                ));
            }
        }
        Some(old) => {
            diff_fields(name, None, "", &old.fields, &new.fields, out);
            for (key, old_component) in &old.components {
                match new.components.get(key) {
                    None => out.push(ChangeOp::new(
                        name,
                        Some(key),
                        String::new(),
                        Action::Removed,
                        Some(Value::Object(old_component.clone())),
                        None,
                    )),
                    Some(new_component) => diff_fields(name, Some(key), "", old_component, new_component, out),
                }
            }
            for (key, new_component) in &new.components {
                if !old.components.contains_key(key) {
                    out.push(ChangeOp::new(
                        name,
                        Some(key),
                        String::new(),
                        Action::Added,
                        None,
                        Some(Value::Object(new_component.clone())),
                    ));
                }
            }
        }
    }
}

/// The `host` pseudo-section a report implies: its host name, and its machine id when it knows
/// one (an agent that cannot read /etc/machine-id does not erase what an earlier report said).
pub fn host_section(stored: &AssetState, report: &Report) -> SectionState {
    let machine_id = report
        .host
        .machine_id
        .as_deref()
        .and_then(normalize_machine_id)
        .map(Value::String)
        .or_else(|| stored.field(HOST_SECTION, "machine_id").cloned())
        .unwrap_or(Value::Null);
    let mut fields = Map::new();
    fields.insert("hostname".to_owned(), Value::String(report.host.hostname.clone()));
    fields.insert("machine_id".to_owned(), machine_id);
    SectionState::from_fields(fields)
}

/// The changes a report causes on `stored`. Sections the report lacks or reports as failed are
/// untouched; an ok section replaces the stored one entirely (an empty list removes components).
pub fn diff_report(stored: &AssetState, report: &Report) -> Vec<ChangeOp> {
    let mut out = Vec::new();
    let host = host_section(stored, report);
    diff_section(HOST_SECTION, stored.sections.get(HOST_SECTION), &host, &mut out);
    for (name, result) in &report.sections {
        if let SectionResult::Ok(new) = result {
            diff_section(name, stored.sections.get(name), new, &mut out);
        }
    }
    out
}

fn object_value(value: Option<&Value>, what: &str) -> Result<Map<String, Value>, ApplyError> {
    match value {
        Some(Value::Object(map)) => Ok(map.clone()),
        _ => Err(ApplyError::Malformed(format!("{what} needs an object value"))),
    }
}

/// Applies one change to `state`, refusing changes that do not fit it (which would mean the
/// history and the state have diverged).
pub fn apply(state: &mut AssetState, op: &ChangeOp) -> Result<(), ApplyError> {
    let name = &op.section;
    if op.component.is_none() && op.path.is_empty() {
        match op.action {
            Action::Added => {
                if state.sections.contains_key(name) {
                    return Err(ApplyError::Exists(format!("section {name:?}")));
                }
                let fields = object_value(op.new.as_ref(), "a section")?;
                state.sections.insert(name.clone(), SectionState::from_fields(fields));
            }
            Action::Removed => {
                state.sections.remove(name).ok_or_else(|| ApplyError::NoSection(name.clone()))?;
            }
            Action::Changed => {
                let fields = object_value(op.new.as_ref(), "a section")?;
                let section = state.sections.get_mut(name).ok_or_else(|| ApplyError::NoSection(name.clone()))?;
                section.fields = fields;
            }
        }
        return Ok(());
    }
    let section = state.sections.get_mut(name).ok_or_else(|| ApplyError::NoSection(name.clone()))?;
    let target = match &op.component {
        None => &mut section.fields,
        Some(key) if op.path.is_empty() => {
            match op.action {
                Action::Added => {
                    if section.components.contains_key(key) {
                        return Err(ApplyError::Exists(format!("component {key:?} of {name:?}")));
                    }
                    section.components.insert(key.clone(), object_value(op.new.as_ref(), "a component")?);
                }
                Action::Removed => {
                    section.components.remove(key).ok_or_else(|| ApplyError::NoComponent(name.clone(), key.clone()))?;
                }
                Action::Changed => {
                    let component = object_value(op.new.as_ref(), "a component")?;
                    let slot = section
                        .components
                        .get_mut(key)
                        .ok_or_else(|| ApplyError::NoComponent(name.clone(), key.clone()))?;
                    *slot = component;
                }
            }
            return Ok(());
        }
        Some(key) => {
            section.components.get_mut(key).ok_or_else(|| ApplyError::NoComponent(name.clone(), key.clone()))?
        }
    };
    match op.action {
        Action::Added | Action::Changed => {
            let value = op.new.clone().ok_or_else(|| ApplyError::Malformed(op.sentence()))?;
            set_at(target, &op.path, value)
        }
        Action::Removed => remove_at(target, &op.path).map(drop),
    }
}

/// Rebuilds a state from nothing by applying `history` in order.
pub fn replay<'a>(history: impl IntoIterator<Item = &'a ChangeOp>) -> Result<AssetState, ApplyError> {
    let mut state = AssetState::default();
    for op in history {
        apply(&mut state, op)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::parse_report;
    use proptest::prelude::*;
    use serde_json::json;

    fn report(hostname: &str, sections: Value) -> Report {
        let doc = json!({
            "schema": 1,
            "report_id": "7d3a5a4e-8f1b-4c1e-9a53-1f0c2b3d4e5f",
            "collected_at": "2026-11-25T10:00:00Z",
            "agent": {"version": "0.1.0", "mode": "ssh"},
            "host": {"hostname": hostname, "machine_id": "0123456789abcdef0123456789abcdef"},
            "sections": sections,
        });
        parse_report(&serde_json::to_vec(&doc).expect("json")).expect("valid report")
    }

    fn apply_all(state: &mut AssetState, ops: &[ChangeOp]) {
        for op in ops {
            apply(state, op).expect("diff output applies to the state it came from");
        }
    }

    #[test]
    fn first_report_adds_everything_and_replays() {
        let r = report(
            "web-01",
            json!({"disk": {"status": "ok", "data": {"disks": [{"slot": "0:1", "capacity_bytes": 10}]}}}),
        );
        let ops = diff_report(&AssetState::default(), &r);
        let actions: Vec<_> = ops.iter().map(|o| (o.section.as_str(), o.component.as_deref(), o.action)).collect();
        assert_eq!(
            actions,
            vec![("host", None, Action::Added), ("disk", None, Action::Added), ("disk", Some("0:1"), Action::Added)]
        );
        let state = replay(&ops).expect("replay");
        assert_eq!(state.sections["disk"].components["0:1"]["capacity_bytes"], json!(10));
        assert_eq!(state.str_field("host", "hostname"), Some("web-01"));
    }

    #[test]
    fn component_field_change_carries_old_and_new() {
        let first =
            report("h", json!({"disk": {"status": "ok", "data": {"disks": [{"slot": "0", "capacity_bytes": 1}]}}}));
        let second =
            report("h", json!({"disk": {"status": "ok", "data": {"disks": [{"slot": "0", "capacity_bytes": 2}]}}}));
        let mut state = AssetState::default();
        let ops = diff_report(&state, &first);
        apply_all(&mut state, &ops);
        let ops = diff_report(&state, &second);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].path, "/capacity_bytes");
        assert_eq!((ops[0].old.clone(), ops[0].new.clone()), (Some(json!(1)), Some(json!(2))));
        assert_eq!(ops[0].sentence(), "disk 0 capacity changed from 1 bytes to 2 bytes");
    }
    #[test]
    fn sentences_read_with_labels_and_units() {
        let op = |component: Option<&str>, path: &str, action, old: Option<Value>, new: Option<Value>| ChangeOp {
            section: "disk".into(),
            component: component.map(str::to_owned),
            path: path.into(),
            action,
            old,
            new,
        };
        let serial = op(Some("32:1"), "/sn", Action::Changed, Some(json!("D1")), Some(json!("ZA1001RPL")));
        assert_eq!(serial.sentence(), "disk 32:1 serial number changed from D1 to ZA1001RPL");
        let grown = op(
            Some("32:0"),
            "/capacity_bytes",
            Action::Changed,
            Some(json!(299_999_999_000u64)),
            Some(json!(600_000_000_000u64)),
        );
        assert_eq!(grown.sentence(), "disk 32:0 capacity changed from 300 GB to 600 GB");
        let nudged = op(
            Some("32:0"),
            "/capacity_bytes",
            Action::Changed,
            Some(json!(299_999_999_000u64)),
            Some(json!(300_000_000_000u64)),
        );
        assert_eq!(
            nudged.sentence(),
            "disk 32:0 capacity changed from 299,999,999,000 bytes to 300,000,000,000 bytes",
            "figures that round alike are given exactly"
        );
        let added = op(
            Some("32:1"),
            "",
            Action::Added,
            None,
            Some(
                json!({"slot": "32:1", "vendor": "SEAGATE", "model": "ST300MM0006", "capacity_bytes": 299_999_999_000u64, "sn": "D1"}),
            ),
        );
        assert_eq!(added.sentence(), "disk 32:1 added (SEAGATE, ST300MM0006, 300 GB, serial D1)");
        let business = |path: &str, old: Value, new: Value| ChangeOp {
            section: "business".into(),
            component: None,
            path: path.into(),
            action: Action::Changed,
            old: Some(old),
            new: Some(new),
        };
        assert_eq!(business("/cabinet_u", json!(null), json!(11)).sentence(), "cabinet U changed from (none) to 11");
        assert_eq!(
            business("/tags", json!([]), json!(["prod", "pci"])).sentence(),
            "tags changed from (none) to prod, pci"
        );
        assert_eq!(business("/idc", json!("sh-1"), json!("sh-2")).sentence(), "IDC changed from sh-1 to sh-2");
    }

    #[test]
    fn errored_and_missing_sections_leave_state_alone_but_empty_lists_remove() {
        let first = report("h", json!({"disk": {"status": "ok", "data": {"disks": [{"slot": "0"}]}}}));
        let mut state = AssetState::default();
        let ops = diff_report(&state, &first);
        apply_all(&mut state, &ops);
        let failed = report("h", json!({"disk": {"status": "error", "error": "MegaCli: not found"}}));
        assert!(diff_report(&state, &failed).is_empty());
        let missing = report("h", json!({}));
        assert!(diff_report(&state, &missing).is_empty());
        let empty = report("h", json!({"disk": {"status": "ok", "data": {"disks": []}}}));
        let ops = diff_report(&state, &empty);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].action, Action::Removed);
    }

    #[test]
    fn external_sections_are_diffed_by_json_pointer() {
        let first = report("h", json!({"raid": {"status": "ok", "data": {"a/b": {"x": 1, "y": [1]}, "gone": true}}}));
        let second = report("h", json!({"raid": {"status": "ok", "data": {"a/b": {"x": 2, "y": [1]}, "new": null}}}));
        let mut state = AssetState::default();
        let ops = diff_report(&state, &first);
        apply_all(&mut state, &ops);
        let ops = diff_report(&state, &second);
        let paths: Vec<_> = ops.iter().map(|o| (o.path.as_str(), o.action)).collect();
        assert_eq!(paths, vec![("/a~1b/x", Action::Changed), ("/gone", Action::Removed), ("/new", Action::Added)]);
        apply_all(&mut state, &ops);
        assert_eq!(state.sections["raid"].fields, second.ok_section("raid").expect("ok").fields);
    }

    #[test]
    fn unknown_machine_id_keeps_the_stored_one() {
        let first = report("h", json!({}));
        let mut state = AssetState::default();
        let ops = diff_report(&state, &first);
        apply_all(&mut state, &ops);
        let mut second = report("h", json!({}));
        second.host.machine_id = None;
        assert!(diff_report(&state, &second).is_empty());
    }

    #[test]
    fn apply_refuses_changes_that_do_not_fit() {
        let mut state = AssetState::default();
        let op = ChangeOp::new("disk", Some("0"), String::new(), Action::Removed, Some(json!({})), None);
        assert!(apply(&mut state, &op).is_err());
    }

    fn arb_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0u64..5).prop_map(|n| json!(n)),
            "[a-c/~]{0,2}".prop_map(Value::String),
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        arb_leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-c/~]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_sections() -> impl Strategy<Value = Value> {
        let disk = prop::collection::btree_map("[0-3]", (0u64..3, prop::option::of("[xy]")), 0..4).prop_map(|m| {
            let disks: Vec<Value> =
                m.into_iter().map(|(slot, (cap, sn))| json!({"slot": slot, "capacity_bytes": cap, "sn": sn})).collect();
            json!({"status": "ok", "data": {"disks": disks}})
        });
        let external = prop::collection::btree_map("[a-c]{1,2}", arb_json(), 0..4)
            .prop_map(|m| json!({"status": "ok", "data": Value::Object(m.into_iter().collect())}));
        let cpu = (prop::option::of(1u32..4), prop::option::of("[ab]"))
            .prop_map(|(count, model)| json!({"status": "ok", "data": {"cpu_count": count, "cpu_model": model}}));
        let failed = Just(json!({"status": "error", "error": "probe failed"}));
        (
            prop::option::of(prop_oneof![disk, failed.clone()]),
            prop::option::of(prop_oneof![external, failed.clone()]),
            prop::option::of(prop_oneof![cpu, failed]),
        )
            .prop_map(|(disk, ext, cpu)| {
                let mut sections = Map::new();
                if let Some(d) = disk {
                    sections.insert("disk".into(), d);
                }
                if let Some(e) = ext {
                    sections.insert("ext".into(), e);
                }
                if let Some(c) = cpu {
                    sections.insert("cpu".into(), c);
                }
                Value::Object(sections)
            })
    }

    proptest! {
        /// For any sequence of reports: applying each report's diff leaves the state equal to the
        /// expected merge (ok sections replaced, others kept), and replaying the whole history from
        /// nothing gives that same state.
        #[test]
        fn replay_rebuilds_state(reports in prop::collection::vec(("[ab]", arb_sections()), 1..8)) {
            let mut state = AssetState::default();
            let mut history = Vec::new();
            for (hostname, sections) in reports {
                let r = report(&hostname, sections);
                let ops = diff_report(&state, &r);
                let mut expected = state.clone();
                expected.sections.insert("host".into(), host_section(&state, &r));
                for (name, result) in &r.sections {
                    if let SectionResult::Ok(section) = result {
                        expected.sections.insert(name.clone(), section.clone());
                    }
                }
                apply_all(&mut state, &ops);
                prop_assert_eq!(&state, &expected);
                prop_assert!(diff_report(&state, &r).is_empty(), "a repeated report changes nothing");
                history.extend(ops);
            }
            prop_assert_eq!(replay(&history).expect("replay"), state);
        }
    }
}
