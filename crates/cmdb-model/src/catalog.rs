//! What each built-in field is called and what it is measured in.
//!
//! The stored state keeps the collectors' keys and raw numbers (`capacity_bytes`, `sn`,
//! `speed_mts`) because they are the evidence; people read labels and units. This catalog is the
//! one place that says how a field reads: the asset page shows [`show`]'s text, and the audit
//! workbook makes one typed column per [`Unit`] (numbers stay numbers there). A key the catalog
//! does not know (a field a newer agent sends) is shown under its own name, never dropped.

use serde_json::Value;

/// How a field's value is measured, and so how it reads and which workbook columns it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Free text.
    Text,
    /// A storage size in bytes, read in decimal GB/TB as drives are labelled.
    StorageBytes,
    /// A memory size in MiB, read in binary GiB as DIMMs are sold.
    MemoryMib,
    /// A plain count or number without a unit.
    Number,
    /// Transfers per second (memory speed), in MT/s.
    MegaTransfers,
    /// A size in bytes that is not storage (an MTU): the number as it is.
    PlainBytes,
    /// Yes or no.
    Flag,
    /// A list of texts (addresses), shown as a list.
    List,
}

/// One field: its stored key, its label, its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The key in the stored state.
    pub key: &'static str,
    /// What a person reads.
    pub label: &'static str,
    /// How it is measured.
    pub unit: Unit,
}

const fn field(key: &'static str, label: &'static str, unit: Unit) -> Field {
    Field { key, label, unit }
}

/// A built-in section: its title, its own fields, and, for component sections, its components'
/// key and fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// The section's name in reports (`disk`).
    pub name: &'static str,
    /// Its title (`Disks`).
    pub title: &'static str,
    /// Fields of the section itself, in reading order.
    pub fields: &'static [Field],
    /// What a component's key is (`Slot`); empty for sections without components.
    pub key_label: &'static str,
    /// Fields of each component, in reading order (the key field excluded).
    pub component_fields: &'static [Field],
    /// One component and several, as a sentence counts them (`DIMM`, `DIMMs`); empty for
    /// sections without components.
    pub nouns: (&'static str, &'static str),
}

/// Every built-in section, in the order a page shows them.
pub const SECTIONS: &[Section] = &[
    Section {
        name: crate::state::HOST_SECTION,
        title: "Reported identity",
        fields: &[
            field("hostname", "Host name", Unit::Text),
            field("previous_hostname", "Previous host name", Unit::Text),
            field("machine_id", "Machine id", Unit::Text),
        ],
        key_label: "",
        component_fields: &[],
        nouns: ("", ""),
    },
    Section {
        name: crate::state::IDENTITY_SECTION,
        title: "Record",
        fields: &[field("deleted_at", "Deleted", Unit::Text), field("merged_into", "Merged into asset", Unit::Number)],
        key_label: "",
        component_fields: &[],
        nouns: ("", ""),
    },
    Section {
        name: crate::state::BUSINESS_SECTION,
        title: "Business fields",
        fields: &[
            field("asset_tag", "Asset tag", Unit::Text),
            field("idc", "IDC", Unit::Text),
            field("cabinet", "Cabinet", Unit::Text),
            field("cabinet_u", "Cabinet U", Unit::Number),
            field("business_unit", "Business unit", Unit::Text),
            field("owner", "Owner", Unit::Text),
            field("status", "Status", Unit::Text),
            field("tags", "Tags", Unit::List),
            field("manage_address", "Manage address", Unit::Text),
            field("ssh_port", "SSH port", Unit::Number),
            field("salt_minion_id", "Salt minion id", Unit::Text),
            field("notes", "Notes", Unit::Text),
            field("custom", "Custom field", Unit::Text),
        ],
        key_label: "",
        component_fields: &[],
        nouns: ("", ""),
    },
    Section {
        name: "basic",
        title: "Operating system",
        fields: &[
            field("hostname", "Host name", Unit::Text),
            field("os_name", "OS", Unit::Text),
            field("os_version", "OS version", Unit::Text),
            field("os_platform", "Platform", Unit::Text),
            field("kernel", "Kernel", Unit::Text),
            field("arch", "Architecture", Unit::Text),
        ],
        key_label: "",
        component_fields: &[],
        nouns: ("", ""),
    },
    Section {
        name: "cpu",
        title: "Processors",
        fields: &[
            field("cpu_model", "Model", Unit::Text),
            field("cpu_physical_count", "Sockets", Unit::Number),
            field("cpu_count", "Logical CPUs", Unit::Number),
        ],
        key_label: "",
        component_fields: &[],
        nouns: ("", ""),
    },
    Section {
        name: "board",
        title: "System board",
        fields: &[
            field("manufacturer", "Manufacturer", Unit::Text),
            field("model", "Model", Unit::Text),
            field("sn", "Serial number", Unit::Text),
            field("uuid", "UUID", Unit::Text),
        ],
        key_label: "",
        component_fields: &[],
        nouns: ("", ""),
    },
    Section {
        name: "memory",
        title: "Memory",
        fields: &[field("total_mb", "Total", Unit::MemoryMib), field("slots_total", "Slots", Unit::Number)],
        key_label: "Slot",
        component_fields: &[
            field("capacity_mb", "Size", Unit::MemoryMib),
            field("type", "Type", Unit::Text),
            field("speed_mts", "Speed", Unit::MegaTransfers),
            field("manufacturer", "Manufacturer", Unit::Text),
            field("part_number", "Part number", Unit::Text),
            field("sn", "Serial number", Unit::Text),
        ],
        nouns: ("DIMM", "DIMMs"),
    },
    Section {
        name: "disk",
        title: "Disks",
        fields: &[],
        key_label: "Slot",
        component_fields: &[
            field("capacity_bytes", "Capacity", Unit::StorageBytes),
            field("media", "Media", Unit::Text),
            field("pd_type", "Interface", Unit::Text),
            field("vendor", "Vendor", Unit::Text),
            field("model", "Model", Unit::Text),
            field("sn", "Serial number", Unit::Text),
            field("firmware", "Firmware", Unit::Text),
        ],
        nouns: ("disk", "disks"),
    },
    Section {
        name: "nic",
        title: "Network interfaces",
        fields: &[],
        key_label: "Interface",
        component_fields: &[
            field("hwaddr", "MAC address", Unit::Text),
            field("up", "Up", Unit::Flag),
            field("carrier", "Link", Unit::Flag),
            field("mtu", "MTU", Unit::PlainBytes),
            field("master", "Member of", Unit::Text),
            field("ipv4", "IPv4", Unit::List),
            field("ipv6", "IPv6", Unit::List),
        ],
        nouns: ("NIC", "NICs"),
    },
];

/// The catalog entry of a built-in section.
pub fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name == name)
}

/// `count` components of `section` as a sentence says it (`2 disks`, `1 DIMM`); the section
/// name for sections the catalog does not know (`3 gpu`).
pub fn count_of(section: &str, count: usize) -> String {
    match self::section(section).map(|s| s.nouns) {
        Some((one, _)) if count == 1 && !one.is_empty() => format!("1 {one}"),
        Some((_, many)) if !many.is_empty() => format!("{count} {many}"),
        _ => format!("{count} {section}"),
    }
}

/// A label inside a sentence: its first letter in lower case unless the first word is an acronym
/// (`serial number`, `cabinet U`, but `IDC`, `MAC address`, `SSH port`).
pub fn in_sentence(label: &str) -> String {
    let mut chars = label.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(label.chars().skip(1)).collect()
        }
        _ => label.to_owned(),
    }
}

/// The label of `key` in `fields`, or the key itself when the catalog does not know it.
pub fn label<'a>(fields: &'static [Field], key: &'a str) -> &'a str {
    fields.iter().find(|f| f.key == key).map_or(key, |f| f.label)
}

/// A value as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Shown {
    /// The text (`300 GB`, `16 GiB`, `yes`).
    pub text: String,
    /// The exact value where the text rounds (`299,999,999,000 bytes`), for a hover.
    pub exact: Option<String>,
    /// The items of a list, each on its own line; empty for a value that is not a list.
    pub items: Vec<String>,
}

impl Shown {
    fn text(text: String) -> Shown {
        Shown { text, ..Shown::default() }
    }
}

/// `value` of a field measured in `unit`, as a person reads it. A value of another type than the
/// unit expects (an older agent's string, say) is shown as it is.
pub fn show(unit: Unit, value: &Value) -> Shown {
    match (unit, value) {
        (_, Value::Null) => Shown::default(),
        (Unit::StorageBytes, Value::Number(n)) if n.as_u64().is_some() => {
            let bytes = n.as_u64().unwrap_or_default();
            Shown { text: storage(bytes), exact: Some(format!("{} bytes", grouped(bytes))), items: Vec::new() }
        }
        (Unit::MemoryMib, Value::Number(n)) if n.as_u64().is_some() => {
            let mib = n.as_u64().unwrap_or_default();
            let text = memory(mib);
            let exact = (mib >= 1024).then(|| format!("{} MiB", grouped(mib)));
            Shown { text, exact, items: Vec::new() }
        }
        (Unit::MegaTransfers, Value::Number(n)) => Shown::text(format!("{n} MT/s")),
        (Unit::Flag, Value::Bool(b)) => Shown::text(if *b { "yes" } else { "no" }.to_owned()),
        (_, Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(plain).collect();
            Shown { text: items.join(", "), exact: None, items }
        }
        (_, other) => Shown::text(plain(other)),
    }
}

/// A JSON value as plain text: strings without quotes, the rest as JSON.
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Bytes in decimal units with three significant digits, as drives are labelled (a drive sold as
/// 300 GB holds 299,999,999,000 bytes).
pub fn storage(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    // 999.5 GB rounds to 1,000 GB: read it as 1 TB instead.
    while value >= 999.5 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} bytes");
    }
    format!("{} {}", significant(value), UNITS[unit])
}

/// MiB in binary units, as DIMMs are sold: whole GiB where they are whole, else two decimals.
pub fn memory(mib: u64) -> String {
    if mib < 1024 {
        return format!("{mib} MiB");
    }
    let gib = mib as f64 / 1024.0;
    if mib.is_multiple_of(1024) { format!("{} GiB", mib / 1024) } else { format!("{} GiB", trimmed(gib, 2)) }
}

/// Storage bytes as decimal GB, for a numeric workbook column (two decimals).
pub fn gigabytes(bytes: u64) -> f64 {
    (bytes as f64 / 1e7).round() / 100.0
}

/// Memory MiB as GiB, for a numeric workbook column (two decimals).
pub fn gibibytes(mib: u64) -> f64 {
    (mib as f64 / 1024.0 * 100.0).round() / 100.0
}

/// Three significant digits, trailing zeros dropped.
fn significant(value: f64) -> String {
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    trimmed(value, decimals)
}

fn trimmed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

/// `n` with thousands separators (`299,999,999,000`).
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_reads_as_drives_are_labelled() {
        assert_eq!(storage(299_999_999_000), "300 GB");
        assert_eq!(storage(4_000_787_030_016), "4 TB");
        assert_eq!(storage(1_920_383_410_176), "1.92 TB");
        assert_eq!(storage(960_197_124_096), "960 GB");
        assert_eq!(storage(999_653_638_144), "1 TB");
        assert_eq!(storage(512), "512 bytes");
        assert_eq!(storage(146_815_737_856), "147 GB");
        assert_eq!(storage(0), "0 bytes");
    }

    #[test]
    fn memory_reads_in_binary_units() {
        assert_eq!(memory(16_384), "16 GiB");
        assert_eq!(memory(196_608), "192 GiB");
        assert_eq!(memory(512), "512 MiB");
        assert_eq!(memory(1536), "1.5 GiB");
        assert_eq!(memory(15_885), "15.51 GiB");
    }

    #[test]
    fn shown_values_carry_the_exact_figure_and_lists() {
        let disk = show(Unit::StorageBytes, &json!(299_999_999_000u64));
        assert_eq!((disk.text.as_str(), disk.exact.as_deref()), ("300 GB", Some("299,999,999,000 bytes")));
        let dimm = show(Unit::MemoryMib, &json!(32768));
        assert_eq!((dimm.text.as_str(), dimm.exact.as_deref()), ("32 GiB", Some("32,768 MiB")));
        let ips = show(Unit::List, &json!(["10.20.0.11/24", "10.20.0.12/24"]));
        assert_eq!(ips.items, vec!["10.20.0.11/24", "10.20.0.12/24"]);
        assert_eq!(show(Unit::Flag, &json!(true)).text, "yes");
        assert_eq!(show(Unit::Flag, &json!(false)).text, "no");
        assert_eq!(show(Unit::MegaTransfers, &json!(2933)).text, "2933 MT/s");
        // A value of an unexpected type reads as it is.
        assert_eq!(show(Unit::StorageBytes, &json!("300G")).text, "300G");
        assert_eq!(show(Unit::Text, &Value::Null).text, "");
    }

    #[test]
    fn workbook_numbers_round_to_two_decimals() {
        assert_eq!(gigabytes(299_999_999_000), 300.0);
        assert_eq!(gigabytes(1_920_383_410_176), 1920.38);
        assert_eq!(gibibytes(16_384), 16.0);
        assert_eq!(gibibytes(1536), 1.5);
    }

    #[test]
    fn every_component_section_is_a_builtin_component_list() {
        for s in SECTIONS {
            let pseudo = [crate::state::HOST_SECTION, crate::state::BUSINESS_SECTION, crate::state::IDENTITY_SECTION];
            assert!(crate::report::is_builtin(s.name) || pseudo.contains(&s.name), "{}", s.name);
            let has_components = crate::report::component_list(s.name).is_some();
            assert_eq!(has_components, !s.component_fields.is_empty(), "{}", s.name);
            if let Some((_, key)) = crate::report::component_list(s.name) {
                assert!(s.component_fields.iter().all(|f| f.key != key), "{}: the key is not a column", s.name);
            }
        }
        assert_eq!(label(section("disk").map_or(&[], |s| s.component_fields), "sn"), "Serial number");
        assert_eq!(label(&[], "new_field"), "new_field");
    }

    /// Every key the typed sections serialize has a label (a field added to a collector without
    /// one would read as a raw key on every page).
    #[test]
    fn the_catalog_names_every_field_the_collectors_report() {
        use crate::report::{BasicData, BoardData, CpuData, Disk, Interface, MemoryData, MemoryModule};
        let keys = |v: Value| -> Vec<String> { v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default() };
        let known = |name: &str, component: bool| -> Vec<&'static str> {
            let s = section(name).expect("in the catalog");
            let fields = if component { s.component_fields } else { s.fields };
            fields.iter().map(|f| f.key).collect()
        };
        let cases = [
            ("basic", false, serde_json::to_value(BasicData::default())),
            ("cpu", false, serde_json::to_value(CpuData::default())),
            ("board", false, serde_json::to_value(BoardData::default())),
            ("memory", false, serde_json::to_value(MemoryData::default())),
            ("memory", true, serde_json::to_value(MemoryModule::default())),
            ("disk", true, serde_json::to_value(Disk::default())),
            ("nic", true, serde_json::to_value(Interface::default())),
        ];
        for (name, component, value) in cases {
            let list = crate::report::component_list(name);
            for key in keys(value.expect("serializes")) {
                let is_list_or_key = list.is_some_and(|(l, k)| key == l || key == k);
                assert!(is_list_or_key || known(name, component).contains(&key.as_str()), "{name}: {key} has no label");
            }
        }
    }

    #[test]
    fn every_business_field_has_a_label_and_labels_read_in_sentences() {
        let business = section(crate::state::BUSINESS_SECTION).expect("business");
        for name in crate::business::FIELD_NAMES {
            assert!(business.fields.iter().any(|f| f.key == *name), "{name} has no label");
        }
        assert_eq!(in_sentence("Serial number"), "serial number");
        assert_eq!(in_sentence("Cabinet U"), "cabinet U");
        assert_eq!(in_sentence("IDC"), "IDC");
        assert_eq!(in_sentence("MAC address"), "MAC address");
    }
}
