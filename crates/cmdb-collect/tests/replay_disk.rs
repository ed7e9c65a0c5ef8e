//! The disk collector run through the real plan over every replay directory in `fixtures/hosts`,
//! checked against the disk column of `fixtures/README.md`'s facts table. Capacities are the
//! exact MegaCli sector counts times 512 (the table's "279.396 GB" is that count in GiB, rounded).

use std::path::{Path, PathBuf};

use chrono::Utc;
use cmdb_collect::plan::HostContext;
use cmdb_collect::{CollectOptions, Plan, replay};
use cmdb_model::report::{Disk, DiskData, Mode, SectionStatus};

/// One expected drive: slot, exact capacity, interface, media.
type Expected = (&'static str, u64, &'static str, &'static str);

/// The same facts as the collector reported them (any of them may be missing).
type Reported<'a> = (&'a str, Option<u64>, Option<&'a str>, Option<&'a str>);

const SAS_279: u64 = 0x22ecb25c * 512;
const SATA_476: u64 = 0x3b9e12b0 * 512;
const SATA_2728: u64 = 0x15d50a3b0 * 512;
const SSD_447: u64 = 0x37e436b0 * 512;
const SAS_558: u64 = 0x45dd2fb0 * 512;
const SSD_223: u64 = 0x1bf244b0 * 512;

/// Every fixture host with the drives the README's table lists, in slot order.
const HOSTS: &[(&str, &[Expected])] = &[
    (
        "course-canonical",
        &[
            ("32:0", SAS_279, "SAS", "hdd"),
            ("32:1", SAS_279, "SAS", "hdd"),
            ("32:2", SATA_476, "SATA", "ssd"),
            ("32:3", SATA_476, "SATA", "ssd"),
            ("32:4", SATA_476, "SATA", "ssd"),
            ("32:5", SATA_476, "SATA", "ssd"),
        ],
    ),
    (
        "lenovo-rd650",
        &[
            ("0:0", SATA_2728, "SATA", "hdd"),
            ("0:1", SATA_2728, "SATA", "hdd"),
            ("0:2", SATA_2728, "SATA", "hdd"),
            ("0:3", SATA_2728, "SATA", "hdd"),
            ("0:4", SATA_2728, "SATA", "hdd"),
            ("0:5", SATA_2728, "SATA", "hdd"),
            ("0:6", SATA_2728, "SATA", "hdd"),
            ("0:7", SATA_2728, "SATA", "hdd"),
            ("0:8", SATA_2728, "SATA", "hdd"),
            ("0:9", SATA_2728, "SATA", "hdd"),
            ("0:10", SSD_447, "SATA", "ssd"),
            ("0:11", SSD_447, "SATA", "ssd"),
        ],
    ),
    ("this-vm", &[("vda", 274_877_906_944, "virtio", "hdd")]),
    (
        "dell-r630",
        &[
            ("32:0", SAS_279, "SAS", "hdd"),
            ("32:1", SAS_279, "SAS", "hdd"),
            ("32:2", SAS_279, "SAS", "hdd"),
            ("32:3", SAS_279, "SAS", "hdd"),
        ],
    ),
    ("hp-dl180-g6", &[("32:0", SAS_558, "SAS", "hdd"), ("32:1", SAS_558, "SAS", "hdd")]),
    ("oracle-x5-2-oda", &[("32:0", SSD_223, "SATA", "ssd"), ("32:1", SSD_223, "SATA", "ssd")]),
];

fn hosts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hosts")
}

fn disk_plan() -> Plan {
    Plan::new(&["disk".to_owned()], &[], CollectOptions::default()).expect("disk plans")
}

/// The disk section the real plan produces for replay directory `dir`.
fn disks(dir: &Path) -> Vec<Disk> {
    let plan = disk_plan();
    let outputs = replay::read_dir(dir, plan.probes()).expect("replay directory reads");
    let sections = plan.sections(&outputs);
    let section = sections.get("disk").expect("disk section present");
    assert_eq!(section.status, SectionStatus::Ok, "{}: {:?}", dir.display(), section.error);
    let data = section.data.clone().expect("ok section has data");
    serde_json::from_value::<DiskData>(data).expect("disk data has the v1 shape").disks
}

#[test]
fn every_fixture_host_has_exactly_the_documented_disks() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(hosts_dir()).expect("fixtures/hosts exists") {
        let path = entry.expect("directory entry").path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 host name").to_owned();
        let expected = HOSTS.iter().find(|(host, _)| *host == name).map(|(_, disks)| *disks).unwrap_or_else(|| {
            panic!("fixture host {name} has no expected disks here; add it from fixtures/README.md")
        });
        let got = disks(&path);
        let summary: Vec<Reported<'_>> =
            got.iter().map(|d| (d.slot.as_str(), d.capacity_bytes, d.pd_type.as_deref(), d.media.as_deref())).collect();
        let wanted: Vec<Reported<'_>> =
            expected.iter().map(|&(slot, bytes, kind, media)| (slot, Some(bytes), Some(kind), Some(media))).collect();
        assert_eq!(summary, wanted, "{name}");
        seen.push(name);
    }
    seen.sort();
    let mut all: Vec<String> = HOSTS.iter().map(|(host, _)| (*host).to_owned()).collect();
    all.sort();
    assert_eq!(seen, all, "every documented host has a replay directory");
}

#[test]
fn identity_fields_of_the_fixture_drives() {
    let course = disks(&hosts_dir().join("course-canonical"));
    let first = &course[0];
    assert_eq!(
        (first.vendor.as_deref(), first.model.as_deref(), first.sn.as_deref(), first.firmware.as_deref()),
        (Some("Seagate"), Some("ST300MM0006"), Some("S0K2B5NV"), Some("LS08"))
    );
    let samsung = &course[2];
    assert_eq!(
        (samsung.vendor.as_deref(), samsung.model.as_deref(), samsung.sn.as_deref(), samsung.firmware.as_deref()),
        (Some("Samsung"), Some("Samsung SSD 850 PRO 512GB"), Some("S1SZNSAFA01085L"), Some("1B6Q"))
    );

    let lenovo = disks(&hosts_dir().join("lenovo-rd650"));
    let serials: Vec<&str> = lenovo.iter().filter_map(|d| d.sn.as_deref()).collect();
    assert_eq!(
        serials,
        vec![
            "Z1Y3ZK3N",
            "Z1Y3ZK3V",
            "Z1Y40BXL",
            "Z1Y3ZK1Q",
            "Z1Y40BXA",
            "Z1Y40CAA",
            "Z1Y40BQY",
            "Z1Y3ZMCS",
            "Z1Y40BT8",
            "Z1Y40BVJ",
            "PHWL539200YR480QGN",
            "PHWL539307X5480QGN"
        ],
        "serials glued to the model are split off"
    );
    assert!(lenovo[..10].iter().all(|d| d.model.as_deref() == Some("ST3000NM0033-9ZM178")));
    assert!(lenovo[10..].iter().all(|d| d.model.as_deref() == Some("INTEL SSDSC2BB480G4L")
        && d.vendor.as_deref() == Some("Intel")
        && d.firmware.as_deref() == Some("LD12")));

    let hp = disks(&hosts_dir().join("hp-dl180-g6"));
    let serials: Vec<&str> = hp.iter().filter_map(|d| d.sn.as_deref()).collect();
    assert_eq!(serials, vec!["Z390A051FRD3", "54O0A05KFRD4"]);

    let vm = disks(&hosts_dir().join("this-vm"));
    assert_eq!(vm.len(), 1, "zram0 is listed by lsblk but is not a disk: {vm:?}");
}

#[test]
fn fixture_reports_pass_the_servers_validation() {
    let plan = disk_plan();
    for (name, expected) in HOSTS {
        let dir = hosts_dir().join(name);
        let outputs = replay::read_dir(&dir, plan.probes()).expect("replay directory reads");
        let context =
            HostContext { mode: Mode::Agent, collected_at: Utc::now(), fallback_hostname: Some((*name).to_owned()) };
        let host = plan.report(&outputs, &context);
        assert!(host.failed_sections.is_empty(), "{name}: {:?}", host.failed_sections);
        let report = cmdb_model::report::validate(host.report).expect("the server accepts the report");
        let disk = report.ok_section("disk").expect("disk section ok");
        assert_eq!(disk.components.len(), expected.len(), "{name}: one component per slot");
    }
}

#[test]
fn a_directory_with_no_disk_source_is_an_error_naming_the_commands() {
    let empty = tempfile::tempdir().expect("temp dir");
    let plan = disk_plan();
    let outputs = replay::read_dir(empty.path(), plan.probes()).expect("empty directory reads");
    let sections = plan.sections(&outputs);
    let section = sections.get("disk").expect("disk section present");
    assert_eq!(section.status, SectionStatus::Error);
    let message = section.error.clone().unwrap_or_default();
    assert!(message.contains("megacli") && message.contains("storcli") && message.contains("lsblk"), "{message}");
}
