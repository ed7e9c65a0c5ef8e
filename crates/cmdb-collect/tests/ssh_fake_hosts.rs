//! The SSH transport against the fixture machines: `scripts/fake-ssh-hosts.sh` turns every
//! replay directory under `fixtures/hosts` into a chroot behind a real sshd (busybox plus fake
//! commands that print that machine's captured outputs), on 127.0.0.150.. port 2532, state in
//! /tmp/cmdb-fake-ssh-transport, chroots in /srv/cmdb-fake-ssh-transport. A collector talking SSH
//! to them must read exactly what replay reads from the files, and parse it the same.

mod ssh_support;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use cmdb_collect::transport::ssh::{HostKeyPolicy, SshAuth, SshClient, SshOptions, SshTarget};
use cmdb_collect::{Become, Exit, Outputs, Plan, ProbeOutput};

const PORT: u16 = 2532;
const STATE: &str = "/tmp/cmdb-fake-ssh-transport";
const ROOT: &str = "/srv/cmdb-fake-ssh-transport";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hosts")
}

/// A digest of the fixtures and of the script that builds the hosts from them, so running
/// hosts are reused only while they still show the current files.
fn fixtures_digest() -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut files = Vec::new();
    for host in std::fs::read_dir(fixtures_dir()).expect("fixtures/hosts").flatten() {
        for file in std::fs::read_dir(host.path()).into_iter().flatten().flatten() {
            files.push(file.path());
        }
    }
    files.push(ssh_support::scripts_dir().join("fake-ssh-hosts.sh"));
    files.sort();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Address -> fixture host name, for the running fake hosts (started on first use).
fn fake_hosts() -> &'static BTreeMap<String, String> {
    static HOSTS: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let state = Path::new(STATE);
        let _lock = ssh_support::setup_lock(&state.with_extension("lock"));
        ssh_support::stop_when_unused(&state.with_extension("users"), "fake-ssh-hosts.sh", &[("STATE", STATE)]);
        let digest = fixtures_digest();
        let first = std::fs::read_to_string(state.join("inventory")).unwrap_or_default();
        let healthy = std::fs::read_to_string(state.join("fixtures.digest")).is_ok_and(|d| d.trim() == digest)
            && ssh_support::pids_alive(state, "sshd")
            && first.lines().next().is_some_and(|a| ssh_support::ssh_works(&state.join("ssh_config"), a));
        if !healthy {
            let fixtures = fixtures_dir().display().to_string();
            let port = PORT.to_string();
            ssh_support::run_script(
                "fake-ssh-hosts.sh",
                &["up", &fixtures, "150"],
                &[("STATE", STATE), ("ROOT", ROOT), ("PORT", &port)],
                Duration::from_secs(300),
            );
            std::fs::write(state.join("fixtures.digest"), &digest).expect("digest");
        }
        let table = std::fs::read_to_string(state.join("hosts.tsv")).expect("hosts.tsv");
        table
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(address, name)| (address.to_owned(), name.to_owned()))
            .collect()
    })
}

fn options() -> SshOptions {
    SshOptions {
        user: "root".into(),
        auth: SshAuth::KeyFile { path: Path::new(STATE).join("client_key"), passphrase: None },
        known_hosts: Path::new(STATE).join("known_hosts"),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(60),
        output_limit: cmdb_collect::transport::DEFAULT_OUTPUT_LIMIT,
    }
}

/// What the fake host prints for a probe whose replay file holds `replay`. Every fake prints
/// its file byte for byte, except `hostname`: the chroot's /etc/hostname gets only the file's
/// first line (a host name is one line), so `hostname` prints that line and a newline.
fn expected_over_ssh(probe: &str, replay: &ProbeOutput) -> ProbeOutput {
    match probe {
        "hostname" => {
            let text = String::from_utf8_lossy(&replay.stdout);
            ProbeOutput::ok(format!("{}\n", text.lines().next().unwrap_or("")))
        }
        _ => replay.clone(),
    }
}

/// Runs the full plan on every fake host and returns (host name, replay outputs, SSH outputs).
async fn collect_all(plan: &Plan) -> Vec<(String, Outputs, Outputs)> {
    let hosts = fake_hosts();
    assert!(hosts.len() >= 6, "every fixture host is served: {hosts:?}");
    let client = SshClient::new(options()).expect("client");
    let boundary = cmdb_collect::bundle::new_boundary();
    let script = plan.script(Become::Sudo, &boundary);
    let mut results = Vec::new();
    for (address, name) in hosts {
        let target = SshTarget { name: name.clone(), host: address.clone(), port: PORT, user: None };
        let output = client.run(&target, &script).await.unwrap_or_else(|e| panic!("{name} ({address}): {e}"));
        let ssh = plan.split(&output.stdout, &boundary);
        let replay = cmdb_collect::replay::read_dir(&fixtures_dir().join(name), plan.probes()).expect("replay");
        results.push((name.clone(), replay, ssh));
    }
    results
}

#[tokio::test]
async fn fixture_hosts_over_ssh_read_like_their_replay_directories() {
    let plan = Plan::all_builtin();
    let mut compared = 0;
    for (name, replay, ssh) in collect_all(&plan).await {
        // Probes with a file: the fake command printed it, so SSH must deliver the same bytes.
        let mut masked = ssh.clone();
        for probe in plan.probes() {
            let replayed = replay.get(&probe.id).expect("replay lists every probe");
            let remote = ssh.get(&probe.id).expect("ssh ran every probe");
            if replayed.exit == Exit::NotFound {
                // No file: the fake host may still answer (uname, machine-id are synthesised),
                // which replay cannot know; both sides read replay's "not found" (which names the
                // missing file) for the section check.
                masked.insert(probe.id.clone(), replayed.clone());
                continue;
            }
            let expected = expected_over_ssh(&probe.id, replayed);
            assert_eq!(remote.exit, expected.exit, "{name}: probe {} exit ({})", probe.id, remote.stderr);
            assert!(remote.stdout == expected.stdout, "{name}: probe {} stdout differs from its replay file", probe.id);
            masked.insert(probe.id.clone(), expected);
            compared += 1;
        }
        // The same bytes must parse to the same sections, whatever the parsers produce today.
        let from_ssh = serde_json::to_value(plan.sections(&masked)).expect("json");
        let from_replay = serde_json::to_value(plan.sections(&replay)).expect("json");
        assert_eq!(from_ssh, from_replay, "{name}: sections");
    }
    assert!(compared >= 30, "only {compared} probe outputs were compared");
}

#[tokio::test]
async fn a_missing_command_fails_only_its_own_probe() {
    let plan = Plan::all_builtin();
    let results = collect_all(&plan).await;
    let (_, replay, ssh) = results.iter().find(|(name, _, _)| name == "this-vm").expect("this-vm is a fixture host");
    // this-vm has no MegaCli (no disk.out): the probe says "not found" with a reason...
    let megacli = ssh.get("megacli").expect("megacli probe ran");
    assert_eq!(megacli.exit, Exit::NotFound, "{megacli:?}");
    assert!(megacli.failure("megacli").contains("command not found"), "{}", megacli.failure("megacli"));
    // ...and every probe that has data on that machine still succeeded.
    for (id, replayed) in &replay.by_id {
        if replayed.exit != Exit::NotFound {
            assert!(ssh.get(id).is_some_and(ProbeOutput::succeeded), "{id}: {:?}", ssh.get(id));
        }
    }
}
