//! Proves that the published contract of report format v1 agrees with the code that enforces it.
//!
//! Three artefacts describe one format: `docs/report-format.md` (the normative text),
//! `schema/report-v1.schema.json` (JSON Schema draft 2020-12, for people who write collectors and
//! integrations) and `cmdb_model::parse_report` (what the server actually accepts). The corpus below
//! runs every document through both the schema and `parse_report` and asserts they agree, except for
//! the rules JSON Schema cannot express (unique component keys, byte lengths, calendar dates, ...),
//! which the document lists too: the schema accepts, `parse_report` refuses, at the pointer given.
//!
//! Every refusal also checks the JSON pointer `parse_report` names, since the server returns it
//! verbatim in its 422 answer and the document promises it.

use std::path::PathBuf;

use cmdb_model::parse_report;
use cmdb_model::report::{BUILTIN_SECTIONS, MAX_ERROR_LEN, MAX_HOSTNAME_LEN, RESERVED_SECTIONS, SectionResult};
use cmdb_model::signing;
use jsonschema::Validator;
use serde_json::{Value, json};

/// The text of a file in the repository (paths relative to the workspace root).
fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

fn schema() -> Value {
    serde_json::from_str(&repo_file("schema/report-v1.schema.json")).expect("the schema file is JSON")
}

fn validator() -> Validator {
    jsonschema::draft202012::new(&schema()).expect("the schema compiles")
}

/// What the corpus expects of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Schema and parser both accept.
    Valid,
    /// Schema and parser both refuse; the parser names this JSON pointer.
    Invalid(&'static str),
    /// A rule JSON Schema cannot express: the schema accepts, the parser refuses at this pointer.
    BeyondSchema(&'static str),
}

struct Case {
    name: &'static str,
    /// The body as sent to the server.
    body: String,
    /// The same document as a JSON value for the schema (`None` only when the body is not JSON).
    value: Option<Value>,
    expect: Expect,
}

/// A valid report that touches every built-in section and one external section.
fn base() -> Value {
    json!({
        "schema": 1,
        "report_id": "7d3a5a4e-8f1b-4c1e-9a53-1f0c2b3d4e5f",
        "collected_at": "2026-11-25T10:00:00Z",
        "agent": {"version": "0.1.0", "mode": "ssh"},
        "host": {"hostname": "web-01", "previous_hostname": null, "machine_id": "0123456789abcdef0123456789abcdef"},
        "sections": {
            "basic": {"status": "ok", "data": {"hostname": "web-01", "os_platform": "linux", "os_name": "Debian GNU/Linux",
                                                "os_version": "12", "kernel": "6.1.0-18-amd64", "arch": "x86_64"}},
            "cpu": {"status": "ok", "data": {"cpu_count": 8, "cpu_physical_count": 1, "cpu_model": "Intel(R) Xeon(R) E-2236"}},
            "board": {"status": "ok", "data": {"manufacturer": "Dell Inc.", "model": "PowerEdge R240", "sn": "2WF88P2",
                                                "uuid": "4c4c4544-0057-4610-8038-b2c04f503832"}},
            "memory": {"status": "ok", "data": {"total_mb": 32768, "slots_total": 4, "modules": [
                {"slot": "DIMM A1", "capacity_mb": 16384, "type": "DDR4", "speed_mts": 2666, "manufacturer": "Micron",
                 "sn": "1A2B3C4D", "part_number": "18ASF2G72AZ-2G6E1"},
                {"slot": "DIMM A2", "capacity_mb": 16384, "type": "DDR4", "speed_mts": 2666, "manufacturer": "Micron",
                 "sn": "1A2B3C4E", "part_number": "18ASF2G72AZ-2G6E1"}]}},
            "disk": {"status": "ok", "data": {"disks": [
                {"slot": "32:0", "capacity_bytes": 300000000000u64, "model": "ST300MM0008", "sn": "S0K2B5NV", "pd_type": "SAS",
                 "media": "hdd", "vendor": "SEAGATE", "firmware": "TT31"}]}},
            "nic": {"status": "ok", "data": {"interfaces": [
                {"name": "eth0", "hwaddr": "00:1c:42:a5:57:7a", "up": true, "carrier": true, "mtu": 1500, "master": null,
                 "ipv4": ["10.0.0.5/24"], "ipv6": ["fe80::21c:42ff:fea5:577a/64"]}]}},
            "raid": {"status": "ok", "data": {"controllers": [{"model": "PERC H330", "bbu": null}], "a/b": {"~": 1}}}
        }
    })
}

/// Builds corpus documents by editing [`base`].
struct Doc(Value);

fn doc() -> Doc {
    Doc(base())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

impl Doc {
    /// Sets the value at `pointer`, creating the last member if needed.
    fn set(mut self, pointer: &str, value: Value) -> Doc {
        let (parent, last) = pointer.rsplit_once('/').expect("a pointer with at least one token");
        match self.0.pointer_mut(parent).unwrap_or_else(|| panic!("{parent:?} exists in the base document")) {
            Value::Object(map) => {
                map.insert(unescape(last), value);
            }
            Value::Array(items) => {
                let index: usize = last.parse().expect("an array index");
                items[index] = value;
            }
            other => panic!("cannot set {pointer:?} inside {other}"),
        }
        self
    }

    /// Removes the member at `pointer`.
    fn remove(mut self, pointer: &str) -> Doc {
        let (parent, last) = pointer.rsplit_once('/').expect("a pointer with at least one token");
        let map = self.0.pointer_mut(parent).and_then(Value::as_object_mut).expect("parent object exists");
        assert!(map.remove(&unescape(last)).is_some(), "{pointer:?} exists in the base document");
        self
    }

    /// Replaces the whole `sections` map.
    fn sections(self, sections: Value) -> Doc {
        self.set("/sections", sections)
    }

    fn text(&self) -> String {
        self.0.to_string()
    }

    fn case(self, name: &'static str, expect: Expect) -> Case {
        Case { name, body: self.0.to_string(), value: Some(self.0), expect }
    }
}

/// A case given as raw text (for what a `Value` cannot carry, such as duplicate member names).
fn raw(name: &'static str, body: String, expect: Expect) -> Case {
    let value = serde_json::from_str(&body).ok();
    Case { name, body, value, expect }
}

/// `base()` as text with exactly one occurrence of `from` replaced by `to`.
fn base_text_replacing(from: &str, to: &str) -> String {
    let text = base().to_string();
    assert_eq!(text.matches(from).count(), 1, "{from:?} occurs once in the base document");
    text.replacen(from, to, 1)
}

/// An external section whose data nests `levels` arrays, so that the whole document has
/// `levels + 4` nested containers (root, sections, the section, its data).
fn nested_external(levels: usize) -> Value {
    let mut inner = json!([]);
    for _ in 1..levels {
        inner = json!([inner]);
    }
    json!({"deep": {"status": "ok", "data": {"a": inner}}})
}

fn corpus() -> Vec<Case> {
    use Expect::*;
    let ok = |data: Value| json!({"status": "ok", "data": data});
    vec![
        // ---- valid documents ----
        doc().case("the base document", Valid),
        doc().sections(json!({})).case("no sections at all", Valid),
        doc()
            .remove("/host/previous_hostname")
            .remove("/host/machine_id")
            .case("optional host fields absent", Valid),
        doc()
            .set("/host/previous_hostname", json!("web-01-old"))
            .set("/host/machine_id", json!("uninitialized"))
            .case("a rename, and a machine id that is kept but never used as identity", Valid),
        doc()
            .sections(json!({
                "basic": ok(json!({})), "cpu": ok(json!({})), "board": ok(json!({})),
                "memory": ok(json!({"modules": []})), "disk": ok(json!({"disks": []})), "nic": ok(json!({"interfaces": []}))
            }))
            .case("built-in sections with nothing but their lists", Valid),
        doc()
            .sections(json!({
                "basic": ok(json!({"hostname": null, "os_platform": null, "os_name": null, "os_version": null, "kernel": null, "arch": null})),
                "cpu": ok(json!({"cpu_count": null, "cpu_physical_count": null, "cpu_model": null})),
                "board": ok(json!({"manufacturer": null, "model": null, "sn": null, "uuid": null})),
                "memory": ok(json!({"total_mb": null, "slots_total": null, "modules": [{"slot": "A1", "capacity_mb": null,
                    "type": null, "speed_mts": null, "manufacturer": null, "sn": null, "part_number": null}]})),
                "disk": ok(json!({"disks": [{"slot": "sda", "capacity_bytes": null, "model": null, "sn": null,
                    "pd_type": null, "media": null, "vendor": null, "firmware": null}]})),
                "nic": ok(json!({"interfaces": [{"name": "eth0", "hwaddr": null, "up": null, "carrier": null, "mtu": null,
                    "master": null}]}))
            }))
            .case("every optional field null, ipv4/ipv6 absent", Valid),
        doc()
            .sections(json!({
                "disk": {"status": "error", "error": "MegaCli: command not found", "data": null},
                "memory": {"status": "error", "error": null},
                "nic": {"status": "error"},
                "raid": {"status": "error", "error": ""}
            }))
            .case("error sections, with and without a message", Valid),
        doc()
            .set("/sections/disk", json!({"status": "error", "error": "timeout", "data": {"disks": "ignored"}}))
            .set("/sections/cpu", json!({"status": "ok", "error": "ignored", "data": {"cpu_count": 2}}))
            .case("data of an error section and error of an ok section are ignored", Valid),
        doc()
            .set("/sections/0-collector_name-with-64-chars-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", ok(json!({})))
            .set("/sections/9", ok(json!({"nested": {"list": [1, "two", null, {"x": [true]}]}, "empty": {}})))
            .case("external section names at the edges of the pattern, free-form data", Valid),
        doc()
            .set("/report_id", json!("7D3A5A4E8F1B4C1E9A531F0C2B3D4E5F"))
            .case("report_id in the simple form, upper case", Valid),
        doc().set("/report_id", json!("{7d3a5a4e-8f1b-4c1e-9a53-1f0c2b3d4e5f}")).case("report_id braced", Valid),
        doc().set("/report_id", json!("urn:uuid:7d3a5a4e-8f1b-4c1e-9a53-1f0c2b3d4e5f")).case("report_id as URN", Valid),
        doc()
            .set("/collected_at", json!("2026-11-25t11:30:00.123456+01:30"))
            .case("collected_at with an offset and fraction", Valid),
        doc().set("/collected_at", json!("2024-02-29T23:59:60z")).case("collected_at on a leap day and second", Valid),
        doc().set("/host/hostname", json!("  web 01  ")).case("hostname with spaces around text", Valid),
        doc().set("/host/hostname", json!("x".repeat(MAX_HOSTNAME_LEN))).case("hostname of exactly 253 bytes", Valid),
        doc().set("/agent/version", json!("v".repeat(64))).case("agent version of exactly 64 bytes", Valid),
        doc().set("/host/machine_id", json!("m".repeat(128))).case("machine_id of exactly 128 bytes", Valid),
        doc()
            .set("/sections/disk/data/disks/0/capacity_bytes", json!(u64::MAX))
            .set("/sections/nic/data/interfaces/0/mtu", json!(u32::MAX))
            .case("integers at the top of their range", Valid),
        doc()
            .set("/sections/disk/data/disks/0/slot", json!("\u{feff}"))
            .case("a component key that Rust does not count as white space", Valid),
        doc().sections(nested_external(123)).case("nesting 127 containers deep", Valid),
        raw(
            "a repeated section name: the last one wins",
            base_text_replacing(r#""raid":{"#, r#""raid":{"status":"error"},"raid":{"#),
            Valid,
        ),
        raw(
            "a repeated key inside section data: the last one wins",
            base_text_replacing(r#""cpu_count":8"#, r#""cpu_count":"eight","cpu_count":8"#),
            Valid,
        ),
        // ---- invalid documents, one broken rule each ----
        raw("not an object", "[]".to_owned(), Invalid("")),
        doc().remove("/schema").case("schema missing", Invalid("")),
        doc().set("/schema", json!(2)).case("schema 2", Invalid("/schema")),
        doc().set("/schema", json!("1")).case("schema as a string", Invalid("/schema")),
        doc().set("/extra", json!(1)).case("unknown top-level member", Invalid("/extra")),
        doc().set("/report_id", json!(12)).case("report_id a number", Invalid("/report_id")),
        doc().set("/report_id", json!("web-01-2026-11-25")).case("report_id not a UUID", Invalid("/report_id")),
        doc()
            .set("/report_id", json!("{7d3a5a4e8f1b4c1e9a531f0c2b3d4e5f}"))
            .case("report_id braced without hyphens", Invalid("/report_id")),
        doc().remove("/report_id").case("report_id missing", Invalid("")),
        doc().set("/collected_at", json!("2026-11-25T10:00:00")).case("collected_at without offset", Invalid("/collected_at")),
        doc().set("/collected_at", json!("2026-11-25")).case("collected_at date only", Invalid("/collected_at")),
        doc().set("/collected_at", json!(1764064800)).case("collected_at as Unix seconds", Invalid("/collected_at")),
        doc().set("/collected_at", json!("2026-11-25T24:00:00Z")).case("collected_at hour 24", Invalid("/collected_at")),
        doc().set("/collected_at", json!("2026-11-25T10:00Z")).case("collected_at without seconds", Invalid("/collected_at")),
        doc().remove("/agent/mode").case("agent mode missing", Invalid("/agent")),
        doc().set("/agent/mode", json!("puppet")).case("agent mode unknown", Invalid("/agent/mode")),
        doc().set("/agent/mode", json!("SSH")).case("agent mode in upper case", Invalid("/agent/mode")),
        doc().set("/agent/version", json!("v".repeat(65))).case("agent version of 65 bytes", Invalid("/agent/version")),
        doc().set("/agent/version", json!(1)).case("agent version a number", Invalid("/agent/version")),
        doc().set("/agent/os", json!("linux")).case("unknown member in agent", Invalid("/agent/os")),
        doc().set("/host", json!(null)).case("host null", Invalid("/host")),
        doc().remove("/host/hostname").case("hostname missing", Invalid("/host")),
        doc().set("/host/hostname", json!("")).case("hostname empty", Invalid("/host/hostname")),
        doc().set("/host/hostname", json!(" \t\u{3000}")).case("hostname only white space", Invalid("/host/hostname")),
        doc().set("/host/hostname", json!("web-01\n")).case("hostname with a newline", Invalid("/host/hostname")),
        doc().set("/host/hostname", json!("web\u{7f}01")).case("hostname with DEL", Invalid("/host/hostname")),
        doc()
            .set("/host/hostname", json!("x".repeat(MAX_HOSTNAME_LEN + 1)))
            .case("hostname of 254 bytes", Invalid("/host/hostname")),
        doc()
            .set("/host/previous_hostname", json!(" "))
            .case("previous_hostname blank", Invalid("/host/previous_hostname")),
        doc().set("/host/machine_id", json!("m".repeat(129))).case("machine_id of 129 bytes", Invalid("/host/machine_id")),
        doc().set("/host/machine_id", json!(7)).case("machine_id a number", Invalid("/host/machine_id")),
        doc().set("/host/ip", json!("10.0.0.5")).case("unknown member in host", Invalid("/host/ip")),
        doc().remove("/sections").case("sections missing", Invalid("")),
        doc().set("/sections", json!([])).case("sections an array", Invalid("/sections")),
        doc().set("/sections/Raid", ok(json!({}))).case("section name in upper case", Invalid("/sections/Raid")),
        doc().set("/sections/host", ok(json!({}))).case("reserved section name host", Invalid("/sections/host")),
        doc().set("/sections/business", ok(json!({}))).case("reserved section name business", Invalid("/sections/business")),
        doc().set("/sections/_raid", ok(json!({}))).case("section name starting with _", Invalid("/sections/_raid")),
        doc().set("/sections/raid.v2", ok(json!({}))).case("section name with a dot", Invalid("/sections/raid.v2")),
        doc().set("/sections/raid~1v2", ok(json!({}))).case("section name with a slash", Invalid("/sections/raid~1v2")),
        doc().set("/sections/", ok(json!({}))).case("empty section name", Invalid("/sections/")),
        doc()
            .set("/sections/x2345678901234567890123456789012345678901234567890123456789012345", ok(json!({})))
            .case("section name of 65 characters", Invalid("/sections/x2345678901234567890123456789012345678901234567890123456789012345")),
        doc().set("/sections/raid", json!("ok")).case("section not an object", Invalid("/sections/raid")),
        doc().set("/sections/raid", json!({"data": {}})).case("status missing", Invalid("/sections/raid")),
        doc()
            .set("/sections/raid", json!({"status": "warning", "data": {}}))
            .case("status unknown", Invalid("/sections/raid/status")),
        doc()
            .set("/sections/raid", json!({"status": "error", "message": "x"}))
            .case("unknown member in a section", Invalid("/sections/raid/message")),
        doc().set("/sections/raid", json!({"status": "ok"})).case("ok section without data", Invalid("/sections/raid/data")),
        doc().set("/sections/cpu", json!({"status": "ok", "data": null})).case("ok section with null data", Invalid("/sections/cpu/data")),
        doc().set("/sections/raid", ok(json!([1, 2]))).case("external data an array", Invalid("/sections/raid/data")),
        doc().set("/sections/raid", ok(json!("fine"))).case("external data a string", Invalid("/sections/raid/data")),
        doc()
            .set("/sections/raid", json!({"status": "error", "error": 500}))
            .case("error message a number", Invalid("/sections/raid/error")),
        doc()
            .set("/sections/basic/data/fqdn", json!("web-01.example.com"))
            .case("unknown field in basic", Invalid("/sections/basic/data/fqdn")),
        doc()
            .set("/sections/basic/data/os_version", json!(12))
            .case("os_version a number", Invalid("/sections/basic/data/os_version")),
        doc()
            .set("/sections/cpu/data/cpu_count", json!(-1))
            .case("cpu_count negative", Invalid("/sections/cpu/data/cpu_count")),
        doc()
            .set("/sections/cpu/data/cpu_count", json!("8"))
            .case("cpu_count a string", Invalid("/sections/cpu/data/cpu_count")),
        doc()
            .set("/sections/cpu/data/cpu_count", json!(u64::from(u32::MAX) + 1))
            .case("cpu_count above u32", Invalid("/sections/cpu/data/cpu_count")),
        doc()
            .set("/sections/cpu/data/cpu_physical_count", json!(1.5))
            .case("cpu_physical_count a fraction", Invalid("/sections/cpu/data/cpu_physical_count")),
        doc()
            .set("/sections/board/data/uuid", json!(0))
            .case("board uuid a number", Invalid("/sections/board/data/uuid")),
        doc().remove("/sections/memory/data/modules").case("memory without modules", Invalid("/sections/memory/data")),
        doc()
            .set("/sections/memory/data/modules", json!(null))
            .case("memory modules null", Invalid("/sections/memory/data/modules")),
        doc()
            .set("/sections/memory/data/total_mb", json!("32 GB"))
            .case("total_mb as text with a unit", Invalid("/sections/memory/data/total_mb")),
        doc()
            .remove("/sections/memory/data/modules/0/slot")
            .case("memory module without slot", Invalid("/sections/memory/data/modules/0")),
        doc()
            .set("/sections/memory/data/modules/1/slot", json!(""))
            .case("memory slot empty", Invalid("/sections/memory/data/modules/1/slot")),
        doc()
            .set("/sections/memory/data/modules/1/slot", json!(" \u{85}"))
            .case("memory slot only white space", Invalid("/sections/memory/data/modules/1/slot")),
        doc()
            .set("/sections/memory/data/modules/0/slot", json!(1))
            .case("memory slot a number", Invalid("/sections/memory/data/modules/0/slot")),
        doc()
            .set("/sections/memory/data/modules/0/size", json!(16384))
            .case("unknown field in a memory module", Invalid("/sections/memory/data/modules/0/size")),
        doc()
            .set("/sections/memory/data/modules/0/speed_mts", json!("2666 MT/s"))
            .case("speed_mts with its unit", Invalid("/sections/memory/data/modules/0/speed_mts")),
        doc().remove("/sections/disk/data/disks").case("disk without disks", Invalid("/sections/disk/data")),
        doc()
            .set("/sections/disk/data/disks/0/capacity_bytes", json!(-1))
            .case("capacity_bytes negative", Invalid("/sections/disk/data/disks/0/capacity_bytes")),
        doc()
            .set("/sections/disk/data/disks/0/capacity_bytes", json!("Not Available"))
            .case("capacity_bytes a placeholder string", Invalid("/sections/disk/data/disks/0/capacity_bytes")),
        doc()
            .set("/sections/disk/data/disks/0/slot", json!(null))
            .case("disk slot null", Invalid("/sections/disk/data/disks/0/slot")),
        doc()
            .set("/sections/disk/data/disks/0", json!("sda"))
            .case("disk given as a string", Invalid("/sections/disk/data/disks/0")),
        doc()
            .set("/sections/disk/data/disks/0/rpm", json!(10000))
            .case("unknown field in a disk", Invalid("/sections/disk/data/disks/0/rpm")),
        doc()
            .remove("/sections/nic/data/interfaces/0/name")
            .case("interface without name", Invalid("/sections/nic/data/interfaces/0")),
        doc()
            .set("/sections/nic/data/interfaces/0/ipv4", json!(null))
            .case("ipv4 null instead of a list", Invalid("/sections/nic/data/interfaces/0/ipv4")),
        doc()
            .set("/sections/nic/data/interfaces/0/ipv4", json!("10.0.0.5/24"))
            .case("ipv4 a string instead of a list", Invalid("/sections/nic/data/interfaces/0/ipv4")),
        doc()
            .set("/sections/nic/data/interfaces/0/ipv6", json!([6]))
            .case("ipv6 entry a number", Invalid("/sections/nic/data/interfaces/0/ipv6/0")),
        doc()
            .set("/sections/nic/data/interfaces/0/up", json!("yes"))
            .case("up a string", Invalid("/sections/nic/data/interfaces/0/up")),
        doc()
            .set("/sections/nic/data/interfaces/0/mtu", json!(-1))
            .case("mtu negative", Invalid("/sections/nic/data/interfaces/0/mtu")),
        doc()
            .set("/sections/nic/data/interfaces/0/speed_mbps", json!(1000))
            .case("unknown field in an interface", Invalid("/sections/nic/data/interfaces/0/speed_mbps")),
        // ---- rules the schema cannot express: the schema accepts, the server refuses ----
        doc()
            .set("/sections/disk/data/disks", json!([{"slot": "32:0"}, {"slot": "32:0"}]))
            .case("two disks in one slot", BeyondSchema("/sections/disk/data/disks/1/slot")),
        doc()
            .set("/sections/memory/data/modules/1/slot", json!("DIMM A1"))
            .case("two memory modules in one slot", BeyondSchema("/sections/memory/data/modules/1/slot")),
        doc()
            .set("/sections/nic/data/interfaces", json!([{"name": "eth0"}, {"name": "eth1"}, {"name": "eth0", "up": false}]))
            .case("two interfaces with one name", BeyondSchema("/sections/nic/data/interfaces/2/name")),
        doc()
            .set("/host/hostname", json!("é".repeat(127)))
            .case("hostname of 127 characters but 254 bytes", BeyondSchema("/host/hostname")),
        doc()
            .set("/agent/version", json!("ü".repeat(33)))
            .case("agent version of 33 characters but 66 bytes", BeyondSchema("/agent/version")),
        doc()
            .set("/host/machine_id", json!("ß".repeat(65)))
            .case("machine_id of 65 characters but 130 bytes", BeyondSchema("/host/machine_id")),
        doc().set("/collected_at", json!("2026-02-29T10:00:00Z")).case("29 February in a common year", BeyondSchema("/collected_at")),
        doc().set("/collected_at", json!("2026-04-31T10:00:00Z")).case("31 April", BeyondSchema("/collected_at")),
        raw("schema written as 1.0", base_text_replacing(r#""schema":1"#, r#""schema":1.0"#), BeyondSchema("/schema")),
        raw(
            "an integer field written with a fraction",
            base_text_replacing(r#""cpu_count":8"#, r#""cpu_count":8.0"#),
            BeyondSchema("/sections/cpu/data/cpu_count"),
        ),
        raw(
            "an integer field written with an exponent",
            base_text_replacing(r#""slots_total":4"#, r#""slots_total":4e0"#),
            BeyondSchema("/sections/memory/data/slots_total"),
        ),
        raw(
            "a repeated member name in host",
            base_text_replacing(r#""host":{"hostname":"#, r#""host":{"hostname":"a","hostname":"#),
            BeyondSchema("/host"),
        ),
        raw(
            "a repeated member name in a section",
            base_text_replacing(r#""raid":{"data":"#, r#""raid":{"status":"error","data":"#),
            BeyondSchema("/sections/raid"),
        ),
        doc()
            .sections(nested_external(124))
            .case("nesting 128 containers deep", BeyondSchema(deep_pointer())),
        // ---- once leniencies of the parser, now refused by both ----
        doc().set("/sections/cpu", ok(json!([8, 1, "Xeon"]))).case("built-in section data as an array", Invalid("/sections/cpu/data")),
        doc()
            .set("/sections/memory/data/modules/0", json!(["DIMM A1", 16384]))
            .case("a memory module as an array", Invalid("/sections/memory/data/modules/0")),
        doc().set("/collected_at", json!("2026-11-25 10:00:00Z")).case("collected_at with a space for T", Invalid("/collected_at")),
        doc().set("/collected_at", json!("2026-11-25T10:00:00 UTC")).case("collected_at ending in UTC", Invalid("/collected_at")),
        doc().set("/collected_at", json!("2026-11-25T10:00:00+0100")).case("collected_at offset without colon", Invalid("/collected_at")),
        doc().set("/collected_at", json!("2026-1-5T1:2:3Z")).case("collected_at without zero padding", Invalid("/collected_at")),
        doc().set("/collected_at", json!(" 2026-11-25T10:00:00Z ")).case("collected_at with white space around", Invalid("/collected_at")),
    ]
}

/// The pointer serde reports for [`nested_external`]`(124)`: the innermost array it could not enter.
fn deep_pointer() -> &'static str {
    static POINTER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POINTER.get_or_init(|| format!("/sections/deep/data/a{}", "/0".repeat(123)))
}

#[test]
fn schema_and_parser_agree_on_the_corpus() {
    let validator = validator();
    let corpus = corpus();
    let mut failures = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for case in &corpus {
        let group = match case.expect {
            Expect::Valid => "valid",
            Expect::Invalid(_) => "invalid",
            Expect::BeyondSchema(_) => "beyond the schema",
        };
        *counts.entry(group).or_default() += 1;
        let value = case.value.as_ref().unwrap_or_else(|| panic!("{}: the body is JSON", case.name));
        let schema_errors: Vec<String> =
            validator.iter_errors(value).map(|e| format!("{} at {:?}", e, e.instance_path().as_str())).collect();
        let schema_ok = schema_errors.is_empty();
        let parsed = parse_report(case.body.as_bytes());
        let verdict = match (&parsed, case.expect) {
            (Ok(_), Expect::Valid) if schema_ok => Ok(()),
            (Err(e), Expect::Invalid(pointer)) if !schema_ok && e.pointer == pointer => Ok(()),
            (Err(e), Expect::BeyondSchema(pointer)) if schema_ok && e.pointer == pointer => Ok(()),
            _ => Err(format!(
                "{}: expected {:?}; schema {}; parse_report {}",
                case.name,
                case.expect,
                if schema_ok { "accepts".to_owned() } else { format!("refuses: {}", schema_errors.join("; ")) },
                match &parsed {
                    Ok(_) => "accepts".to_owned(),
                    Err(e) => format!("refuses at {:?}: {}", e.pointer, e.message),
                }
            )),
        };
        if let Err(message) = verdict {
            failures.push(message);
        }
    }
    println!("corpus: {} documents {counts:?}", corpus.len());
    assert!(corpus.len() >= 30, "the corpus keeps at least 30 documents");
    assert!(failures.is_empty(), "{} of {} documents disagree:\n{}", failures.len(), corpus.len(), failures.join("\n"));
}

/// True when one JSON pointer is the other or lies inside it.
fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

#[test]
fn schema_refuses_invalid_documents_where_the_parser_does() {
    // A refusal for the wrong reason would let the corpus pass while the schema misses the rule, so
    // for every invalid document some schema error must concern the value the parser names (or an
    // object that contains it: JSON Schema reports a missing or unknown member at its parent).
    let validator = validator();
    let mut failures = Vec::new();
    for case in corpus() {
        let Expect::Invalid(pointer) = case.expect else { continue };
        let value = case.value.as_ref().expect("corpus documents are JSON");
        let paths: Vec<String> = validator.iter_errors(value).map(|e| e.instance_path().as_str().to_owned()).collect();
        if !paths.iter().any(|path| related(path, pointer)) {
            failures.push(format!("{}: parser at {pointer:?}, schema at {paths:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "schema errors elsewhere than the parser's:\n{}", failures.join("\n"));
}

#[test]
fn bodies_that_are_not_one_json_document_are_refused() {
    let good = base().to_string();
    let mut not_utf8_in_string = good.clone().into_bytes();
    let at = good.find("web-01").expect("the host name is in the body");
    not_utf8_in_string[at] = 0xff;
    // Syntax errors are answered 400 by the server, without a pointer, so only the refusal is checked
    // for them; invalid UTF-8 inside a string is a 422 that names the string.
    let bodies: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("empty body", Vec::new(), None),
        ("truncated", good.as_bytes()[..good.len() / 2].to_vec(), None),
        ("a second document after the first", format!("{good} {{}}").into_bytes(), None),
        ("a byte order mark", [&[0xef, 0xbb, 0xbf][..], good.as_bytes()].concat(), None),
        ("invalid UTF-8 inside a string", not_utf8_in_string, Some("/host/hostname")),
    ];
    for (name, body, pointer) in bodies {
        assert!(serde_json::from_slice::<Value>(&body).is_err(), "{name}: no JSON validator sees a document");
        let error = parse_report(&body).expect_err(name);
        if let Some(pointer) = pointer {
            assert_eq!(error.pointer, pointer, "{name}: {error}");
        }
    }
    let padded = format!(" \n\t{good}\r\n ");
    assert!(parse_report(padded.as_bytes()).is_ok(), "white space around the document is allowed");
}

#[test]
fn the_complete_example_is_valid_and_is_the_one_in_the_document() {
    let text = repo_file("docs/examples/report-v1.json");
    let example: Value = serde_json::from_str(&text).expect("the example is JSON");
    let errors: Vec<String> = validator().iter_errors(&example).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "the example breaks the schema: {errors:?}");
    let report = parse_report(text.as_bytes()).unwrap_or_else(|e| panic!("the server refuses the example: {e}"));
    for name in BUILTIN_SECTIONS {
        assert!(report.ok_section(name).is_some(), "the example shows the {name} section");
    }
    assert!(report.ok_section("raid").is_some(), "the example shows an external ok section");
    assert!(report.section_failed("ipmi"), "the example shows a failed section");
    let memory = report.ok_section("memory").expect("memory");
    let sum: u64 = memory.components.values().filter_map(|m| m["capacity_mb"].as_u64()).sum();
    assert_eq!(memory.fields["total_mb"].as_u64(), Some(sum), "total_mb is the sum of the DIMMs, as documented");

    let doc = repo_file("docs/report-format.md");
    let section = doc.split("## Complete example").nth(1).expect("the document has a complete example");
    let block = section.split("```json\n").nth(1).and_then(|rest| rest.split("\n```").next()).expect("a json block");
    assert_eq!(block.trim(), text.trim(), "docs/report-format.md shows docs/examples/report-v1.json verbatim");
}

#[test]
fn the_schema_names_the_sections_and_limits_the_code_uses() {
    let schema = schema();
    assert!(jsonschema::meta::is_valid(&schema), "the schema is a valid draft 2020-12 schema");
    let builtin: Vec<&str> = schema["properties"]["sections"]["properties"]
        .as_object()
        .expect("built-in sections")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = BUILTIN_SECTIONS.to_vec();
    expected.sort_unstable();
    let mut builtin_sorted = builtin.clone();
    builtin_sorted.sort_unstable();
    assert_eq!(builtin_sorted, expected, "the schema describes exactly the built-in sections");
    assert_eq!(schema["$defs"]["section_name"]["not"]["enum"], json!(RESERVED_SECTIONS), "reserved names");
    assert_eq!(schema["$defs"]["hostname"]["maxLength"], json!(MAX_HOSTNAME_LEN), "host name limit");
    let doc = repo_file("docs/report-format.md");
    for needle in [
        format!("{MAX_HOSTNAME_LEN} bytes"),
        format!("{MAX_ERROR_LEN} bytes"),
        "`host` and `business` are the server's own pseudo-sections".to_owned(),
    ] {
        assert!(doc.contains(&needle), "docs/report-format.md states {needle:?}");
    }
}

#[test]
fn error_messages_are_cut_or_replaced_not_refused() {
    let long = "é".repeat(MAX_ERROR_LEN); // 2 bytes each: the cut falls on a character boundary
    let body = doc()
        .set("/sections/raid", json!({"status": "error", "error": long}))
        .set("/sections/disk", json!({"status": "error", "error": " \n "}))
        .text();
    let report = parse_report(body.as_bytes()).expect("long and blank messages are accepted");
    let Some(SectionResult::Error(message)) = report.sections.get("raid") else { panic!("raid failed") };
    assert_eq!(message.len(), MAX_ERROR_LEN);
    assert!(long.starts_with(message.as_str()));
    let Some(SectionResult::Error(message)) = report.sections.get("disk") else { panic!("disk failed") };
    assert_eq!(message, "collector failed without a message");
}

#[test]
fn the_documented_signing_examples_are_what_the_code_computes() {
    let doc = repo_file("docs/report-format.md");
    let (secret, timestamp, nonce) = ("s3cr3t-example", 1_764_000_000, "00112233445566778899aabbccddeeff");
    for (method, target, body, expected) in [
        (
            "POST",
            "/api/v1/reports",
            &br#"{"schema":1}"#[..],
            "c2abd0d2cdbd608391f54c2e8bcc9d2f3749b85040385a050a2041e81c9992b1",
        ),
        (
            "GET",
            "/api/v1/collect-targets?mode=salt",
            &b""[..],
            "cdda2045e2f3db81ad8dc90e6725862b4f6355a4f815198482860df8c06132a9",
        ),
    ] {
        assert_eq!(signing::sign(secret, method, target, timestamp, nonce, body), expected, "{method} {target}");
        assert!(
            doc.contains(&format!("Signature={expected}")),
            "the document shows the signature of {method} {target}"
        );
        let string_to_sign = signing::string_to_sign(method, target, timestamp, nonce, body);
        assert!(
            doc.contains(&format!("```\n{string_to_sign}\n```")),
            "the document shows the string to sign of {method} {target}:\n{string_to_sign}"
        );
    }
}
