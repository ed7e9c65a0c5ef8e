//! `nic` collector: network interfaces with their MAC, state, MTU, master and addresses.
//!
//! Commands run (none needs root):
//!
//! | probe | command | replay file |
//! |---|---|---|
//! | `ip-json` | `ip -j addr show` | `ip-addr.json` |
//! | `ip-text` | `ip addr show` | `nic.out` |
//!
//! The JSON form is preferred: iproute2 has printed it since about 4.14 (2017) and it has no
//! layout to guess. The text form is the fallback for older iproute2 and busybox `ip`, which
//! answer `-j` with a usage error or nothing at all, and for the rare build whose JSON is
//! unreadable (iproute2 has shipped invalid JSON for some objects). Both commands run on
//! every host rather than the text one only after a failed `-j`: the bundled script runs each
//! probe in its own shell, so a conditional text probe would have to run `ip -j` a second time
//! to decide, costing the same process while losing the fallback for broken JSON. The cost is
//! one short-lived `ip` and a few KiB of output.
//!
//! What is reported, for each interface in the kernel's order:
//! - `name` without iproute2's `@parent` suffix; address labels (`eth0:0`) are not interfaces,
//!   their addresses belong to the interface they are listed under.
//! - `hwaddr`, lowercase, for every link type whose address is a hardware address: Ethernet,
//!   InfiniBand (the full 20-byte address, as `ip` prints it), Wi-Fi, ...; `null` for loopback,
//!   `link/none` (tun, WireGuard), `link/slip`, `link/ppp`, the IPv4/IPv6 tunnel types whose
//!   "address" is a tunnel endpoint (`sit`, `ipip`, `gre`, `tunnel6`, `gre6`) and all-zero
//!   addresses. It is the current address: a bond slave shows the bond's MAC, as the kernel
//!   reports it.
//! - `up`: the administrative UP flag; `carrier`: the LOWER_UP flag. An UP port without cable
//!   (`NO-CARRIER`, `state DOWN`) is up with no carrier.
//! - `mtu`, and `master` (the bond or bridge it is enslaved to).
//! - `ipv4`/`ipv6` as `address/prefix`, link-local included; for `inet A peer B/32` the local
//!   address `A/32`; an address printed without a prefix is a host address (/32, /128).
//!
//! Interfaces matching `nic_exclude` (default `lo`, `veth*`) are left out, in one place for both
//! forms. The format parsers are public pure functions ([`parse_ip_json`], [`parse_ip_text`]) so
//! fuzz targets and other tools can call them directly.

mod json;
mod normalize;
mod text;

use cmdb_model::report::NicData;

pub use json::{JsonError, parse_ip_json};
pub use normalize::is_excluded;
pub use text::parse_ip_text;

use crate::{CollectError, CollectOptions, Collector, Outputs, Probe};

/// Network interfaces: MAC, state, MTU, master, IPv4 and IPv6 addresses.
pub struct Nic;

/// Probe id of `ip -j addr show`.
const JSON_PROBE: &str = "ip-json";
/// Probe id of `ip addr show`.
const TEXT_PROBE: &str = "ip-text";

const PROBES: &[Probe] = &[
    Probe {
        id: JSON_PROBE,
        command: "ip -j addr show",
        script: "ip -j addr show",
        needs_root: false,
        replay_file: Some("ip-addr.json"),
        timeout_secs: 5,
        may_hang: false,
        programs: &[],
    },
    Probe {
        id: TEXT_PROBE,
        command: "ip addr show",
        script: "ip addr show",
        needs_root: false,
        replay_file: Some("nic.out"),
        timeout_secs: 5,
        may_hang: false,
        programs: &[],
    },
];

impl Collector for Nic {
    fn name(&self) -> &'static str {
        "nic"
    }

    fn summary(&self) -> &'static str {
        "Network interfaces: MAC, state, MTU, master, IPv4 and IPv6 addresses."
    }

    fn probes(&self) -> &'static [Probe] {
        PROBES
    }

    fn parse(&self, outputs: &Outputs, options: &CollectOptions) -> Result<serde_json::Value, CollectError> {
        let interfaces = normalize::exclude(read_interfaces(outputs)?, &options.nic_exclude);
        serde_json::to_value(NicData { interfaces })
            .map_err(|e| CollectError::Parse { probe: "nic".to_owned(), message: e.to_string() })
    }
}

/// Every interface the host reported, from the JSON probe when it is usable, else from the text
/// probe.
fn read_interfaces(outputs: &Outputs) -> Result<Vec<cmdb_model::report::Interface>, CollectError> {
    // Why the JSON form was not used, kept for the error message when the text form fails too.
    let mut json_problem: Option<CollectError> = None;
    match outputs.succeeded(JSON_PROBE) {
        Some(output) => match parse_ip_json(&output.text()) {
            Ok(interfaces) if !interfaces.is_empty() => return Ok(interfaces),
            // An empty list is kept as a last resort: every network namespace has at least `lo`,
            // so the text form is asked first.
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "ip -j addr show output unreadable; using the text form");
                json_problem = Some(CollectError::Parse { probe: JSON_PROBE.to_owned(), message: e.to_string() });
            }
        },
        None => {
            let failure =
                outputs.get(JSON_PROBE).map_or_else(|| format!("{JSON_PROBE}: not run"), |o| o.failure(JSON_PROBE));
            json_problem = Some(CollectError::Command(failure));
        }
    }

    let Some(output) = outputs.succeeded(TEXT_PROBE) else {
        let text_failure =
            outputs.get(TEXT_PROBE).map_or_else(|| format!("{TEXT_PROBE}: not run"), |o| o.failure(TEXT_PROBE));
        return match json_problem {
            // `ip -j` answered with an empty list and there is nothing better: report that.
            None => Ok(Vec::new()),
            Some(CollectError::Command(json_failure)) => {
                Err(CollectError::Command(format!("{json_failure}; {text_failure}")))
            }
            Some(parse_error) => Err(parse_error),
        };
    };
    let text = output.text();
    let interfaces = parse_ip_text(&text);
    if interfaces.is_empty() && !text.trim().is_empty() {
        return Err(CollectError::Parse {
            probe: TEXT_PROBE.to_owned(),
            message: "no interface header (\"N: name: <FLAGS> ...\") found".to_owned(),
        });
    }
    Ok(interfaces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Exit, ProbeOutput};
    use cmdb_model::report::Interface;

    const JSON: &str = r#"[{"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"link_type":"loopback"},
        {"ifname":"eth0","flags":["UP","LOWER_UP"],"mtu":1500,"link_type":"ether","address":"02:00:00:00:00:01",
         "addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24}]},
        {"ifname":"veth1","flags":["UP"],"master":"docker0","link_type":"ether","address":"02:00:00:00:00:02"}]"#;
    const TEXT: &str = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n2: eth1: <BROADCAST,UP,LOWER_UP> mtu 9000\n    link/ether 02:00:00:00:00:03 brd ff:ff:ff:ff:ff:ff\n";

    fn outputs(json: Option<ProbeOutput>, text: Option<ProbeOutput>) -> Outputs {
        let mut outputs = Outputs::default();
        if let Some(json) = json {
            outputs.insert(JSON_PROBE, json);
        }
        if let Some(text) = text {
            outputs.insert(TEXT_PROBE, text);
        }
        outputs
    }

    fn failed(code: i32, stderr: &str) -> ProbeOutput {
        ProbeOutput { stdout: Vec::new(), stderr: stderr.to_owned(), exit: Exit::Code(code) }
    }

    fn interfaces(outputs: &Outputs, options: &CollectOptions) -> Vec<Interface> {
        let value = Nic.parse(outputs, options).expect("nic section");
        serde_json::from_value::<NicData>(value).expect("NicData shape").interfaces
    }

    fn names(interfaces: &[Interface]) -> Vec<&str> {
        interfaces.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn json_is_preferred_when_it_parses() {
        let out = outputs(Some(ProbeOutput::ok(JSON)), Some(ProbeOutput::ok(TEXT)));
        assert_eq!(names(&interfaces(&out, &CollectOptions::default())), ["eth0"]);
    }

    #[test]
    fn text_is_used_when_ip_has_no_json() {
        let unknown = failed(255, "Option \"-j\" is unknown, try \"ip -help\".");
        let out = outputs(Some(unknown), Some(ProbeOutput::ok(TEXT)));
        assert_eq!(names(&interfaces(&out, &CollectOptions::default())), ["eth1"]);
        // Replay directories without ip-addr.json read as "command not found".
        let out = outputs(Some(ProbeOutput::not_found()), Some(ProbeOutput::ok(TEXT)));
        assert_eq!(names(&interfaces(&out, &CollectOptions::default())), ["eth1"]);
    }

    #[test]
    fn text_is_used_when_json_is_unreadable_or_empty() {
        let out = outputs(Some(ProbeOutput::ok("Usage: ip [ OPTIONS ] OBJECT")), Some(ProbeOutput::ok(TEXT)));
        assert_eq!(names(&interfaces(&out, &CollectOptions::default())), ["eth1"]);
        // Some vendor builds (EdgeOS) exit 0 and print nothing for `-j`.
        let out = outputs(Some(ProbeOutput::ok("")), Some(ProbeOutput::ok(TEXT)));
        assert_eq!(names(&interfaces(&out, &CollectOptions::default())), ["eth1"]);
        let out = outputs(Some(ProbeOutput::ok("[]")), Some(ProbeOutput::ok(TEXT)));
        assert_eq!(names(&interfaces(&out, &CollectOptions::default())), ["eth1"]);
        let out = outputs(Some(ProbeOutput::ok("[]")), Some(ProbeOutput::not_found()));
        assert!(interfaces(&out, &CollectOptions::default()).is_empty());
    }

    #[test]
    fn exclusions_come_from_the_options() {
        let out = outputs(Some(ProbeOutput::ok(JSON)), None);
        let all = CollectOptions { nic_exclude: Vec::new() };
        assert_eq!(names(&interfaces(&out, &all)), ["lo", "eth0", "veth1"]);
        let custom = CollectOptions { nic_exclude: vec!["eth*".into()] };
        assert_eq!(names(&interfaces(&out, &custom)), ["lo", "veth1"]);
        let out = outputs(None, Some(ProbeOutput::ok(TEXT)));
        assert_eq!(names(&interfaces(&out, &all)), ["lo", "eth1"]);
        assert_eq!(names(&interfaces(&out, &CollectOptions::default())), ["eth1"]);
    }

    #[test]
    fn both_commands_failing_is_a_command_error_naming_both() {
        let out = outputs(Some(ProbeOutput::not_found()), Some(ProbeOutput::not_found()));
        let err = Nic.parse(&out, &CollectOptions::default()).expect_err("no ip at all");
        let CollectError::Command(message) = &err else { panic!("expected a command error, got {err:?}") };
        assert!(
            message.contains("ip-json: command not found") && message.contains("ip-text: command not found"),
            "{message}"
        );
        let err = Nic.parse(&Outputs::default(), &CollectOptions::default()).expect_err("nothing ran");
        assert!(err.to_string().contains("not run"), "{err}");
    }

    #[test]
    fn unreadable_outputs_are_parse_errors() {
        let out = outputs(Some(ProbeOutput::not_found()), Some(ProbeOutput::ok("ip: command not recognised\n")));
        let err = Nic.parse(&out, &CollectOptions::default()).expect_err("text is not ip output");
        assert!(matches!(&err, CollectError::Parse { probe, .. } if probe == TEXT_PROBE), "{err:?}");
        let out = outputs(Some(ProbeOutput::ok("{")), Some(failed(1, "ip: boom")));
        let err = Nic.parse(&out, &CollectOptions::default()).expect_err("json broken, text failed");
        assert!(matches!(&err, CollectError::Parse { probe, .. } if probe == JSON_PROBE), "{err:?}");
    }

    #[test]
    fn empty_text_output_is_no_interfaces_not_an_error() {
        let out = outputs(Some(ProbeOutput::not_found()), Some(ProbeOutput::ok("")));
        assert!(interfaces(&out, &CollectOptions::default()).is_empty());
    }

    #[test]
    fn probes_need_no_root_and_have_replay_files() {
        assert!(PROBES.iter().all(|p| !p.needs_root));
        let files: Vec<_> = PROBES.iter().map(|p| (p.id, p.replay_file)).collect();
        assert_eq!(files, [(JSON_PROBE, Some("ip-addr.json")), (TEXT_PROBE, Some("nic.out"))]);
    }

    #[test]
    fn section_validates_against_the_report_model() {
        let out = outputs(Some(ProbeOutput::ok(JSON)), None);
        let value = Nic.parse(&out, &CollectOptions { nic_exclude: Vec::new() }).expect("section");
        cmdb_model::report::canonical_section("nic", value, "/sections/nic/data").expect("valid nic section");
    }
}
