//! The nic collector run through the real plan over every replay directory in `fixtures/hosts`,
//! checked against the facts table of `fixtures/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cmdb_collect::{CollectOptions, Plan, replay};
use cmdb_model::report::{Interface, NicData, SectionStatus};

/// Every interface each fixture host lists, in the kernel's order (fixtures/README.md, NICs column).
const ALL_INTERFACES: &[(&str, &[&str])] = &[
    ("course-canonical", &["lo", "eth0", "virbr0", "virbr0-nic"]),
    (
        "lenovo-rd650",
        &[
            "lo",
            "ens4f0",
            "ens4f1",
            "ens7f0",
            "ens7f1",
            "ens8",
            "ens8d1",
            "docker0",
            "veth513c1a7",
            "veth1a40bc6",
            "veth8cc7fb6",
            "vethd498b2d",
            "vethbacafb4",
            "veth164cfec",
        ],
    ),
    ("this-vm", &["lo", "ifb0", "ifb1", "eth0"]),
    ("dell-r630", &["lo", "eth0", "tun0", "tun1", "wlan0", "tap0"]),
    ("hp-dl180-g6", &["lo", "eth0", "eql", "sit0", "wlan0"]),
    ("oracle-x5-2-oda", &["lo", "eth0", "sit0"]),
];

fn hosts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hosts")
}

/// The nic section the real plan produces for replay directory `dir`.
fn nic_section(dir: &Path, options: CollectOptions) -> Vec<Interface> {
    let plan = Plan::new(&["nic".to_owned()], &[], options).expect("nic plans");
    let outputs = replay::read_dir(dir, plan.probes()).expect("replay directory reads");
    let sections = plan.sections(&outputs);
    let section = sections.get("nic").expect("nic section present");
    assert_eq!(section.status, SectionStatus::Ok, "{}: {:?}", dir.display(), section.error);
    let data = section.data.clone().expect("ok section has data");
    serde_json::from_value::<NicData>(data).expect("nic data has the v1 shape").interfaces
}

fn host(name: &str) -> Vec<Interface> {
    nic_section(&hosts_dir().join(name), CollectOptions::default())
}

fn find<'a>(interfaces: &'a [Interface], name: &str) -> &'a Interface {
    interfaces.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no interface {name} in {interfaces:?}"))
}

fn names(interfaces: &[Interface]) -> Vec<&str> {
    interfaces.iter().map(|i| i.name.as_str()).collect()
}

fn fixture_hosts() -> Vec<String> {
    let mut hosts: Vec<String> = std::fs::read_dir(hosts_dir())
        .expect("fixtures/hosts exists")
        .map(|entry| entry.expect("directory entry"))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    hosts.sort();
    hosts
}

#[test]
fn every_fixture_host_reports_its_interfaces_minus_the_default_exclusions() {
    let expected: BTreeMap<&str, &[&str]> = ALL_INTERFACES.iter().copied().collect();
    let hosts = fixture_hosts();
    assert!(hosts.len() >= ALL_INTERFACES.len(), "fixture hosts missing: {hosts:?}");
    for host_name in &hosts {
        let all = expected
            .get(host_name.as_str())
            .unwrap_or_else(|| panic!("fixture host {host_name} has no expected NIC list here; add it"));
        let want: Vec<&str> = all.iter().copied().filter(|n| *n != "lo" && !n.starts_with("veth")).collect();
        assert_eq!(names(&host(host_name)), want, "{host_name}");
    }
}

#[test]
fn empty_exclusion_list_reports_every_interface() {
    for host_name in fixture_hosts() {
        let all = ALL_INTERFACES
            .iter()
            .find(|(h, _)| *h == host_name)
            .map(|(_, names)| *names)
            .unwrap_or_else(|| panic!("fixture host {host_name} has no expected NIC list here"));
        let got = nic_section(&hosts_dir().join(&host_name), CollectOptions { nic_exclude: Vec::new() });
        assert_eq!(names(&got), all, "{host_name}");
    }
    let lenovo = nic_section(&hosts_dir().join("lenovo-rd650"), CollectOptions { nic_exclude: Vec::new() });
    assert_eq!(lenovo.len(), 14);
    let veth = find(&lenovo, "veth513c1a7");
    assert_eq!(veth.master.as_deref(), Some("docker0"));
    assert_eq!(veth.hwaddr.as_deref(), Some("12:e7:34:62:55:60"));
    assert_eq!(veth.ipv6, ["fe80::10e7:34ff:fe62:5560/64"]);
    let lo = find(&lenovo, "lo");
    assert_eq!(lo.hwaddr, None);
    assert_eq!((lo.ipv4.clone(), lo.ipv6.clone()), (vec!["127.0.0.1/8".to_owned()], vec!["::1/128".to_owned()]));
}

#[test]
fn custom_exclusions_apply_to_replayed_hosts() {
    let options = CollectOptions { nic_exclude: vec!["lo".into(), "ens*".into(), "docker0".into()] };
    let got = nic_section(&hosts_dir().join("lenovo-rd650"), options);
    assert_eq!(names(&got), ["veth513c1a7", "veth1a40bc6", "veth8cc7fb6", "vethd498b2d", "vethbacafb4", "veth164cfec"]);
}

#[test]
fn tunnel_peer_addresses_and_links_without_mac() {
    let dell = host("dell-r630");
    let tun0 = find(&dell, "tun0");
    assert_eq!(tun0.ipv4, ["192.168.41.6/32"]);
    assert_eq!((tun0.hwaddr.as_deref(), tun0.up, tun0.carrier), (None, Some(true), Some(true)));
    assert_eq!(find(&dell, "tun1").ipv4, ["192.168.222.14/32"]);
    assert_eq!(find(&dell, "tap0").hwaddr.as_deref(), Some("8a:84:99:29:46:05"));
    assert_eq!(find(&dell, "tap0").ipv4, ["172.28.218.101/24"]);

    let hp = host("hp-dl180-g6");
    let eql = find(&hp, "eql");
    assert_eq!((eql.hwaddr.as_deref(), eql.up, eql.mtu), (None, Some(false), Some(576)));
    let sit0 = find(&hp, "sit0");
    assert_eq!((sit0.hwaddr.as_deref(), sit0.up, sit0.mtu), (None, Some(false), Some(1480)));
}

#[test]
fn several_ipv4_addresses_and_global_ipv6() {
    let hp = host("hp-dl180-g6");
    let eth0 = find(&hp, "eth0");
    assert_eq!(eth0.ipv4, ["11.11.11.11/25", "172.16.0.201/17"]);
    assert_eq!(eth0.ipv6, ["fe80::201:29ff:fed1:feb4/64"]);
    assert_eq!(eth0.hwaddr.as_deref(), Some("0f:0f:0f:0f:0f:0f"));

    let dell = host("dell-r630");
    assert_eq!(find(&dell, "eth0").ipv6, ["2a01:e34:ef9c:64d0:223:18ff:fe91:db8d/64", "fe80::223:18ff:fe91:db8d/64"]);
    let course = host("course-canonical");
    let eth0 = find(&course, "eth0");
    assert_eq!(eth0.ipv4, ["10.211.55.4/24"]);
    assert_eq!(eth0.ipv6, ["fdb2:2c26:f4e4:0:21c:42ff:fea5:577a/64", "fe80::21c:42ff:fea5:577a/64"]);
    let vm = host("this-vm");
    assert_eq!(find(&vm, "eth0").ipv6, ["fd00::2/64", "fe80::fc:ff:fe00:1/64"]);
}

#[test]
fn macs_state_and_mtu() {
    let course = host("course-canonical");
    let eth0 = find(&course, "eth0");
    assert_eq!(
        (eth0.hwaddr.as_deref(), eth0.up, eth0.carrier, eth0.mtu),
        (Some("00:1c:42:a5:57:7a"), Some(true), Some(true), Some(1500))
    );
    let nic = find(&course, "virbr0-nic");
    assert_eq!((nic.hwaddr.as_deref(), nic.up, nic.carrier), (Some("52:54:00:a3:74:29"), Some(false), Some(false)));
    // Listed by both the `ip link` and the `ip addr` pass, reported once with its address once.
    assert_eq!(find(&course, "virbr0").ipv4, ["192.168.122.1/24"]);

    // Old iproute2 without `state`.
    let oracle = host("oracle-x5-2-oda");
    let eth0 = find(&oracle, "eth0");
    assert_eq!(
        (eth0.hwaddr.as_deref(), eth0.up, eth0.carrier, eth0.mtu),
        (Some("00:50:56:8b:70:b7"), Some(true), Some(true), Some(1500))
    );
    assert_eq!(eth0.ipv4, ["10.40.1.16/24"]);

    // UP without carrier: an unplugged port.
    let lenovo = host("lenovo-rd650");
    let port = find(&lenovo, "ens4f1");
    assert_eq!((port.up, port.carrier, port.hwaddr.as_deref()), (Some(true), Some(false), Some("a0:36:9f:95:bb:0d")));
    let dell = host("dell-r630");
    assert_eq!((find(&dell, "wlan0").up, find(&dell, "wlan0").carrier), (Some(true), Some(false)));

    let vm = host("this-vm");
    let ifb0 = find(&vm, "ifb0");
    assert_eq!((ifb0.hwaddr.as_deref(), ifb0.up, ifb0.mtu), (Some("aa:1b:6c:80:2b:e4"), Some(false), Some(1500)));
    assert_eq!(find(&vm, "eth0").mtu, Some(1400));
}

#[test]
fn this_vm_json_and_text_paths_agree() {
    let dir = hosts_dir().join("this-vm");
    assert!(dir.join("ip-addr.json").is_file() && dir.join("nic.out").is_file(), "this-vm keeps both captures");
    let everything = || CollectOptions { nic_exclude: Vec::new() };
    let from_json = nic_section(&dir, everything());

    // The same directory without ip-addr.json makes the plan fall back to nic.out.
    let text_only = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&dir).expect("this-vm reads") {
        let entry = entry.expect("directory entry");
        if entry.file_name() != "ip-addr.json" {
            std::fs::copy(entry.path(), text_only.path().join(entry.file_name())).expect("copy fixture file");
        }
    }
    let from_text = nic_section(text_only.path(), everything());

    assert_eq!(names(&from_json), ["lo", "ifb0", "ifb1", "eth0"]);
    assert_eq!(from_json, from_text);
    let eth0 = find(&from_json, "eth0");
    assert_eq!(eth0.hwaddr.as_deref(), Some("02:fc:00:00:00:01"));
    assert_eq!(eth0.ipv4, ["192.0.2.2/24"]);
}

#[test]
fn replayed_sections_pass_report_validation() {
    for host_name in fixture_hosts() {
        let interfaces = nic_section(&hosts_dir().join(&host_name), CollectOptions { nic_exclude: Vec::new() });
        let value = serde_json::to_value(NicData { interfaces }).expect("serializes");
        cmdb_model::report::canonical_section("nic", value, "/sections/nic/data")
            .unwrap_or_else(|e| panic!("{host_name}: {e}"));
    }
}

/// This machine's own `ip`, run through the real bundled script: the JSON probe feeds the section,
/// and the text probe, parsed on its own, must describe the same interfaces.
#[test]
fn live_host_json_and_text_forms_agree() {
    let has_ip = std::process::Command::new("sh")
        .args(["-c", "command -v ip >/dev/null 2>&1 && ip -j addr show >/dev/null 2>&1"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_ip {
        eprintln!("skipping: this machine has no iproute2 with -j");
        return;
    }
    let plan = Plan::new(&["nic".to_owned()], &[], CollectOptions { nic_exclude: Vec::new() }).expect("nic plans");
    let boundary = cmdb_collect::bundle::new_boundary();
    let script = plan.script(cmdb_collect::Become::None, &boundary);
    let run = std::process::Command::new("sh").args(["-c", &script]).output().expect("sh runs the bundled script");
    let outputs = plan.split(&run.stdout, &boundary);

    let json = outputs.succeeded("ip-json").expect("ip -j addr show ran");
    let text = outputs.succeeded("ip-text").expect("ip addr show ran");
    let from_json = cmdb_collect::collectors::nic::parse_ip_json(&json.text()).expect("live JSON parses");
    let from_text = cmdb_collect::collectors::nic::parse_ip_text(&text.text());
    assert!(!from_json.is_empty() && from_json.iter().any(|i| i.name == "lo"), "{from_json:?}");
    assert_eq!(from_json, from_text);

    let section = plan.sections(&outputs).remove("nic").expect("nic section");
    assert_eq!(section.status, SectionStatus::Ok, "{:?}", section.error);
    let reported: NicData = serde_json::from_value(section.data.expect("data")).expect("v1 shape");
    assert_eq!(reported.interfaces, from_json);
}
