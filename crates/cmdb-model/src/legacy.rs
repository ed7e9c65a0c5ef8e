//! The course client's payload (AutoClient and its forks), mapped onto report format v1.
//!
//! The legacy client POSTs one key per plugin, each `{"status": bool, "data": ..., "error_msg"}`,
//! with memory, disk and NICs as objects keyed by slot or interface name, disk capacity in GB
//! (MegaCli's binary GB) and memory in MB. Variants name the NIC section `network`, the board
//! section `main_board`, put the basic fields at the top level, or announce a rename with
//! `"type": "host_update", "cert": "<old hostname>"`. The server accepts it only when the operator
//! turns the endpoint on, for teams migrating off that client.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::identity::is_placeholder;
use crate::report::{AgentInfo, HostInfo, Mode, ReportError, SCHEMA_VERSION, WireReport, WireSection};

/// The namespace of legacy report ids: UUIDv5(URL namespace, "urn:cmdb:legacy-report").
pub fn legacy_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:cmdb:legacy-report")
}

/// The report id of a legacy request: UUIDv5 of "<key>|<ts>", so a resent request is recognized.
pub fn legacy_report_id(key: &str, ts: &str) -> Uuid {
    Uuid::new_v5(&legacy_namespace(), format!("{key}|{ts}").as_bytes())
}

/// A verified `auth-api` header.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyAuth {
    /// The timestamp exactly as the client printed it (part of the signed text and of the report id).
    pub ts: String,
    /// The timestamp as seconds since the epoch.
    pub seconds: f64,
}

/// Checks `auth-api: md5("<key>|<ts>")|<ts>` against `key` (constant time). The caller checks the
/// clock window and the nonce store.
pub fn verify_auth_header(header: &str, key: &str) -> Option<LegacyAuth> {
    let (digest, ts) = header.trim().split_once('|')?;
    let seconds: f64 = ts.parse().ok().filter(|s: &f64| s.is_finite())?;
    let expected = hex::encode(Md5::digest(format!("{key}|{ts}").as_bytes()));
    let matches: bool = expected.as_bytes().ct_eq(digest.to_ascii_lowercase().as_bytes()).into();
    matches.then(|| LegacyAuth { ts: ts.to_owned(), seconds })
}

/// The header the legacy client would send for `key` at `ts` (for tests and the bench).
pub fn auth_header(key: &str, ts: &str) -> String {
    format!("{}|{ts}", hex::encode(Md5::digest(format!("{key}|{ts}").as_bytes())))
}

fn err(pointer: &str, message: &str) -> ReportError {
    ReportError { pointer: pointer.to_owned(), message: message.to_owned() }
}

fn clean(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !is_placeholder(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.split_whitespace().next()?.parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite() && *n >= 0.0)
}

/// A plugin block: `Ok(data)` when status is true, `Err(message)` otherwise.
fn plugin<'a>(payload: &'a Map<String, Value>, names: &[&str]) -> Option<(String, Result<&'a Value, String>)> {
    names.iter().find_map(|name| {
        let block = payload.get(*name)?.as_object()?;
        let ok = block.get("status").and_then(Value::as_bool).unwrap_or(false);
        let result = if ok {
            Ok(block.get("data").unwrap_or(&Value::Null))
        } else {
            let message = ["error_msg", "error"]
                .iter()
                .find_map(|k| block.get(*k).and_then(Value::as_str))
                .unwrap_or("legacy client reported failure")
                .to_owned();
            Err(message)
        };
        Some(((*name).to_owned(), result))
    })
}

fn prefix_from_netmask(netmask: &str) -> Option<u32> {
    let mask: std::net::Ipv4Addr = netmask.trim().parse().ok()?;
    let bits = u32::from(mask);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(bits.leading_ones())
}

/// Splits the first line of /etc/issue ("CentOS release 6.6 (Final)") into name and version.
fn split_issue(issue: &str) -> (Option<String>, Option<String>) {
    let first = issue.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return (None, None);
    }
    if let Some((name, rest)) = first.split_once(" release ") {
        let version = rest.split_whitespace().next().map(str::to_owned);
        return (Some(name.trim().to_owned()), version);
    }
    (Some(first.to_owned()), None)
}

fn basic_section(payload: &Map<String, Value>) -> Option<(String, Value, Option<String>)> {
    let (data, failed) = match plugin(payload, &["basic"]) {
        Some((_, Ok(data))) => (data.as_object().cloned().unwrap_or_default(), None),
        Some((_, Err(message))) => (Map::new(), Some(message)),
        None => (payload.clone(), None),
    };
    let hostname = clean(data.get("hostname"))?;
    let (os_name, os_version) = split_issue(data.get("os_version").and_then(Value::as_str).unwrap_or(""));
    let section = json!({
        "hostname": hostname,
        "os_platform": clean(data.get("os_platform")),
        "os_name": os_name,
        "os_version": os_version,
        "kernel": null,
        "arch": null,
    });
    Some((hostname, section, failed))
}

fn keyed_items(data: &Value) -> Vec<(String, &Map<String, Value>)> {
    match data {
        Value::Object(map) => map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_object()?))).collect(),
        _ => Vec::new(),
    }
}

fn memory_section(data: &Value) -> Value {
    let items = keyed_items(data);
    let mut modules = Vec::new();
    let mut total = 0u64;
    for (key, item) in &items {
        let capacity = number(item.get("capacity")).map(|mb| mb.round() as u64).unwrap_or(0);
        if capacity == 0 {
            continue;
        }
        total += capacity;
        modules.push(json!({
            "slot": clean(item.get("slot")).unwrap_or_else(|| key.clone()),
            "capacity_mb": capacity,
            "type": clean(item.get("model")),
            "speed_mts": number(item.get("speed")).map(|s| s.round() as u64),
            "manufacturer": clean(item.get("manufacturer")),
            "sn": clean(item.get("sn")),
            "part_number": clean(item.get("part_number")),
        }));
    }
    json!({"total_mb": if modules.is_empty() { Value::Null } else { json!(total) }, "slots_total": items.len(), "modules": modules})
}

fn disk_section(data: &Value) -> Value {
    let disks: Vec<Value> = keyed_items(data)
        .into_iter()
        .map(|(key, item)| {
            // MegaCli's "GB" are binary: 279.396 GB is 279.396 GiB.
            let bytes = number(item.get("capacity")).map(|gb| (gb * 1024.0 * 1024.0 * 1024.0).round() as u64);
            let model =
                item.get("model").and_then(Value::as_str).map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "));
            json!({
                "slot": clean(item.get("slot")).unwrap_or(key),
                "capacity_bytes": bytes,
                "model": model.filter(|m| !m.is_empty()),
                "sn": clean(item.get("sn")),
                "pd_type": clean(item.get("pd_type")),
                "media": null,
                "vendor": null,
                "firmware": null,
            })
        })
        .collect();
    json!({ "disks": disks })
}

fn nic_section(data: &Value) -> Value {
    let interfaces: Vec<Value> = keyed_items(data)
        .into_iter()
        .map(|(name, item)| {
            let prefix = item.get("netmask").and_then(Value::as_str).and_then(prefix_from_netmask);
            let addresses: Vec<String> = item
                .get("ipaddrs")
                .and_then(Value::as_str)
                .unwrap_or("")
                .split([',', ' ', ';'])
                .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
                .map(|a| match prefix {
                    Some(p) => format!("{a}/{p}"),
                    None => format!("{a}/32"),
                })
                .collect();
            json!({
                "name": name.split('@').next().unwrap_or(&name),
                "hwaddr": clean(item.get("hwaddr")).map(|h| h.to_ascii_lowercase()),
                "up": item.get("up").and_then(Value::as_bool),
                "carrier": null,
                "mtu": null,
                "master": null,
                "ipv4": addresses,
                "ipv6": [],
            })
        })
        .collect();
    json!({ "interfaces": interfaces })
}

/// Maps a legacy payload onto a v1 wire report (the caller validates it like any other report).
pub fn to_report(payload: &Value, report_id: Uuid, received_at: DateTime<Utc>) -> Result<WireReport, ReportError> {
    let payload = payload.as_object().ok_or_else(|| err("", "the legacy payload must be a JSON object"))?;
    let (hostname, basic, basic_error) =
        basic_section(payload).ok_or_else(|| err("/basic/data/hostname", "the legacy payload names no host"))?;
    let mut sections = BTreeMap::new();
    sections.insert(
        "basic".to_owned(),
        match basic_error {
            None => WireSection::ok(basic),
            Some(message) => WireSection::error(message),
        },
    );
    if let Some((_, result)) = plugin(payload, &["cpu"]) {
        let section = result.map(|data| {
            json!({
                "cpu_count": number(data.get("cpu_count")).map(|n| n as u64),
                "cpu_physical_count": number(data.get("cpu_physical_count")).map(|n| n as u64),
                "cpu_model": clean(data.get("cpu_model")),
            })
        });
        sections.insert("cpu".to_owned(), section.map_or_else(WireSection::error, WireSection::ok));
    }
    if let Some((_, result)) = plugin(payload, &["board", "main_board"]) {
        let section = result.map(|data| {
            json!({
                "manufacturer": clean(data.get("manufacturer")),
                "model": clean(data.get("model")),
                "sn": clean(data.get("sn")),
                "uuid": clean(data.get("uuid")),
            })
        });
        sections.insert("board".to_owned(), section.map_or_else(WireSection::error, WireSection::ok));
    }
    for (names, target, convert) in [
        (&["memory"][..], "memory", memory_section as fn(&Value) -> Value),
        (&["disk"][..], "disk", disk_section),
        (&["nic", "network"][..], "nic", nic_section),
    ] {
        if let Some((_, result)) = plugin(payload, names) {
            let section = result.map(convert);
            sections.insert(target.to_owned(), section.map_or_else(WireSection::error, WireSection::ok));
        }
    }
    let previous_hostname = match payload.get("type").and_then(Value::as_str) {
        Some("host_update") => clean(payload.get("cert")).filter(|old| old != &hostname),
        _ => None,
    };
    Ok(WireReport {
        schema: SCHEMA_VERSION,
        report_id,
        collected_at: received_at,
        agent: AgentInfo { version: "legacy".to_owned(), mode: Mode::Agent },
        host: HostInfo { hostname, previous_hostname, machine_id: None },
        sections,
        collected_for: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::validate;

    const PAYLOAD: &str = include_str!("../testdata/legacy/course-client-payload.json");

    #[test]
    fn maps_the_course_payload() {
        let payload: Value = serde_json::from_str(PAYLOAD).expect("fixture is JSON");
        let wire = to_report(&payload, legacy_report_id("k", "1"), Utc::now()).expect("maps");
        let report = validate(wire).expect("valid v1");
        assert_eq!(report.host.hostname, "c1.com");
        let memory = report.ok_section("memory").expect("memory");
        assert_eq!(memory.components.len(), 1, "empty slots are not modules");
        assert_eq!(memory.fields["slots_total"], json!(8));
        assert_eq!(memory.fields["total_mb"], json!(1024));
        assert_eq!(memory.components["DIMM #0"]["manufacturer"], Value::Null, "placeholders become null");
        let disk = report.ok_section("disk").expect("disk");
        assert_eq!(disk.components.len(), 6);
        assert_eq!(disk.components["0"]["capacity_bytes"], json!(299_999_170_658_u64));
        let nic = report.ok_section("nic").expect("nic");
        assert_eq!(nic.components["eth0"]["ipv4"], json!(["10.211.55.4/24"]));
        let basic = report.ok_section("basic").expect("basic");
        assert_eq!(basic.fields["os_name"], json!("CentOS"));
        assert_eq!(basic.fields["os_version"], json!("6.6"));
    }

    #[test]
    fn auth_header_round_trip() {
        let header = auth_header("secret-key", "1764000000.5");
        let auth = verify_auth_header(&header, "secret-key").expect("valid");
        assert_eq!(auth.ts, "1764000000.5");
        assert!(verify_auth_header(&header, "other").is_none());
        assert!(verify_auth_header("nonsense", "secret-key").is_none());
        assert_eq!(legacy_report_id("k", "1"), legacy_report_id("k", "1"));
        assert_ne!(legacy_report_id("k", "1"), legacy_report_id("k", "2"));
    }

    #[test]
    fn rename_variant_sets_previous_hostname() {
        let payload = json!({"type": "host_update", "cert": "old.example", "hostname": "new.example"});
        let wire = to_report(&payload, legacy_report_id("k", "1"), Utc::now()).expect("maps");
        assert_eq!(wire.host.previous_hostname.as_deref(), Some("old.example"));
        assert_eq!(wire.host.hostname, "new.example");
    }
}
