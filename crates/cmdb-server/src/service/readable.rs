//! An asset's sections as a person reads them: labels and units from the model's catalog
//! ([`cmdb_model::catalog`]) instead of the collectors' keys and raw numbers. The asset page shows
//! these; the stored state (and the API) keep the raw values, which are the evidence.

use cmdb_model::catalog::{self, Field, Shown, Unit};
use serde::Serialize;
use serde_json::{Map, Value};

/// One labelled value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Labelled {
    /// The label (`Capacity`), or the key when the catalog does not know it.
    pub label: String,
    /// The value as read.
    pub value: Shown,
}

/// A section shown as labelled values (the operating system, processors, the board, an
/// external collector's section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FactSection {
    /// The section's name in reports.
    pub section: String,
    /// Its title.
    pub title: String,
    /// Its fields, in the catalog's order, then any it does not name.
    pub fields: Vec<Labelled>,
}

/// A component section as a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentTable {
    /// The section's name in reports.
    pub section: String,
    /// Its title.
    pub title: String,
    /// Column labels, the component's key first.
    pub columns: Vec<String>,
    /// One row per component, a cell per column.
    pub rows: Vec<Vec<Shown>>,
    /// The section's own fields (memory's total and slot count).
    pub fields: Vec<Labelled>,
}

/// `data` (a section as reported: an object) as labelled values; `skip` leaves out one key.
pub fn fact_section(name: &str, data: &Value) -> FactSection {
    let entry = catalog::section(name);
    let fields = match data {
        Value::Object(map) => labelled(map, entry.map_or(&[], |s| s.fields), None),
        other => vec![Labelled { label: String::new(), value: catalog::show(Unit::Text, other) }],
    };
    FactSection {
        section: name.to_owned(),
        title: entry.map_or_else(|| name.to_owned(), |s| s.title.to_owned()),
        fields,
    }
}

/// A component section (`data` as reported, its components under `list_key`, each keyed by
/// `key_field`) as a table: the catalog's columns that any component has, in its order, then the
/// keys it does not name, in first-seen order.
pub fn component_table(name: &str, list_key: &str, key_field: &str, data: &Value) -> ComponentTable {
    let entry = catalog::section(name);
    let known: &[Field] = entry.map_or(&[], |s| s.component_fields);
    let items: Vec<&Map<String, Value>> = data
        .get(list_key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let present = |key: &str| items.iter().any(|item| item.get(key).is_some_and(|v| !v.is_null()));
    let mut columns: Vec<(String, Unit)> =
        known.iter().filter(|f| present(f.key)).map(|f| (f.key.to_owned(), f.unit)).collect();
    for item in &items {
        for key in item.keys() {
            if key != key_field && !known.iter().any(|f| f.key == key) && !columns.iter().any(|(k, _)| k == key) {
                columns.push((key.clone(), Unit::Text));
            }
        }
    }
    let rows = items
        .iter()
        .map(|item| {
            let key = item.get(key_field).map_or_else(Shown::default, |v| catalog::show(Unit::Text, v));
            std::iter::once(key)
                .chain(
                    columns
                        .iter()
                        .map(|(k, unit)| item.get(k).map_or_else(Shown::default, |v| catalog::show(*unit, v))),
                )
                .collect()
        })
        .collect();
    let key_label = entry.map_or(key_field, |s| s.key_label);
    let mut labels = vec![key_label.to_owned()];
    labels.extend(columns.iter().map(|(k, _)| catalog::label(known, k).to_owned()));
    let fields = match data {
        Value::Object(map) => labelled(map, entry.map_or(&[], |s| s.fields), Some(list_key)),
        _ => Vec::new(),
    };
    ComponentTable {
        section: name.to_owned(),
        title: entry.map_or_else(|| name.to_owned(), |s| s.title.to_owned()),
        columns: labels,
        rows,
        fields,
    }
}

/// The fields of `map` (but `skip`) labelled: the catalog's first, in its order, then the rest.
fn labelled(map: &Map<String, Value>, known: &'static [Field], skip: Option<&str>) -> Vec<Labelled> {
    let mut out: Vec<Labelled> = known
        .iter()
        .filter_map(|f| map.get(f.key).map(|v| Labelled { label: f.label.to_owned(), value: catalog::show(f.unit, v) }))
        .collect();
    for (key, value) in map {
        if Some(key.as_str()) != skip && !known.iter().any(|f| f.key == key) {
            out.push(Labelled { label: key.clone(), value: catalog::show(Unit::Text, value) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn disks_read_with_labels_and_units() {
        let data = json!({"disks": [
            {"slot": "32:0", "capacity_bytes": 299_999_999_000u64, "sn": "D0", "pd_type": "SAS", "media": "hdd", "firmware": null},
            {"slot": "32:1", "capacity_bytes": 4_000_787_030_016u64, "sn": "D1", "pd_type": "SATA", "media": "hdd", "future": 1}
        ]});
        let table = component_table("disk", "disks", "slot", &data);
        assert_eq!(table.title, "Disks");
        // Firmware is null everywhere: no column. An unknown key keeps its name, last.
        assert_eq!(table.columns, ["Slot", "Capacity", "Media", "Interface", "Serial number", "future"]);
        assert_eq!(table.rows[0][0].text, "32:0");
        assert_eq!(table.rows[0][1].text, "300 GB");
        assert_eq!(table.rows[0][1].exact.as_deref(), Some("299,999,999,000 bytes"));
        assert_eq!(table.rows[1][1].text, "4 TB");
        assert_eq!(table.rows[0][5].text, "");
    }

    #[test]
    fn interfaces_show_lists_and_words() {
        let data = json!({"interfaces": [
            {"name": "eth0", "hwaddr": "00:1c:42:a5:57:7a", "up": true, "carrier": false, "mtu": 1500,
             "ipv4": ["10.20.0.11/24", "10.20.0.12/24"], "ipv6": []}
        ]});
        let table = component_table("nic", "interfaces", "name", &data);
        assert_eq!(table.columns, ["Interface", "MAC address", "Up", "Link", "MTU", "IPv4", "IPv6"]);
        let row = &table.rows[0];
        assert_eq!((row[2].text.as_str(), row[3].text.as_str()), ("yes", "no"));
        assert_eq!(row[5].items, ["10.20.0.11/24", "10.20.0.12/24"]);
    }

    #[test]
    fn memory_reads_in_gib_with_its_totals() {
        let data = json!({"total_mb": 196_608, "slots_total": 24, "modules": [
            {"slot": "A1", "capacity_mb": 16384, "type": "DDR4", "speed_mts": 2933}
        ]});
        let table = component_table("memory", "modules", "slot", &data);
        assert_eq!(table.rows[0][1].text, "16 GiB");
        assert_eq!(table.rows[0][3].text, "2933 MT/s");
        let totals: Vec<(&str, &str)> =
            table.fields.iter().map(|f| (f.label.as_str(), f.value.text.as_str())).collect();
        assert_eq!(totals, [("Total", "192 GiB"), ("Slots", "24")]);
    }

    #[test]
    fn fact_sections_use_labels_and_keep_unknown_keys() {
        let facts = fact_section("cpu", &json!({"cpu_count": 8, "cpu_model": "AMD EPYC", "extra": "x"}));
        assert_eq!(facts.title, "Processors");
        let labels: Vec<&str> = facts.fields.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(labels, ["Model", "Logical CPUs", "extra"]);
        let external = fact_section("rack_power", &json!({"watts": 410}));
        assert_eq!((external.title.as_str(), external.fields[0].label.as_str()), ("rack_power", "watts"));
    }
}
