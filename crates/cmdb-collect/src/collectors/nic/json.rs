//! The JSON form: `ip -j addr show` (iproute2 since about 4.14).
//!
//! The document is an array with one object per interface:
//!
//! ```text
//! {"ifindex":166,"link_index":165,"ifname":"veth513c1a7","flags":["BROADCAST","UP","LOWER_UP"],
//!  "mtu":1500,"qdisc":"noqueue","master":"docker0","operstate":"UP","link_type":"ether",
//!  "address":"12:e7:34:62:55:60","link_netnsid":0,
//!  "addr_info":[{"family":"inet","local":"10.0.0.5","address":"10.0.0.6","prefixlen":32,...}]}
//! ```
//!
//! `ifname` never carries the `@parent` suffix (the parent is a separate `link` or `link_index`
//! key). Keys come and go between versions (`operstate`, `linkmode`, `altnames`, `permaddr`,
//! `link: null` on OpenWrt, interfaces without `addr_info` from `ip -j link`), and some versions
//! print empty `{}` entries in `addr_info`; every field is therefore read on its own and a field
//! of an unexpected type is treated as absent. Several documents one after the other (a capture
//! of `ip -j link; ip -j addr`) are merged by name like the text form.

use cmdb_model::report::Interface;
use serde_json::{Map, Value};

use super::normalize::{self, Family, InterfaceList};

/// Why `ip -j addr show` output could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The text is not JSON (an iproute2 without `-j` prints its usage instead).
    #[error("not JSON: {0}")]
    Syntax(String),
    /// The text is JSON but not an array of interfaces.
    #[error("expected a JSON array of interfaces, found {0}")]
    NotAnArray(&'static str),
    /// The text holds no JSON document.
    #[error("empty output")]
    Empty,
}

/// Parses `ip -j addr show` output into interfaces, in the order listed, merging an interface
/// listed twice. Array elements that are not interface objects (no string `ifname`) are skipped;
/// addresses that do not parse are left out rather than guessed.
pub fn parse_ip_json(text: &str) -> Result<Vec<Interface>, JsonError> {
    let mut list = InterfaceList::default();
    let mut documents = 0;
    for document in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        let document = document.map_err(|e| JsonError::Syntax(e.to_string()))?;
        let Value::Array(entries) = document else {
            return Err(JsonError::NotAnArray(kind(&document)));
        };
        documents += 1;
        for entry in &entries {
            if let Value::Object(fields) = entry {
                read_interface(fields, &mut list);
            }
        }
    }
    if documents == 0 {
        return Err(JsonError::Empty);
    }
    Ok(list.into_vec())
}

/// What a JSON value is, for an error message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_interface(fields: &Map<String, Value>, list: &mut InterfaceList) {
    let Some(name) = fields.get("ifname").and_then(Value::as_str).filter(|n| !n.is_empty()) else { return };
    let index = list.position(name);
    let Some(interface) = list.get_mut(index) else { return };
    if let Some(flags) = fields.get("flags").and_then(Value::as_array) {
        let (up, carrier) = normalize::link_state(flags.iter().filter_map(Value::as_str));
        interface.up = Some(up);
        interface.carrier = Some(carrier);
    }
    if let Some(mtu) = fields.get("mtu").and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok()) {
        interface.mtu = Some(mtu);
    }
    if let Some(master) = fields.get("master").and_then(Value::as_str).filter(|m| !m.is_empty()) {
        interface.master = Some(master.to_owned());
    }
    // `ip -j` prints `link_type` for every link; an entry without it (a hand-trimmed capture)
    // leaves the address as the other fields found it.
    if let Some(link_type) = fields.get("link_type").and_then(Value::as_str) {
        let address = fields.get("address").and_then(Value::as_str).unwrap_or("");
        interface.hwaddr = normalize::hardware_address(link_type, address);
    }
    for entry in fields.get("addr_info").and_then(Value::as_array).into_iter().flatten() {
        if let Some((family, address)) = read_address(entry) {
            normalize::add_address(interface, family, address);
        }
    }
}

/// One `addr_info` entry as `address/prefix`. `local` is this host's address; `address` is the
/// peer on point-to-point links and is used only when `local` is missing (older versions print
/// only `address` for IPv6).
fn read_address(entry: &Value) -> Option<(Family, String)> {
    let family = Family::from_ip_name(entry.get("family")?.as_str()?)?;
    let address =
        entry.get("local").and_then(Value::as_str).or_else(|| entry.get("address").and_then(Value::as_str))?;
    let prefix = match entry.get("prefixlen") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64()?),
    };
    Some((family, normalize::address_with_prefix(family, address, prefix)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn find<'a>(interfaces: &'a [Interface], name: &str) -> &'a Interface {
        interfaces.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no interface {name}"))
    }

    fn names(interfaces: &[Interface]) -> Vec<&str> {
        interfaces.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn one_interface_is_read() {
        let text = r#"[{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1400,
            "qdisc":"pfifo_fast","operstate":"UP","link_type":"ether","address":"02:FC:00:00:00:01",
            "addr_info":[{"family":"inet","local":"192.0.2.2","prefixlen":24,"label":"eth0:1"},
                         {"family":"inet6","local":"fd00::2","prefixlen":64,"scope":"global","nodad":true},
                         {"family":"inet6","local":"fe80::fc:ff:fe00:1","prefixlen":64,"scope":"link"}]}]"#;
        let parsed = parse_ip_json(text).expect("valid");
        assert_eq!(
            parsed,
            vec![Interface {
                name: "eth0".into(),
                hwaddr: Some("02:fc:00:00:00:01".into()),
                up: Some(true),
                carrier: Some(true),
                mtu: Some(1400),
                master: None,
                ipv4: vec!["192.0.2.2/24".into()],
                ipv6: vec!["fd00::2/64".into(), "fe80::fc:ff:fe00:1/64".into()],
            }]
        );
    }

    #[test]
    fn peer_address_uses_local_with_the_prefix() {
        let text = r#"[{"ifname":"tun0","flags":["POINTOPOINT","UP","LOWER_UP"],"link_type":"none",
            "addr_info":[{"family":"inet","local":"192.168.41.6","address":"192.168.41.5","prefixlen":32}]}]"#;
        let tun0 = parse_ip_json(text).expect("valid").remove(0);
        assert_eq!(tun0.ipv4, ["192.168.41.6/32"]);
        assert_eq!(tun0.hwaddr, None);
    }

    #[test]
    fn address_without_local_and_without_prefix() {
        let text = r#"[{"ifname":"eth0","addr_info":[{"family":"inet6","address":"2001:db8::1"},
            {"family":"inet","local":"10.0.0.1","prefixlen":null}]}]"#;
        let eth0 = parse_ip_json(text).expect("valid").remove(0);
        assert_eq!(eth0.ipv6, ["2001:db8::1/128"]);
        assert_eq!(eth0.ipv4, ["10.0.0.1/32"]);
        assert_eq!((eth0.up, eth0.carrier, eth0.mtu), (None, None, None));
    }

    #[test]
    fn no_carrier_master_and_link_types() {
        let text = r#"[
            {"ifname":"wan","link":"eth0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],"mtu":1500,
             "master":"br-wan","link_type":"ether","address":"00:12:34:56:78:9a","addr_info":[]},
            {"ifname":"ip6tnl0","link":null,"flags":["NOARP"],"link_type":"tunnel6","address":"::"},
            {"ifname":"sit0","flags":["NOARP"],"link_type":"sit","address":"0.0.0.0"},
            {"ifname":"gretap0","flags":["BROADCAST","MULTICAST"],"link_type":"ether","address":"00:00:00:00:00:00"},
            {"ifname":"teql0","flags":["NOARP"],"link_type":"void"},
            {"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"link_type":"loopback","address":"00:00:00:00:00:00"}
        ]"#;
        let parsed = parse_ip_json(text).expect("valid");
        let wan = find(&parsed, "wan");
        assert_eq!((wan.up, wan.carrier), (Some(true), Some(false)));
        assert_eq!(wan.master.as_deref(), Some("br-wan"));
        assert_eq!(wan.hwaddr.as_deref(), Some("00:12:34:56:78:9a"));
        for name in ["ip6tnl0", "sit0", "gretap0", "teql0", "lo"] {
            assert_eq!(find(&parsed, name).hwaddr, None, "{name}");
        }
        assert_eq!(find(&parsed, "sit0").up, Some(false));
    }

    #[test]
    fn wrong_types_and_empty_entries_are_skipped() {
        let text = r#"["invalidobject", {"objectwithoutifname":true}, {"ifname":27}, {"ifname":""},
            {"ifname":"withoutflags"},
            {"ifname":"withinvalidflags","flags":27,"mtu":"1500","master":5},
            {"ifname":"mixedflags","flags":[1,2,"UP"],"mtu":99999999999},
            {"ifname":"invalidaddrinfo","addr_info":"invalidtype"},
            {"ifname":"emptyaddr","addr_info":[{},1,"three",{"scope":"global"},{"family":23},
                {"family":"some","local":"10.0.0.1","prefixlen":8},
                {"family":"inet","local":23,"prefixlen":8},
                {"family":"inet","local":"some","prefixlen":23},
                {"family":"inet","local":"10.0.0.1","prefixlen":"string"},
                {"family":"inet","local":"10.0.0.1","prefixlen":64},
                {"family":"inet","local":"10.0.0.2","prefixlen":8}]}
        ]"#;
        let parsed = parse_ip_json(text).expect("valid");
        assert_eq!(names(&parsed), ["withoutflags", "withinvalidflags", "mixedflags", "invalidaddrinfo", "emptyaddr"]);
        let invalid = find(&parsed, "withinvalidflags");
        assert_eq!((invalid.up, invalid.mtu, invalid.master.as_deref()), (None, None, None));
        let mixed = find(&parsed, "mixedflags");
        assert_eq!((mixed.up, mixed.carrier, mixed.mtu), (Some(true), Some(false), None));
        assert_eq!(find(&parsed, "emptyaddr").ipv4, ["10.0.0.2/8"]);
    }

    #[test]
    fn several_documents_merge_by_name() {
        let link = r#"[{"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"link_type":"loopback"},
            {"ifname":"eth0","flags":["UP"],"mtu":1500,"link_type":"ether","address":"52:54:00:12:34:56"}]"#;
        let addr = r#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifname":"eth0","flags":["UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24}]},
            {"ifname":"eth0","addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24}]}]"#;
        let parsed = parse_ip_json(&format!("{link}\n{addr}\n")).expect("valid");
        assert_eq!(names(&parsed), ["lo", "eth0"]);
        let eth0 = find(&parsed, "eth0");
        assert_eq!(eth0.ipv4, ["10.0.0.1/24"]);
        assert_eq!((eth0.carrier, eth0.mtu), (Some(true), Some(1500)));
        assert_eq!(eth0.hwaddr.as_deref(), Some("52:54:00:12:34:56"));
    }

    #[test]
    fn unreadable_documents_are_errors() {
        assert!(matches!(parse_ip_json(""), Err(JsonError::Empty)));
        assert!(matches!(parse_ip_json("  \n"), Err(JsonError::Empty)));
        assert!(matches!(parse_ip_json("{}"), Err(JsonError::NotAnArray("an object"))));
        assert!(matches!(parse_ip_json("{;]}"), Err(JsonError::Syntax(_))));
        assert!(matches!(parse_ip_json("[]\n[{\"ifname\":"), Err(JsonError::Syntax(_))));
        let usage = "Option \"-j\" is unknown, try \"ip -help\".\n";
        let err = parse_ip_json(usage).expect_err("usage text is not JSON");
        assert!(err.to_string().starts_with("not JSON"), "{err}");
        assert_eq!(parse_ip_json("[]").expect("valid"), Vec::<Interface>::new());
    }

    #[test]
    fn cloud_init_json_matches_its_text_capture() {
        // The same VM captured both ways (cloud-init's netinfo test data).
        let json = parse_ip_json(include_str!("testdata/cloud-init-ipaddrshow.json")).expect("valid");
        let text = super::super::text::parse_ip_text(include_str!("testdata/cloud-init-ipaddrshow.out"));
        assert_eq!(json, text);

        let down = parse_ip_json(include_str!("testdata/cloud-init-ipaddrshow-down.json")).expect("valid");
        let eth0 = find(&down, "eth0");
        assert_eq!(
            (eth0.up, eth0.carrier, eth0.hwaddr.as_deref()),
            (Some(false), Some(false), Some("00:16:3e:de:51:a6"))
        );
        assert!(eth0.ipv4.is_empty() && eth0.ipv6.is_empty());
    }

    #[test]
    fn kind_node_sample() {
        let parsed = parse_ip_json(include_str!("testdata/metallb-kind-node.json")).expect("valid");
        assert_eq!(names(&parsed), ["lo", "veth4b6ac7a6", "eth0", "eth1"]);
        assert_eq!(find(&parsed, "veth4b6ac7a6").ipv4, ["10.244.1.1/32"]);
        let eth0 = find(&parsed, "eth0");
        assert_eq!(eth0.hwaddr.as_deref(), Some("02:42:ac:12:00:02"));
        assert_eq!(eth0.ipv4, ["172.18.0.2/16"]);
        assert_eq!(eth0.ipv6, ["fc00:f853:ccd:e793::2/64", "fe80::42:acff:fe12:2/64"]);
        assert_eq!(find(&parsed, "lo").hwaddr, None);
    }

    #[test]
    fn openwrt_sample() {
        let parsed = parse_ip_json(include_str!("testdata/nethsec-openwrt.json")).expect("valid");
        assert_eq!(
            names(&parsed),
            ["vnet3", "eth0", "eth1", "eth2", "eth3", "ifb-dns", "br-lan", "bond-bond1", "tuntunsubnet"]
        );
        assert_eq!(find(&parsed, "vnet3").master.as_deref(), Some("virbr2"));
        assert_eq!(find(&parsed, "vnet3").ipv6, ["fe80::fc62:31ff:fe19:b29/64"]);
        assert_eq!(find(&parsed, "eth0").master.as_deref(), Some("br-lan"));
        assert_eq!(find(&parsed, "eth2").up, Some(false));
        let bond = find(&parsed, "bond-bond1");
        assert_eq!(
            (bond.up, bond.carrier, bond.hwaddr.as_deref()),
            (Some(true), Some(true), Some("52:54:00:ad:6f:63"))
        );
        assert_eq!(find(&parsed, "tuntunsubnet").hwaddr, None);
    }

    /// Every interface the parser reports obeys the report's rules, whatever the input.
    fn assert_well_formed(interfaces: &[Interface]) {
        let mut seen = std::collections::HashSet::new();
        for i in interfaces {
            assert!(!i.name.is_empty());
            assert!(seen.insert(i.name.clone()), "{} listed twice", i.name);
            for v4 in &i.ipv4 {
                let (a, p) = v4.split_once('/').unwrap_or_else(|| panic!("no prefix in {v4}"));
                assert!(a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32), "{v4}");
            }
            for v6 in &i.ipv6 {
                let (a, p) = v6.split_once('/').unwrap_or_else(|| panic!("no prefix in {v6}"));
                assert!(a.parse::<std::net::Ipv6Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 128), "{v6}");
            }
        }
    }

    const REAL_SAMPLES: &[&str] = &[
        include_str!("testdata/this-vm.json"),
        include_str!("testdata/cloud-init-ipaddrshow.json"),
        include_str!("testdata/cloud-init-ipaddrshow-down.json"),
        include_str!("testdata/metallb-kind-node.json"),
        include_str!("testdata/nethsec-openwrt.json"),
    ];

    /// Arbitrary JSON values, nested a few levels, with the keys `ip -j` uses so the parser's
    /// field handling is exercised rather than only its "not an object" branch.
    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec![
            "ifname",
            "flags",
            "mtu",
            "master",
            "link_type",
            "address",
            "addr_info",
            "family",
            "local",
            "prefixlen",
            "x",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop::sample::select(vec![
                "inet",
                "inet6",
                "UP",
                "LOWER_UP",
                "ether",
                "sit",
                "10.0.0.1",
                "::1",
                "aa:bb:cc:dd:ee:ff",
                "eth0",
                ""
            ])
            .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..8)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            if let Ok(parsed) = parse_ip_json(&text) {
                assert_well_formed(&parsed);
            }
        }

        #[test]
        fn arbitrary_json_never_panics(documents in prop::collection::vec(arbitrary_json(), 0..3)) {
            let text: String = documents.iter().map(|d| format!("{d}\n")).collect();
            if let Ok(parsed) = parse_ip_json(&text) {
                assert_well_formed(&parsed);
            }
        }

        #[test]
        fn mutated_real_samples_never_panic(
            sample in 0..REAL_SAMPLES.len(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>()), 1..12),
        ) {
            let mut text: Vec<char> = REAL_SAMPLES[sample].chars().collect();
            for (at, kind, ch) in edits {
                if text.is_empty() {
                    break;
                }
                let i = at.index(text.len());
                match kind {
                    0 => { text.remove(i); }
                    1 => text.insert(i, ch),
                    2 => text[i] = ch,
                    _ => text.truncate(i),
                }
            }
            let text: String = text.into_iter().collect();
            if let Ok(parsed) = parse_ip_json(&text) {
                assert_well_formed(&parsed);
            }
        }
    }

    #[test]
    fn real_samples_are_well_formed_and_non_empty() {
        for sample in REAL_SAMPLES {
            let parsed = parse_ip_json(sample).expect("real sample parses");
            assert!(!parsed.is_empty());
            assert_well_formed(&parsed);
        }
    }
}
