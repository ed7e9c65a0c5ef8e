//! What the asset list needs at a glance, derived from an asset's state.
//!
//! The state (sections and components) is the truth; the `assets` row carries a denormalized copy
//! of the few facts the list, its filters and identity matching read, and `search_terms` carries
//! the words `q` can find. Both are recomputed from the state whenever the state changes, in the
//! same transaction, so they can never drift from it.

use std::collections::BTreeSet;

use cmdb_model::business::BusinessFields;
use cmdb_model::identity::{normalize_machine_id, normalize_serial, normalize_uuid};
use cmdb_model::state::{AssetState, BUSINESS_SECTION, HOST_SECTION, IDENTITY_SECTION};
use serde_json::Value;

/// The denormalized columns of an `assets` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetSummary {
    /// Host name (from the `host` pseudo-section).
    pub hostname: String,
    /// Normalized board UUID (identity).
    pub board_uuid: Option<String>,
    /// Normalized board serial (identity).
    pub board_sn: Option<String>,
    /// Board manufacturer as used for identity.
    pub board_manufacturer: Option<String>,
    /// Normalized machine id (identity).
    pub machine_id: Option<String>,
    /// The business fields.
    pub business: BusinessFields,
    /// Distribution name.
    pub os_name: Option<String>,
    /// Distribution version.
    pub os_version: Option<String>,
    /// Board manufacturer as reported.
    pub manufacturer: Option<String>,
    /// Board model.
    pub model: Option<String>,
    /// Board serial as reported.
    pub serial: Option<String>,
    /// CPU model.
    pub cpu_model: Option<String>,
    /// Logical CPUs.
    pub cpu_count: Option<i64>,
    /// Memory in MiB.
    pub memory_mb: Option<i64>,
    /// Sum of disk capacities in bytes.
    pub disk_bytes: Option<i64>,
    /// Every IPv4/IPv6 address without prefix, space-separated.
    pub ip_addresses: String,
    /// When the record was deleted (Unix µs), while it is; merged records are deleted too.
    pub deleted_at: Option<i64>,
    /// The asset this record was merged into.
    pub merged_into: Option<i64>,
}

fn text(state: &AssetState, section: &str, field: &str) -> Option<String> {
    state.str_field(section, field).map(str::to_owned)
}

fn int(state: &AssetState, section: &str, field: &str) -> Option<i64> {
    state.field(section, field).and_then(Value::as_i64)
}

fn addresses(state: &AssetState) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(nic) = state.sections.get("nic") {
        for interface in nic.components.values() {
            for family in ["ipv4", "ipv6"] {
                if let Some(Value::Array(list)) = interface.get(family) {
                    for address in list.iter().filter_map(Value::as_str) {
                        out.push(address.split('/').next().unwrap_or(address).to_owned());
                    }
                }
            }
        }
    }
    out
}

/// True for a link-local address (`fe80::/10`, `169.254.0.0/16`); text that is no address is not.
fn is_link_local(address: &str) -> bool {
    match address.split('%').next().unwrap_or(address).parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_link_local(),
        Ok(std::net::IpAddr::V6(v6)) => v6.is_unicast_link_local(),
        Err(_) => false,
    }
}

impl AssetSummary {
    /// Derives the summary from a state.
    pub fn from_state(state: &AssetState) -> Self {
        let business =
            state.sections.get(BUSINESS_SECTION).map(|s| BusinessFields::from_fields(&s.fields)).unwrap_or_default();
        let manufacturer = text(state, "board", "manufacturer");
        let serial = text(state, "board", "sn");
        let disk_bytes = state
            .sections
            .get("disk")
            .map(|disk| disk.components.values().filter_map(|d| d.get("capacity_bytes").and_then(Value::as_i64)).sum());
        AssetSummary {
            hostname: text(state, HOST_SECTION, "hostname").unwrap_or_default(),
            board_uuid: state.str_field("board", "uuid").and_then(normalize_uuid),
            board_sn: serial.as_deref().and_then(normalize_serial),
            board_manufacturer: manufacturer.as_deref().and_then(normalize_serial),
            machine_id: state.str_field(HOST_SECTION, "machine_id").and_then(normalize_machine_id),
            business,
            os_name: text(state, "basic", "os_name"),
            os_version: text(state, "basic", "os_version"),
            manufacturer,
            model: text(state, "board", "model"),
            serial,
            cpu_model: text(state, "cpu", "cpu_model"),
            cpu_count: int(state, "cpu", "cpu_count"),
            memory_mb: int(state, "memory", "total_mb"),
            disk_bytes,
            // The list's addresses leave out link-local ones (fe80::/10, 169.254/16): every
            // interface has one and none is how a person reaches the host. Search still finds them.
            ip_addresses: addresses(state).into_iter().filter(|a| !is_link_local(a)).collect::<Vec<_>>().join(" "),
            deleted_at: state
                .str_field(IDENTITY_SECTION, "deleted_at")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros()),
            merged_into: int(state, IDENTITY_SECTION, "merged_into"),
        }
    }

    /// Custom values as stored in the `custom` column: the canonical JSON object.
    pub fn custom_column(&self) -> String {
        serde_json::to_string(&self.business.custom).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Tags as stored in the `tags` column: ",a,b," so one tag filters with `LIKE '%,a,%'`.
    pub fn tags_column(&self) -> String {
        if self.business.tags.is_empty() { String::new() } else { format!(",{},", self.business.tags.join(",")) }
    }
}

/// Lowercase search terms for an asset: host names, addresses, MACs, serials, models, owner, IDC,
/// cabinet, asset tag, and every
/// suffix of a host name that starts after a separator (so "web" finds "prod-web-01").
pub fn search_terms(state: &AssetState) -> BTreeSet<String> {
    let mut terms = BTreeSet::new();
    let mut add = |value: &str| {
        let value = value.trim().to_lowercase();
        if !value.is_empty() && value.len() <= 200 {
            terms.insert(value);
        }
    };
    for (section, field) in [
        (HOST_SECTION, "hostname"),
        ("basic", "hostname"),
        ("board", "sn"),
        ("board", "uuid"),
        ("board", "model"),
        ("board", "manufacturer"),
        ("cpu", "cpu_model"),
        (BUSINESS_SECTION, "manage_address"),
        (BUSINESS_SECTION, "salt_minion_id"),
        // People look a host up by who owns it and where it stands.
        (BUSINESS_SECTION, "owner"),
        (BUSINESS_SECTION, "idc"),
        (BUSINESS_SECTION, "cabinet"),
        (BUSINESS_SECTION, "asset_tag"),
    ] {
        if let Some(value) = state.str_field(section, field) {
            add(value);
        }
    }
    for hostname in
        [state.str_field(HOST_SECTION, "hostname"), state.str_field("basic", "hostname")].into_iter().flatten()
    {
        for (index, c) in hostname.char_indices() {
            if matches!(c, '-' | '.' | '_') {
                add(&hostname[index + c.len_utf8()..]);
            }
        }
    }
    for address in addresses(state) {
        add(&address);
    }
    for (section, fields) in
        [("disk", &["sn", "model"][..]), ("memory", &["sn", "part_number"][..]), ("nic", &["hwaddr"][..])]
    {
        if let Some(s) = state.sections.get(section) {
            for component in s.components.values() {
                for field in fields {
                    if let Some(value) = component.get(*field).and_then(Value::as_str) {
                        add(value);
                    }
                }
            }
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdb_model::state::SectionState;
    use serde_json::json;

    #[test]
    fn summary_and_terms() {
        let mut state = AssetState::default();
        let host = json!({"hostname": "prod-web-01.example", "machine_id": null});
        state.sections.insert("host".into(), SectionState::from_fields(host.as_object().cloned().unwrap_or_default()));
        let mut nic = SectionState::default();
        nic.components.insert(
            "eth0".into(),
            json!({"name": "eth0", "hwaddr": "00:1C:42:A5:57:7A", "ipv4": ["10.0.0.5/24"], "ipv6": ["fe80::1/64"]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        state.sections.insert("nic".into(), nic);
        let summary = AssetSummary::from_state(&state);
        assert_eq!(summary.hostname, "prod-web-01.example");
        assert_eq!(summary.ip_addresses, "10.0.0.5", "link-local addresses are left out of the list");
        assert!(is_link_local("169.254.10.1") && is_link_local("fe80::1%eth0") && !is_link_local("fd00::1"));
        let terms = search_terms(&state);
        for t in [
            "prod-web-01.example",
            "web-01.example",
            "01.example",
            "example",
            "10.0.0.5",
            "fe80::1",
            "00:1c:42:a5:57:7a",
        ] {
            assert!(terms.contains(t), "{t} missing from {terms:?}");
        }
    }
}
