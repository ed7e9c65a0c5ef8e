//! Report format v1: the JSON document an agent sends for one host (docs/report-format.md).
//!
//! Parsing is two-phased. The envelope is read with its sections as raw JSON; then every built-in
//! section is read into its typed struct and written back as canonical JSON, so the server always
//! stores and diffs one normal form (missing optional fields become `null`, key order is sorted).
//! Every error carries the JSON pointer of the offending value, which the server returns verbatim.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::state::SectionState;

/// The only schema version this build understands.
pub const SCHEMA_VERSION: u64 = 1;

/// Longest host name accepted (RFC 1035 puts a full domain name at 253 octets).
pub const MAX_HOSTNAME_LEN: usize = 253;

/// Longest collector error message stored; longer messages are cut, not refused.
pub const MAX_ERROR_LEN: usize = 4096;

/// Section names that belong to the server's own bookkeeping and can never be reported.
pub const RESERVED_SECTIONS: &[&str] = &["host", "business", "identity"];

/// The built-in sections, in the order the agent lists them.
pub const BUILTIN_SECTIONS: &[&str] = &["basic", "cpu", "board", "memory", "disk", "nic"];

/// How the report was collected; becomes the `source` of every change it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The agent ran on the host itself.
    Agent,
    /// An agentless collector ran the probes over SSH.
    Ssh,
    /// A collector ran the probes through SaltStack.
    Salt,
}

impl Mode {
    /// The lowercase name used on the wire and in change records.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Agent => "agent",
            Mode::Ssh => "ssh",
            Mode::Salt => "salt",
        }
    }
}

/// Who produced the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    /// The agent's version string.
    pub version: String,
    /// The transport that carried the probes.
    pub mode: Mode,
}

/// The host the report describes, as the agent names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// The host name now.
    pub hostname: String,
    /// The host name the agent last delivered for this host, when it differs (a rename).
    #[serde(default)]
    pub previous_hostname: Option<String>,
    /// The content of /etc/machine-id, when the host has one.
    #[serde(default)]
    pub machine_id: Option<String>,
}

/// Whether a collector succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SectionStatus {
    /// The collector ran and `data` holds what it found.
    Ok,
    /// The collector failed; `error` says why and the stored data stays as it was.
    Error,
}

/// One collector's result as it appears on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSection {
    /// Whether the collector succeeded.
    pub status: SectionStatus,
    /// The collected data (an object) when `status` is ok; null otherwise.
    #[serde(default)]
    pub data: Option<Value>,
    /// The failure message when `status` is error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl WireSection {
    /// A successful section holding `data`.
    pub fn ok(data: Value) -> Self {
        WireSection { status: SectionStatus::Ok, data: Some(data), error: None }
    }

    /// A failed section carrying `message`.
    pub fn error(message: impl Into<String>) -> Self {
        WireSection { status: SectionStatus::Error, data: None, error: Some(message.into()) }
    }
}

/// The report exactly as it travels between agent and server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReport {
    /// Always [`SCHEMA_VERSION`].
    pub schema: u64,
    /// A fresh UUID per collection; the server's idempotency key.
    pub report_id: Uuid,
    /// When the probes ran (strict RFC 3339).
    #[serde(deserialize_with = "rfc3339")]
    pub collected_at: DateTime<Utc>,
    /// Who collected.
    pub agent: AgentInfo,
    /// Which host.
    pub host: HostInfo,
    /// Section name -> result.
    pub sections: BTreeMap<String, WireSection>,
    /// The asset the collector was asked to collect (the `asset_id` of a collect-targets entry),
    /// sent only to a server whose collect-targets answer says it accepts it. The server then
    /// refuses a report that resolves to another asset, so a hostile target cannot write a
    /// neighbour's record by printing its identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected_for: Option<i64>,
}

/// Reads a timestamp in strict RFC 3339 (chrono's serde form also takes spaces and other
/// near-misses, which the format does not allow).
fn rfc3339<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(deserializer)?;
    // RFC 3339 lets applications use a space instead of "T"; this format does not.
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(serde::de::Error::custom(format!(
            "not an RFC 3339 date-time (expected \"T\" after the date): {text:?}"
        )));
    }
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 date-time ({e}): {text:?}")))
}

/// A section after validation: either its canonical state or the collector's error.
#[derive(Debug, Clone, PartialEq)]
pub enum SectionResult {
    /// Canonical data, split into fields and keyed components.
    Ok(SectionState),
    /// The collector's error message (trimmed to [`MAX_ERROR_LEN`]).
    Error(String),
}

/// A validated report, ready for identity resolution and diffing.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The idempotency key.
    pub report_id: Uuid,
    /// When the probes ran.
    pub collected_at: DateTime<Utc>,
    /// Who collected.
    pub agent: AgentInfo,
    /// Which host.
    pub host: HostInfo,
    /// Section name -> validated result.
    pub sections: BTreeMap<String, SectionResult>,
    /// The asset the collector was asked to collect, when it says (see [`WireReport::collected_for`]).
    pub collected_for: Option<i64>,
}

/// Why a report was refused. `pointer` is an RFC 6901 JSON pointer into the request body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at {pointer:?})")]
pub struct ReportError {
    /// Where in the document the problem is ("" for the whole document).
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

impl ReportError {
    fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        ReportError { pointer: pointer.into(), message: message.into() }
    }
}

/// `basic`: the operating system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicData {
    /// `hostname` as the host prints it.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Kernel family, e.g. "linux".
    #[serde(default)]
    pub os_platform: Option<String>,
    /// Distribution name, e.g. "Debian GNU/Linux".
    #[serde(default)]
    pub os_name: Option<String>,
    /// Distribution version, e.g. "12".
    #[serde(default)]
    pub os_version: Option<String>,
    /// Kernel release, e.g. "6.1.0-18-amd64".
    #[serde(default)]
    pub kernel: Option<String>,
    /// Machine architecture, e.g. "x86_64".
    #[serde(default)]
    pub arch: Option<String>,
}

/// `cpu`: processors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuData {
    /// Logical CPUs (threads).
    #[serde(default)]
    pub cpu_count: Option<u32>,
    /// Sockets.
    #[serde(default)]
    pub cpu_physical_count: Option<u32>,
    /// Model name as the kernel prints it (inner spaces kept).
    #[serde(default)]
    pub cpu_model: Option<String>,
}

/// `board`: SMBIOS system information.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardData {
    /// System manufacturer.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Product name.
    #[serde(default)]
    pub model: Option<String>,
    /// System serial number.
    #[serde(default)]
    pub sn: Option<String>,
    /// SMBIOS system UUID.
    #[serde(default)]
    pub uuid: Option<String>,
}

/// `memory`: installed DIMMs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryData {
    /// Sum of the DIMMs in MiB, else floor(MemTotal / 1024).
    #[serde(default)]
    pub total_mb: Option<u64>,
    /// Memory slots, empty ones included.
    #[serde(default)]
    pub slots_total: Option<u32>,
    /// Populated slots only, keyed by `slot`.
    pub modules: Vec<MemoryModule>,
}

/// One populated memory slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryModule {
    /// The DIMM's Locator, or "BANK LOCATOR/LOCATOR" when Locators repeat on the host.
    pub slot: String,
    /// Size in MiB.
    #[serde(default)]
    pub capacity_mb: Option<u64>,
    /// Memory type, e.g. "DDR4".
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Speed in MT/s.
    #[serde(default)]
    pub speed_mts: Option<u32>,
    /// Manufacturer name or JEDEC id.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub sn: Option<String>,
    /// Part number.
    #[serde(default)]
    pub part_number: Option<String>,
}

/// `disk`: physical drives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskData {
    /// Every physical drive, keyed by `slot`.
    pub disks: Vec<Disk>,
}

/// One physical drive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// "ENCLOSURE:SLOT" behind a RAID controller ("aN/E:S" with several adapters), else the kernel name.
    pub slot: String,
    /// Raw capacity in bytes (sector count x 512 where the controller prints it).
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub sn: Option<String>,
    /// Interface type: "SAS", "SATA", "NVMe", ...
    #[serde(default)]
    pub pd_type: Option<String>,
    /// "hdd" or "ssd".
    #[serde(default)]
    pub media: Option<String>,
    /// Vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Firmware revision.
    #[serde(default)]
    pub firmware: Option<String>,
}

/// `nic`: network interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicData {
    /// Every reported interface, keyed by `name`.
    pub interfaces: Vec<Interface>,
}

/// One network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Kernel name without any "@parent" suffix.
    pub name: String,
    /// Link-layer address, lowercase.
    #[serde(default)]
    pub hwaddr: Option<String>,
    /// Administratively up (the UP flag).
    #[serde(default)]
    pub up: Option<bool>,
    /// Link detected (the LOWER_UP flag).
    #[serde(default)]
    pub carrier: Option<bool>,
    /// MTU in bytes.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The bond or bridge this interface is enslaved to.
    #[serde(default)]
    pub master: Option<String>,
    /// IPv4 addresses as "address/prefix".
    #[serde(default)]
    pub ipv4: Vec<String>,
    /// IPv6 addresses as "address/prefix", link-local included.
    #[serde(default)]
    pub ipv6: Vec<String>,
}

/// Where a built-in section keeps its components: (list field, key field).
pub fn component_list(section: &str) -> Option<(&'static str, &'static str)> {
    match section {
        "memory" => Some(("modules", "slot")),
        "disk" => Some(("disks", "slot")),
        "nic" => Some(("interfaces", "name")),
        _ => None,
    }
}

/// True for the section names cmdb defines itself.
pub fn is_builtin(section: &str) -> bool {
    BUILTIN_SECTIONS.contains(&section)
}

/// True when `name` may name an external section: 1-64 of `[a-z0-9_-]`, starting alphanumeric.
pub fn is_valid_section_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
        && !RESERVED_SECTIONS.contains(&name)
}

/// Escapes one reference token for a JSON pointer (RFC 6901: `~` -> `~0`, `/` -> `~1`).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Parses and validates a report body.
pub fn parse_report(body: &[u8]) -> Result<Report, ReportError> {
    parse_report_with(body, &ReportLimits::default())
}

/// [`parse_report`] with the server's configured limits.
pub fn parse_report_with(body: &[u8], limits: &ReportLimits) -> Result<Report, ReportError> {
    let wire: WireReport = from_slice_with_pointer(body)?;
    validate_with(wire, limits)
}

/// What one report may hold. Each change record costs the server a row and the writer time, so a
/// report far beyond any real machine (5,000 disks, megabyte strings) is refused whole instead of
/// being stored. The defaults are far above what real servers report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportLimits {
    /// Sections per report.
    pub max_sections: usize,
    /// Entries per section: components (disks, DIMMs, NICs), or an external section's top-level
    /// fields.
    pub max_components_per_section: usize,
    /// Bytes of one string in section data (values and member names). Section `error` messages
    /// are cut at [`MAX_ERROR_LEN`] instead.
    pub max_string_bytes: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        ReportLimits { max_sections: 64, max_components_per_section: 4096, max_string_bytes: 4096 }
    }
}

/// Checks `wire` against `limits` before any work is done on it.
fn check_limits(wire: &WireReport, limits: &ReportLimits) -> Result<(), ReportError> {
    if wire.sections.len() > limits.max_sections {
        return Err(ReportError::at(
            "/sections",
            format!("{} sections; the limit is {} (limits.max_sections)", wire.sections.len(), limits.max_sections),
        ));
    }
    for (name, section) in &wire.sections {
        let base = format!("/sections/{}/data", pointer_token(name));
        let Some(Value::Object(data)) = &section.data else { continue };
        let (entries, at) = match component_list(name) {
            Some((list, _)) => match data.get(list) {
                Some(Value::Array(items)) => (items.len(), format!("{base}/{list}")),
                _ => (0, base.clone()),
            },
            None => (data.len(), base.clone()),
        };
        if entries > limits.max_components_per_section {
            return Err(ReportError::at(
                at,
                format!(
                    "{entries} entries; the limit is {} per section (limits.max_components_per_section)",
                    limits.max_components_per_section
                ),
            ));
        }
        if let Some(data) = &section.data {
            long_string(data, &base, limits.max_string_bytes)?;
        }
    }
    Ok(())
}

/// The first string (value or member name) longer than `max` bytes, as an error at its pointer.
fn long_string(value: &Value, pointer: &str, max: usize) -> Result<(), ReportError> {
    let too_long = |at: String, len: usize| {
        ReportError::at(at, format!("a string of {len} bytes; the limit is {max} (limits.max_string_bytes)"))
    };
    match value {
        Value::String(text) if text.len() > max => Err(too_long(pointer.to_owned(), text.len())),
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(index, item)| long_string(item, &format!("{pointer}/{index}"), max))
        }
        Value::Object(members) => members.iter().try_for_each(|(key, item)| {
            let at = format!("{pointer}/{}", pointer_token(key));
            if key.len() > max {
                return Err(too_long(at, key.len()));
            }
            long_string(item, &at, max)
        }),
        _ => Ok(()),
    }
}

/// Validates an already-deserialized report (the legacy endpoint builds one in memory).
pub fn validate(wire: WireReport) -> Result<Report, ReportError> {
    validate_with(wire, &ReportLimits::default())
}

/// [`validate`] with the server's configured limits.
pub fn validate_with(wire: WireReport, limits: &ReportLimits) -> Result<Report, ReportError> {
    check_limits(&wire, limits)?;
    if wire.schema != SCHEMA_VERSION {
        return Err(ReportError::at(
            "/schema",
            format!("unsupported schema {}; this server understands {SCHEMA_VERSION}", wire.schema),
        ));
    }
    if wire.report_id.is_nil() {
        return Err(ReportError::at("/report_id", "the nil UUID is not a report id; use a fresh random UUID"));
    }
    if wire.collected_for.is_some_and(|id| id <= 0) {
        return Err(ReportError::at("/collected_for", "an asset id is a positive integer"));
    }
    validate_hostname("/host/hostname", &wire.host.hostname)?;
    if let Some(previous) = &wire.host.previous_hostname {
        validate_hostname("/host/previous_hostname", previous)?;
    }
    if let Some(machine_id) = &wire.host.machine_id
        && machine_id.len() > 128
    {
        return Err(ReportError::at("/host/machine_id", "longer than 128 bytes"));
    }
    if wire.agent.version.len() > 64 {
        return Err(ReportError::at("/agent/version", "longer than 64 bytes"));
    }
    let mut sections = BTreeMap::new();
    for (name, section) in wire.sections {
        let base = format!("/sections/{}", pointer_token(&name));
        if !is_builtin(&name) && !is_valid_section_name(&name) {
            return Err(ReportError::at(
                base,
                "section names are 1-64 of [a-z0-9_-], and \"host\", \"business\" and \"identity\" are reserved",
            ));
        }
        let result = match section.status {
            SectionStatus::Error => {
                let message = section
                    .error
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or_else(|| "collector failed without a message".to_owned());
                SectionResult::Error(truncate(message, MAX_ERROR_LEN))
            }
            SectionStatus::Ok => {
                let data = section
                    .data
                    .ok_or_else(|| ReportError::at(format!("{base}/data"), "an ok section must carry data"))?;
                SectionResult::Ok(canonical_section(&name, data, &format!("{base}/data"))?)
            }
        };
        sections.insert(name, result);
    }
    Ok(Report {
        report_id: wire.report_id,
        collected_at: wire.collected_at,
        agent: wire.agent,
        host: wire.host,
        sections,
        collected_for: wire.collected_for,
    })
}

fn validate_hostname(pointer: &str, hostname: &str) -> Result<(), ReportError> {
    if hostname.trim().is_empty() {
        return Err(ReportError::at(pointer, "must not be empty"));
    }
    if hostname.len() > MAX_HOSTNAME_LEN {
        return Err(ReportError::at(pointer, format!("longer than {MAX_HOSTNAME_LEN} bytes")));
    }
    if hostname.chars().any(char::is_control) {
        return Err(ReportError::at(pointer, "contains control characters"));
    }
    Ok(())
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Reads section `data` into its canonical state: typed and re-serialized for built-in sections,
/// as-is for external ones (which must be JSON objects).
pub fn canonical_section(name: &str, data: Value, pointer: &str) -> Result<SectionState, ReportError> {
    if !data.is_object() {
        return Err(ReportError::at(pointer, "section data must be a JSON object"));
    }
    // serde reads a struct from an array positionally; components must be objects, so check
    // before the typed parse.
    if let Some((list, _)) = component_list(name)
        && let Some(Value::Array(items)) = data.get(list)
        && let Some(index) = items.iter().position(|item| !item.is_object())
    {
        return Err(ReportError::at(format!("{pointer}/{list}/{index}"), "must be an object"));
    }
    let canonical = match name {
        "basic" => typed::<BasicData>(data, pointer)?,
        "cpu" => typed::<CpuData>(data, pointer)?,
        "board" => typed::<BoardData>(data, pointer)?,
        "memory" => typed::<MemoryData>(data, pointer)?,
        "disk" => typed::<DiskData>(data, pointer)?,
        "nic" => typed::<NicData>(data, pointer)?,
        _ => match data {
            Value::Object(_) => data,
            _ => return Err(ReportError::at(pointer, "an external section's data must be a JSON object")),
        },
    };
    let Value::Object(mut fields) = canonical else {
        return Err(ReportError::at(pointer, "section data must be a JSON object"));
    };
    let mut state = SectionState::default();
    if let Some((list, key_field)) = component_list(name) {
        let Some(Value::Array(items)) = fields.remove(list) else {
            return Err(ReportError::at(format!("{pointer}/{list}"), "missing list"));
        };
        for (index, item) in items.into_iter().enumerate() {
            let Value::Object(component) = item else {
                return Err(ReportError::at(format!("{pointer}/{list}/{index}"), "must be an object"));
            };
            let key = match component.get(key_field) {
                Some(Value::String(key)) if !key.trim().is_empty() => key.clone(),
                _ => {
                    return Err(ReportError::at(
                        format!("{pointer}/{list}/{index}/{key_field}"),
                        "component key must be a non-empty string",
                    ));
                }
            };
            if state.components.insert(key.clone(), component).is_some() {
                return Err(ReportError::at(
                    format!("{pointer}/{list}/{index}/{key_field}"),
                    format!("duplicate component key {key:?}"),
                ));
            }
        }
    }
    state.fields = fields;
    Ok(state)
}

fn typed<T: DeserializeOwned + Serialize>(data: Value, pointer: &str) -> Result<Value, ReportError> {
    let parsed: T = serde_path_to_error::deserialize(data).map_err(|e| {
        let inner = path_to_pointer(e.path());
        ReportError::at(format!("{pointer}{inner}"), e.inner().to_string())
    })?;
    serde_json::to_value(parsed).map_err(|e| ReportError::at(pointer, e.to_string()))
}

/// Deserializes JSON bytes, reporting the JSON pointer of the first problem.
pub fn from_slice_with_pointer<T: DeserializeOwned>(body: &[u8]) -> Result<T, ReportError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let pointer = path_to_pointer(e.path());
        ReportError::at(pointer, e.inner().to_string())
    })?;
    de.end().map_err(|e| ReportError::at("", e.to_string()))?;
    Ok(value)
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        // Unknown segments are where the parser gave up before naming the value (a truncated
        // body): the pointer stops at the last known place.
        let token = match segment {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => pointer_token(key),
            Segment::Enum { variant } => pointer_token(variant),
            Segment::Unknown => continue,
        };
        pointer.push('/');
        pointer.push_str(&token);
    }
    pointer
}

impl Report {
    /// The section, when the report carries it with status ok.
    pub fn ok_section(&self, name: &str) -> Option<&SectionState> {
        match self.sections.get(name) {
            Some(SectionResult::Ok(state)) => Some(state),
            _ => None,
        }
    }

    /// True when the report carries `name` with status error.
    pub fn section_failed(&self, name: &str) -> bool {
        matches!(self.sections.get(name), Some(SectionResult::Error(_)))
    }

    /// The report's sections as wire data again (canonical form), for storage and display.
    pub fn to_wire(&self) -> WireReport {
        let sections = self
            .sections
            .iter()
            .map(|(name, result)| {
                let wire = match result {
                    SectionResult::Ok(state) => WireSection::ok(state.to_data(name)),
                    SectionResult::Error(message) => WireSection::error(message.clone()),
                };
                (name.clone(), wire)
            })
            .collect();
        WireReport {
            schema: SCHEMA_VERSION,
            report_id: self.report_id,
            collected_at: self.collected_at,
            agent: self.agent.clone(),
            host: self.host.clone(),
            sections,
            collected_for: self.collected_for,
        }
    }
}

/// Builds a JSON object from `(key, value)` pairs; a small convenience for tests and collectors.
pub fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in pairs {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_over_a_limit_are_refused_naming_it() {
        let limits = ReportLimits { max_sections: 3, max_components_per_section: 2, max_string_bytes: 16 };
        let with = |sections: Value| {
            let mut doc = sample();
            doc["sections"] = sections;
            parse_report_with(&serde_json::to_vec(&doc).expect("json"), &limits)
        };
        let disk = |slot: &str| json!({"slot": slot, "capacity_bytes": 1});
        // At the limits: accepted.
        with(json!({"disk": {"status": "ok", "data": {"disks": [disk("0"), disk("1")]}}})).expect("two disks");
        let err = with(json!({"disk": {"status": "ok", "data": {"disks": [disk("0"), disk("1"), disk("2")]}}}))
            .expect_err("three disks");
        assert_eq!(err.pointer, "/sections/disk/data/disks");
        assert!(err.message.contains("limits.max_components_per_section"), "{}", err.message);
        let err = with(json!({"x-a": {"status": "ok", "data": {"a": 1, "b": 2, "c": 3}}})).expect_err("external");
        assert_eq!(err.pointer, "/sections/x-a/data");
        let four = json!({"a": {"status": "error", "error": "x"}, "b": {"status": "error", "error": "x"},
                          "c": {"status": "error", "error": "x"}, "d": {"status": "error", "error": "x"}});
        assert!(with(four).expect_err("sections").message.contains("limits.max_sections"));
        let err = with(json!({"x-a": {"status": "ok", "data": {"deep": [{"v": "a".repeat(17)}]}}})).expect_err("long");
        assert_eq!(err.pointer, "/sections/x-a/data/deep/0/v");
        let err = with(json!({"x-a": {"status": "ok", "data": {"k".repeat(17): 1}}})).expect_err("long key");
        assert!(err.message.contains("limits.max_string_bytes"));
        // Error messages are cut, not refused.
        with(json!({"x-a": {"status": "error", "error": "e".repeat(10_000)}})).expect("long error message is cut");
        // The default limits take what real machines send.
        parse_report(&serde_json::to_vec(&sample()).expect("json")).expect("sample");
        assert_eq!(ReportLimits::default().max_components_per_section, 4096);
    }

    fn sample() -> Value {
        json!({
            "schema": 1,
            "report_id": "7d3a5a4e-8f1b-4c1e-9a53-1f0c2b3d4e5f",
            "collected_at": "2026-11-25T10:00:00Z",
            "agent": {"version": "0.1.0", "mode": "agent"},
            "host": {"hostname": "web-01", "previous_hostname": null, "machine_id": null},
            "sections": {
                "cpu": {"status": "ok", "data": {"cpu_count": 4, "cpu_physical_count": 1, "cpu_model": "X"}},
                "disk": {"status": "ok", "data": {"disks": [{"slot": "0:1", "capacity_bytes": 1}]}},
                "raid": {"status": "error", "error": "boom", "data": null},
                "custom": {"status": "ok", "data": {"a": {"b": 1}}}
            }
        })
    }

    fn parse(value: &Value) -> Result<Report, ReportError> {
        parse_report(&serde_json::to_vec(value).expect("serializable"))
    }

    #[test]
    fn parses_and_canonicalizes() {
        let report = parse(&sample()).expect("valid");
        let disk = report.ok_section("disk").expect("disk");
        let component = &disk.components["0:1"];
        assert_eq!(component["model"], Value::Null, "missing optional fields become null");
        assert_eq!(component["capacity_bytes"], json!(1));
        assert!(report.section_failed("raid"));
        assert_eq!(report.ok_section("custom").expect("custom").fields["a"], json!({"b": 1}));
    }

    #[test]
    fn type_errors_name_the_pointer() {
        let mut doc = sample();
        doc["sections"]["disk"]["data"]["disks"][0]["capacity_bytes"] = json!("2 TB");
        let err = parse(&doc).expect_err("string capacity");
        assert_eq!(err.pointer, "/sections/disk/data/disks/0/capacity_bytes");

        let mut doc = sample();
        doc["report_id"] = json!(12);
        assert_eq!(parse(&doc).expect_err("numeric id").pointer, "/report_id");

        let mut doc = sample();
        doc["schema"] = json!(2);
        assert_eq!(parse(&doc).expect_err("schema 2").pointer, "/schema");

        let mut doc = sample();
        doc["sections"]["cpu"]["data"] = json!([8, 1, "Xeon"]);
        assert_eq!(parse(&doc).expect_err("array data").pointer, "/sections/cpu/data");

        let mut doc = sample();
        doc["sections"]["disk"]["data"]["disks"][0] = json!(["0:1", 1]);
        assert_eq!(parse(&doc).expect_err("array component").pointer, "/sections/disk/data/disks/0");

        for loose in ["2026-11-25 10:00:00Z", "2026-11-25T10:00:00 UTC", "2026-1-5T1:2:3Z", " 2026-11-25T10:00:00Z"] {
            let mut doc = sample();
            doc["collected_at"] = json!(loose);
            assert_eq!(parse(&doc).expect_err(loose).pointer, "/collected_at", "{loose}");
        }

        let mut doc = sample();
        doc["report_id"] = json!("00000000-0000-0000-0000-000000000000");
        assert_eq!(parse(&doc).expect_err("nil id").pointer, "/report_id");
    }

    #[test]
    fn duplicate_component_keys_are_refused() {
        let mut doc = sample();
        doc["sections"]["disk"]["data"]["disks"] = json!([{"slot": "a"}, {"slot": "a"}]);
        assert_eq!(parse(&doc).expect_err("dup").pointer, "/sections/disk/data/disks/1/slot");
    }

    #[test]
    fn reserved_and_malformed_section_names_are_refused() {
        for name in ["host", "business", "Bad Name", ""] {
            let mut doc = sample();
            doc["sections"][name] = json!({"status": "ok", "data": {}});
            assert!(parse(&doc).is_err(), "{name:?} must be refused");
        }
    }

    #[test]
    fn unknown_fields_in_builtin_sections_are_refused() {
        let mut doc = sample();
        doc["sections"]["cpu"]["data"]["cores"] = json!(8);
        assert_eq!(parse(&doc).expect_err("unknown").pointer, "/sections/cpu/data/cores");
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let mut body = serde_json::to_vec(&sample()).expect("json");
        body.extend_from_slice(b" {}");
        assert!(parse_report(&body).is_err());
    }

    #[test]
    fn round_trips_through_wire_form() {
        let report = parse(&sample()).expect("valid");
        let again = parse(&serde_json::to_value(report.to_wire()).expect("json")).expect("valid again");
        assert_eq!(report, again);
    }
}
