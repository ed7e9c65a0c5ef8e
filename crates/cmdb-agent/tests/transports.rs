//! `cmdb-agent ssh` and `cmdb-agent salt` end to end, against real parts on this machine:
//!
//! - SSH: `scripts/fake-ssh-hosts.sh` turns every fixture directory into a chroot behind a real
//!   sshd (127.0.0.170.., port 2542, state in /tmp/cmdb-fake-ssh-agent); the agent reads an Ansible
//!   INI inventory with a host range, collects every host and delivers to the in-test server.
//! - Salt: the loopback master and minions m1..m3 of `scripts/loopback-salt.sh` (/tmp/cmdb-salt,
//!   shared with cmdb-collect's Salt tests and set up by whichever test needs it first).
//!
//! The servers live as long as the test processes that use them: each user holds a shared `flock`
//! on a `.users` file beside the state, and a detached `flock -x ... down` watchdog, started by
//! whoever started the servers, stops them once every user has exited.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use cmdb_agent::collect::collect_replay;
use cmdb_model::report::Mode;
use support::{KEY_ID, SECRET, TestServer};

const SSH_PORT: u16 = 2542;
const SSH_FIRST_OCTET: u8 = 170;
const SSH_STATE: &str = "/tmp/cmdb-fake-ssh-agent";
const SSH_ROOT: &str = "/srv/cmdb-fake-ssh-agent";
const SALT_DIR: &str = "/tmp/cmdb-salt";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Holds an exclusive lock on `path` (shared with other test processes) while it lives.
fn lock(path: &str) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    file.lock().unwrap_or_else(|e| panic!("lock {path}: {e}"));
    file
}

fn run_script(script: &str, args: &[&str], env: &[(&str, &str)]) {
    let mut command = std::process::Command::new("bash");
    command.arg(workspace_root().join("scripts").join(script)).args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files whose shared locks mark this process as a user of a test server, held until it exits.
static USING: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

/// Declares this process a user of the servers behind `users` (a shared lock held until exit).
/// Returns true when no other process was using them (so they may be restarted).
fn use_servers(users: &str) -> bool {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(users)
        .unwrap_or_else(|e| panic!("{users}: {e}"));
    let alone = file.try_lock().is_ok();
    if alone {
        file.unlock().unwrap_or_else(|e| panic!("unlock {users}: {e}"));
    }
    file.lock_shared().unwrap_or_else(|e| panic!("shared lock {users}: {e}"));
    USING.lock().unwrap_or_else(|p| p.into_inner()).push(file);
    alone
}

/// Starts a detached watchdog that runs `script down` (with `env`) once nobody uses `users`.
fn stop_when_unused(users: &str, script: &str, env: &[(&str, &str)]) {
    use std::os::unix::process::CommandExt;
    let script = workspace_root().join("scripts").join(script);
    let spawned = std::process::Command::new("flock")
        .arg("-x")
        .arg(users)
        .arg("bash")
        .arg(script)
        .arg("down")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: Ctrl-C on the test run must not kill the watchdog first.
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        eprintln!("no watchdog stops {users} (is flock installed?): {e}");
    }
}

/// (address, fixture directory name) of each fake SSH host, started once per test process
/// (or reused while another test process uses them).
fn fake_ssh_hosts() -> &'static Vec<(String, String)> {
    static HOSTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let _guard = lock(&format!("{SSH_STATE}.lock"));
        let users = format!("{SSH_STATE}.users");
        let running = Path::new(SSH_STATE).join("hosts.tsv").exists() && Path::new(SSH_STATE).join("sshd.pid").exists();
        if use_servers(&users) || !running {
            // Nobody else uses them: start afresh from the current fixtures.
            let fixtures = workspace_root().join("fixtures/hosts").display().to_string();
            let port = SSH_PORT.to_string();
            run_script(
                "fake-ssh-hosts.sh",
                &["up", &fixtures, &SSH_FIRST_OCTET.to_string()],
                &[("STATE", SSH_STATE), ("ROOT", SSH_ROOT), ("PORT", &port)],
            );
            stop_when_unused(&users, "fake-ssh-hosts.sh", &[("STATE", SSH_STATE)]);
        }
        let tsv = std::fs::read_to_string(Path::new(SSH_STATE).join("hosts.tsv")).expect("hosts.tsv");
        tsv.lines().filter_map(|l| l.split_once('\t')).map(|(a, h)| (a.to_owned(), h.to_owned())).collect()
    })
}

fn agent(home: &Path, config: &Path, state: &Path, server: &TestServer) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cmdb-agent"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("HOME", home)
        .env("CMDB_SERVER_URL", server.url())
        .env("CMDB_KEY_ID", KEY_ID)
        .env("CMDB_SECRET", SECRET)
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state);
    command
}

fn expected_hostname(fixture: &str) -> String {
    let dir = workspace_root().join("fixtures/hosts").join(fixture);
    std::fs::read_to_string(dir.join("hostname"))
        .ok()
        .and_then(|t| t.lines().next().map(str::trim).map(str::to_owned))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fixture.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_collects_an_ansible_inventory_of_fixture_hosts_and_delivers_every_report() {
    let hosts = fake_ssh_hosts();
    assert!(hosts.len() >= 2, "{hosts:?}");
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "").expect("config");
    let last = SSH_FIRST_OCTET as usize + hosts.len() - 1;
    let inventory = dir.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[fixtures]\n127.0.0.[{SSH_FIRST_OCTET}:{last}]\n\n[fixtures:vars]\nansible_port={SSH_PORT}\nansible_user=root\n"
        ),
    )
    .expect("inventory");
    let out = agent(dir.path(), &config, &dir.path().join("state"), &server)
        .arg("ssh")
        .arg("--inventory")
        .arg(&inventory)
        .arg("--known-hosts")
        .arg(Path::new(SSH_STATE).join("known_hosts"))
        .arg("--ssh-key")
        .arg(Path::new(SSH_STATE).join("client_key"))
        .arg("--concurrency")
        .arg("3")
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("ok {}, failed 0", hosts.len())), "{stderr}");

    let stored = server.stored();
    assert_eq!(stored.len(), hosts.len(), "one report per host");
    let plan = cmdb_collect::Plan::all_builtin();
    for (address, fixture) in hosts {
        let hostname = expected_hostname(fixture);
        let report = stored
            .iter()
            .find(|r| r["host"]["hostname"] == hostname.as_str())
            .unwrap_or_else(|| panic!("no report from {address} ({fixture}, {hostname})"));
        let parsed = cmdb_model::report::parse_report(report.to_string().as_bytes()).expect("valid report");
        assert_eq!(parsed.agent.mode, Mode::Ssh);
        // Over SSH the parsers see what replay reads from the fixture files.
        let replayed = collect_replay(&plan, &workspace_root().join("fixtures/hosts").join(fixture), Mode::Ssh)
            .expect("replay")
            .report;
        for section in ["cpu", "memory", "disk", "nic"] {
            let via_ssh: cmdb_model::report::WireSection =
                serde_json::from_value(report["sections"][section].clone()).expect("section");
            assert_eq!(via_ssh, replayed.sections[section], "{fixture}: section {section}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_dry_run_writes_one_file_per_host() {
    let hosts = fake_ssh_hosts();
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "").expect("config");
    let inventory = dir.path().join("hosts.txt");
    let list: String = hosts.iter().map(|(a, _)| format!("root@{a}:{SSH_PORT}\n")).collect();
    std::fs::write(&inventory, format!("# fake hosts\n{list}")).expect("inventory");
    let output = dir.path().join("reports");
    let out = agent(dir.path(), &config, &dir.path().join("state"), &server)
        .arg("ssh")
        .arg("--inventory")
        .arg(&inventory)
        .arg("--known-hosts")
        .arg(Path::new(SSH_STATE).join("known_hosts"))
        .arg("--ssh-key")
        .arg(Path::new(SSH_STATE).join("client_key"))
        .arg("--dry-run")
        .arg("--output")
        .arg(&output)
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<_> = std::fs::read_dir(&output).expect("output dir").flatten().collect();
    assert_eq!(files.len(), hosts.len());
    for file in files {
        cmdb_model::report::parse_report(&std::fs::read(file.path()).expect("read")).expect("valid report");
    }
    assert!(server.seen().is_empty(), "a dry run sends nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_from_server_collects_the_listed_hosts_and_names_them_as_the_server_does() {
    let hosts = fake_ssh_hosts();
    let server = TestServer::start().await;
    let targets: Vec<serde_json::Value> = hosts
        .iter()
        .enumerate()
        .map(|(i, (address, _))| {
            serde_json::json!({"asset_id": i + 1, "hostname": format!("registered-{i}"), "manage_address": address,
                               "ssh_port": SSH_PORT, "salt_minion_id": format!("registered-{i}")})
        })
        .collect();
    *server.shared.targets.lock().expect("lock") =
        serde_json::json!({"cutoff": "2026-01-01T00:00:00Z", "targets": targets});
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[ssh]\nuser = \"root\"\n").expect("config");
    let out = agent(dir.path(), &config, &dir.path().join("state"), &server)
        .arg("ssh")
        .arg("--from-server")
        .arg("--known-hosts")
        .arg(Path::new(SSH_STATE).join("known_hosts"))
        .arg("--ssh-key")
        .arg(Path::new(SSH_STATE).join("client_key"))
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = server.seen();
    assert!(seen.iter().any(|s| s.method == "GET" && s.target == "/api/v1/collect-targets?mode=ssh" && s.signature_ok));
    let stored = server.stored();
    assert_eq!(stored.len(), hosts.len());
    for (i, (_, fixture)) in hosts.iter().enumerate() {
        let hostname = expected_hostname(fixture);
        let report = stored.iter().find(|r| r["host"]["hostname"] == hostname.as_str()).expect("report");
        assert_eq!(report["host"]["previous_hostname"], format!("registered-{i}").as_str(), "{fixture}");
    }
}

/// Starts (or joins) the loopback Salt master and minions.
fn ensure_salt() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let _guard = lock(&format!("{SALT_DIR}.lock"));
        let users = format!("{SALT_DIR}.users");
        use_servers(&users);
        if !salt_is_up() {
            run_script("loopback-salt.sh", &["up", "3"], &[("DIR", SALT_DIR)]);
            stop_when_unused(&users, "loopback-salt.sh", &[("DIR", SALT_DIR)]);
        }
    });
}

fn salt_is_up() -> bool {
    let Ok(out) = std::process::Command::new(Path::new(SALT_DIR).join("venv/bin/salt"))
        .args([
            "-c",
            &format!("{SALT_DIR}/etc"),
            "--out=json",
            "--static",
            "--timeout=10",
            "-L",
            "m1,m2,m3",
            "test.ping",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let answers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    ["m1", "m2", "m3"].iter().all(|m| answers.get(*m) == Some(&serde_json::Value::Bool(true)))
}

#[tokio::test(flavor = "multi_thread")]
async fn salt_collects_minions_and_reports_an_unknown_one_as_failed() {
    ensure_salt();
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[salt]\nsalt_bin = \"{SALT_DIR}/venv/bin/salt\"\nextra_args = [\"-c\", \"{SALT_DIR}/etc\"]\ntimeout = \"20s\"\nbatch_size = 2\n"
        ),
    )
    .expect("config");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        agent(dir.path(), &config, &dir.path().join("state"), &server)
            .arg("salt")
            .arg("--target")
            .arg("m1,m2,m3,no-such-minion")
            .output(),
    )
    .await
    .expect("salt run finishes")
    .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ok 3, failed 1"), "{stderr}");
    assert!(stderr.contains("  no-such-minion "), "{stderr}");
    let stored = server.stored();
    assert_eq!(stored.len(), 3);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    for report in &stored {
        let parsed = cmdb_model::report::parse_report(report.to_string().as_bytes()).expect("valid");
        assert_eq!(parsed.agent.mode, Mode::Salt);
        assert_eq!(parsed.host.hostname, hostname.trim(), "every minion is this machine");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn salt_from_server_uses_each_targets_minion_id() {
    ensure_salt();
    let server = TestServer::start().await;
    *server.shared.targets.lock().expect("lock") = serde_json::json!({"targets": [
        {"asset_id": 7, "hostname": "salt-registered", "manage_address": null, "ssh_port": null, "salt_minion_id": "m2"},
        {"asset_id": 8, "hostname": "not-a-minion", "manage_address": null, "ssh_port": null, "salt_minion_id": null}
    ]});
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("[salt]\nsalt_bin = \"{SALT_DIR}/venv/bin/salt\"\nextra_args = [\"-c\", \"{SALT_DIR}/etc\"]\ntimeout = \"20s\"\n"),
    )
    .expect("config");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        agent(dir.path(), &config, &dir.path().join("state"), &server).arg("salt").arg("--from-server").output(),
    )
    .await
    .expect("salt run finishes")
    .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = server.stored();
    assert_eq!(stored.len(), 1, "only the target with a minion id");
    assert_eq!(stored[0]["agent"]["mode"], "salt");
    assert_eq!(stored[0]["host"]["previous_hostname"], "salt-registered");
    assert!(server.seen().iter().any(|s| s.target == "/api/v1/collect-targets?mode=salt"));
}
