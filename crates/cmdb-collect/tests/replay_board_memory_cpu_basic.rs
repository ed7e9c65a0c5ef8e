//! The board, memory, cpu and basic collectors run through the real plan over every replay
//! directory in `fixtures/hosts`, checked against the facts table of `fixtures/README.md`; then
//! property tests that every public parser of these collectors survives arbitrary and mutated
//! input (they read outputs of machines nobody here has seen).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::Utc;
use cmdb_collect::collectors::basic::{parse_os_release, parse_uname};
use cmdb_collect::collectors::board::dmidecode::parse_records;
use cmdb_collect::collectors::board::sysfs::parse_dmi_sysfs;
use cmdb_collect::collectors::board::{self, parse_system};
use cmdb_collect::collectors::cpu::parse_cpuinfo;
use cmdb_collect::collectors::memory::meminfo::parse_mem_total_kb;
use cmdb_collect::collectors::memory::{self, parse_memory_devices};
use cmdb_collect::plan::HostContext;
use cmdb_collect::{CollectOptions, Exit, Outputs, Plan, ProbeOutput, replay};
use cmdb_model::report::{BasicData, BoardData, CpuData, MemoryData, Mode, SectionStatus, WireSection};
use proptest::prelude::*;

/// What the README's facts table says about one host, plus the basic section where the host
/// directory has the files for it.
struct Facts {
    host: &'static str,
    board: BoardData,
    cpu: CpuData,
    /// (populated DIMMs, slots_total, total_mb).
    memory: (usize, Option<u32>, Option<u64>),
    /// `None` when the directory holds neither `os-release` nor `uname` (an error section).
    basic: Option<BasicData>,
}

fn board(manufacturer: &str, model: &str, sn: &str, uuid: &str) -> BoardData {
    BoardData {
        manufacturer: Some(manufacturer.into()),
        model: Some(model.into()),
        sn: Some(sn.into()),
        uuid: Some(uuid.into()),
    }
}

fn cpu(count: u32, physical: u32, model: &str) -> CpuData {
    CpuData { cpu_count: Some(count), cpu_physical_count: Some(physical), cpu_model: Some(model.into()) }
}

fn facts() -> Vec<Facts> {
    vec![
        Facts {
            host: "course-canonical",
            board: board(
                "Parallels Software International Inc.",
                "Parallels Virtual Platform",
                "Parallels-1A 1B CB 3B 64 66 4B 13 86 B0 86 FF 7E 2B 20 30",
                "3BCB1B1A-6664-134B-86B0-86FF7E2B2030",
            ),
            cpu: cpu(24, 2, "Intel(R) Xeon(R) CPU E5-2620 v2 @ 2.10GHz"),
            memory: (1, Some(8), Some(1024)),
            basic: None,
        },
        Facts {
            host: "lenovo-rd650",
            board: board("LENOVO", "ThinkServer RD650", "PC0C6Y1R", "32D32CD4-550C-E611-98A0-3C18A004F5ED"),
            cpu: cpu(48, 2, "Intel(R) Xeon(R) CPU E5-2670 v3 @ 2.30GHz"),
            memory: (8, Some(24), Some(262_144)),
            basic: None,
        },
        Facts {
            host: "this-vm",
            board: BoardData::default(),
            cpu: cpu(2, 1, "AMD EPYC"),
            // No SMBIOS: no DIMMs, unknown slot count, MemTotal 24684084 kB / 1024.
            memory: (0, None, Some(24_105)),
            basic: Some(BasicData {
                hostname: Some("vm".into()),
                os_platform: Some("linux".into()),
                os_name: Some("Debian GNU/Linux".into()),
                os_version: Some("12".into()),
                kernel: Some("6.18.44-fc-v669".into()),
                arch: Some("x86_64".into()),
            }),
        },
        Facts {
            host: "dell-r630",
            board: board("Dell Inc.", "PowerEdge R630", "2WF88P2", "4C4C4544-0057-4610-8038-B2C04F385032"),
            cpu: cpu(16, 2, "Intel(R) Xeon(R) CPU           E5620  @ 2.40GHz"),
            memory: (16, Some(24), Some(65_536)),
            basic: Some(BasicData {
                hostname: None,
                os_platform: Some("linux".into()),
                os_name: Some("CentOS Linux".into()),
                os_version: Some("7".into()),
                kernel: None,
                arch: None,
            }),
        },
        Facts {
            host: "hp-dl180-g6",
            // The table shows the raw "ProLiant DL180 G6  "; values are trimmed at both ends.
            board: board("HP", "ProLiant DL180 G6", "CZJ02901TG", "00D3F681-FE8E-11D5-B656-1CC1DE0905AE"),
            cpu: cpu(3, 1, "Intel(R) Xeon(R) CPU           E5504  @ 2.00GHz"),
            memory: (2, Some(12), Some(4096)),
            basic: None,
        },
        Facts {
            host: "oracle-x5-2-oda",
            board: board(
                "Oracle Corporation",
                "ORACLE SERVER X5-2",
                "1634NM1100",
                "080020FF-FFFF-FFFF-FFFF-0010E0BCD192",
            ),
            cpu: cpu(16, 2, "Intel(R) Xeon(R) CPU E5-2699 v3 @ 2.30GHz"),
            memory: (8, Some(24), Some(262_144)),
            basic: None,
        },
    ]
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hosts")
}

fn plan() -> Plan {
    let names: Vec<String> = ["basic", "cpu", "board", "memory"].iter().map(|s| (*s).to_owned()).collect();
    Plan::new(&names, &[], CollectOptions::default()).expect("built-in collectors plan")
}

fn data<T: serde::de::DeserializeOwned>(host: &str, name: &str, section: Option<&WireSection>) -> T {
    let section = section.unwrap_or_else(|| panic!("{host}: no {name} section"));
    assert_eq!(section.status, SectionStatus::Ok, "{host}: {name} failed: {:?}", section.error);
    let value = section.data.clone().unwrap_or_else(|| panic!("{host}: {name} has no data"));
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{host}: {name} is not the v1 shape: {e}"))
}

#[test]
fn every_fixture_host_yields_the_documented_facts() {
    let plan = plan();
    let facts = facts();
    let mut hosts: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/hosts exists")
        .map(|entry| entry.expect("readable entry"))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    hosts.sort();
    let known: BTreeSet<&str> = facts.iter().map(|f| f.host).collect();
    for host in &hosts {
        assert!(known.contains(host.as_str()), "fixtures/hosts/{host} is new: add its facts to this test");
    }
    assert_eq!(hosts.len(), facts.len(), "a host listed here is missing from fixtures/hosts");

    for expected in &facts {
        let host = expected.host;
        let outputs = replay::read_dir(&fixtures_dir().join(host), plan.probes()).expect("replay directory");
        let context = HostContext { mode: Mode::Agent, collected_at: Utc::now(), fallback_hostname: Some(host.into()) };
        let report = plan.report(&outputs, &context).report;
        let sections = &report.sections;

        assert_eq!(data::<BoardData>(host, "board", sections.get("board")), expected.board, "{host}: board");
        assert_eq!(data::<CpuData>(host, "cpu", sections.get("cpu")), expected.cpu, "{host}: cpu");

        let memory: MemoryData = data(host, "memory", sections.get("memory"));
        assert_eq!((memory.modules.len(), memory.slots_total, memory.total_mb), expected.memory, "{host}: memory");
        let keys: BTreeSet<&str> = memory.modules.iter().map(|m| m.slot.as_str()).collect();
        assert_eq!(keys.len(), memory.modules.len(), "{host}: slot keys are unique");
        assert!(memory.modules.iter().all(|m| m.capacity_mb.is_some()), "{host}: every DIMM has a size");

        match &expected.basic {
            Some(basic) => assert_eq!(&data::<BasicData>(host, "basic", sections.get("basic")), basic, "{host}: basic"),
            None => {
                let section = sections.get("basic").expect("basic section");
                assert_eq!(section.status, SectionStatus::Error, "{host}: no OS files, so basic is unknown");
            }
        }
    }
}

#[test]
fn repeated_locators_and_module_details_through_the_plan() {
    let plan = plan();
    let outputs = replay::read_dir(&fixtures_dir().join("oracle-x5-2-oda"), plan.probes()).expect("replay");
    let memory = memory::memory_from_outputs(&outputs).expect("memory");
    let slots: Vec<&str> = memory.modules.iter().map(|m| m.slot.as_str()).collect();
    assert_eq!(
        slots,
        [
            "/SYS/MB/P0/D11",
            "/SYS/MB/P0/D8",
            "/SYS/MB/P0/D0",
            "/SYS/MB/P0/D3",
            "/SYS/MB/P1/D11",
            "/SYS/MB/P1/D8",
            "/SYS/MB/P1/D0",
            "/SYS/MB/P1/D3"
        ]
    );
    assert!(memory.modules.iter().all(|m| m.capacity_mb == Some(32_768) && m.kind.as_deref() == Some("DDR4")));

    let outputs = replay::read_dir(&fixtures_dir().join("hp-dl180-g6"), plan.probes()).expect("replay");
    let memory = memory::memory_from_outputs(&outputs).expect("memory");
    let module = &memory.modules[0];
    assert_eq!(
        (module.slot.as_str(), module.kind.as_deref(), module.speed_mts, module.part_number.as_deref()),
        ("PROC 1 DIMM 2A", None, Some(1333), Some("18JSF25672AZ-1G4F1"))
    );
}

#[test]
fn full_dumps_agree_with_their_cuts() {
    // `dmidecode.out` is the full dump that `board.out` and `memory.out` were cut from.
    for host in ["dell-r630", "hp-dl180-g6", "oracle-x5-2-oda"] {
        let read = |file: &str| std::fs::read_to_string(fixtures_dir().join(host).join(file)).expect("fixture");
        let full = read("dmidecode.out");
        assert_eq!(parse_system(&full), parse_system(&read("board.out")), "{host}");
        assert_eq!(parse_memory_devices(&full), parse_memory_devices(&read("memory.out")), "{host}");
    }
}

/// Every real text these parsers are tested on: the fixture files and the collectors' testdata,
/// read once for all property-test cases.
fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(read_corpus)
}

fn read_corpus() -> Vec<String> {
    let mut dirs = vec![];
    for host in std::fs::read_dir(fixtures_dir()).expect("fixtures") {
        dirs.push(host.expect("entry").path());
    }
    let collectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/collectors");
    for name in ["board", "memory", "cpu", "basic"] {
        dirs.push(collectors.join(name).join("testdata"));
    }
    let mut texts = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_file()
                && let Ok(bytes) = std::fs::read(&path)
            {
                texts.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    assert!(texts.len() > 40, "corpus found: {}", texts.len());
    texts
}

/// Runs every parser (and the collectors' decisions) on `text`, checking the invariants that
/// must hold whatever the input.
fn exercise(text: &str) {
    let _ = parse_records(text);
    let _ = parse_system(text);
    let memory = parse_memory_devices(text);
    let keys: BTreeSet<&str> = memory.modules.iter().map(|m| m.slot.as_str()).collect();
    assert_eq!(keys.len(), memory.modules.len(), "slot keys must be unique");
    if let Some(total) = memory.total_mb {
        assert_eq!(Some(total), memory.modules.iter().map(|m| m.capacity_mb).sum::<Option<u64>>());
    }
    let cpu = parse_cpuinfo(text);
    assert_eq!(cpu.cpu_count.is_some(), cpu.cpu_physical_count.is_some());
    let _ = parse_mem_total_kb(text);
    let _ = parse_dmi_sysfs(text);
    let _ = parse_os_release(text);
    let _ = parse_uname(text);

    let mut outputs = Outputs::default();
    for id in
        ["dmidecode-system", "dmidecode-memory", "meminfo", "cpuinfo", "os-release", "uname", "hostname", "dmi-sysfs"]
    {
        outputs
            .insert(id, ProbeOutput { stdout: text.as_bytes().to_vec(), stderr: text.to_owned(), exit: Exit::Code(1) });
    }
    let _ = board::board_from_outputs(&outputs);
    let _ = memory::memory_from_outputs(&outputs);
    for output in outputs.by_id.values_mut() {
        output.exit = Exit::Code(0);
    }
    let plan = plan();
    let sections = plan.sections(&outputs);
    for (name, section) in sections {
        if let Some(error) = &section.error {
            assert!(!error.contains("panicked"), "{name} panicked: {error}");
        }
    }
}

/// Applies edits at char boundaries: (position, kind, text) deletes, inserts or replaces.
fn mutate(base: &str, edits: &[(usize, u8, String)]) -> String {
    let mut text = base.to_owned();
    for (position, kind, insert) in edits {
        let mut at = position % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + insert.len().max(1) * 3).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        match kind % 3 {
            0 => text.replace_range(at..end, ""),
            1 => text.insert_str(at, insert),
            _ => text.replace_range(at..end, insert),
        }
    }
    text
}

/// Fragments that steer mutations into the parsers' interesting paths.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\n".to_owned()),
        Just("\t".to_owned()),
        Just(":".to_owned()),
        Just("Handle 0x".to_owned()),
        Just("\nMemory Device\n\tSize: ".to_owned()),
        Just("DMI type 17".to_owned()),
        Just("No Module Installed".to_owned()),
        Just("processor\t: ".to_owned()),
        Just("CPU part\t: 0x".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just("=".to_owned()),
        Just(" release ".to_owned()),
        Just("18446744073709551615 TB".to_owned()),
        ".{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_arbitrary_text(text in ".{0,400}") {
        exercise(&text);
    }

    #[test]
    fn parsers_never_panic_on_line_soup(lines in prop::collection::vec(fragment(), 0..60)) {
        exercise(&lines.concat());
    }

    #[test]
    fn parsers_never_panic_on_mutated_real_outputs(
        index in any::<usize>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), fragment()), 0..12),
    ) {
        let corpus = corpus();
        let base = &corpus[index % corpus.len()];
        exercise(&mutate(base, &edits));
    }
}
