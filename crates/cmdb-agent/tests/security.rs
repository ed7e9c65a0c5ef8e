//! Attacks on the agent, reproduced end to end with the `cmdb-agent` binary against the in-test
//! server (`support`), the fake SSH hosts (`support/hosts.rs`) and a stand-in `salt` that records
//! what it was asked. The collector side has its own file, `crates/cmdb-collect/tests/security.rs`
//! (temporary files of the bundled script, output limits over real sshd and Salt, minion ids at
//! the transport). Unit tests of the pure rules sit next to their code:
//!
//! - `cmdb_agent::terminal` tests: escape sequences (`\x1b]0;pwned\x07`, `\x1b[2J`, `\r`, C1
//!   `\u{9b}`, bidi overrides) are shown escaped, not obeyed.
//! - `cmdb_agent::fanout` test `the_summary_shows_hostile_text_escaped`.
//! - `cmdb_agent::commands` test `minion_lists`: ids on the command line obey the transport's rule.
//! - `cmdb_agent::client` test `ssh_addresses_with_whitespace_or_controls_are_refused`.
//! - `cmdb_agent::config` test `remote_output_limit_reaches_both_transports`.
//!
//! Here:
//!
//! - A host past `remote_output_limit` fails with "output exceeds N bytes (remote_output_limit)";
//!   the other hosts are delivered.
//! - Targets from the server with a hostile `salt_minion_id` or `manage_address` are refused, each
//!   with its own error, and never reach `salt -L` or a connection; the others are collected.
//! - `collected_for` is the listed asset's id exactly when the target came from collect-targets of
//!   a server that said `accepts_collected_for`, and absent otherwise.
//! - Escape sequences from a minion's answer and from the server's host names reach the
//!   operator's terminal escaped, in the summary and in the log lines.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::TestServer;
use support::hosts::{SSH_FIRST_OCTET, SSH_PORT, SSH_STATE, agent, fake_ssh_hosts};

/// Runs the agent and returns (exit status, stderr).
async fn run(command: &mut tokio::process::Command) -> (Option<i32>, String) {
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the agent finishes")
        .expect("the agent runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn ssh_args(command: &mut tokio::process::Command) -> &mut tokio::process::Command {
    command
        .arg("--known-hosts")
        .arg(Path::new(SSH_STATE).join("known_hosts"))
        .arg("--ssh-key")
        .arg(Path::new(SSH_STATE).join("client_key"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_a_host_past_the_remote_output_limit_fails_and_the_others_are_delivered() {
    let hosts = fake_ssh_hosts();
    assert!(hosts.len() >= 2, "{hosts:?}");
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // An external collector runs inside the bundled script on every host; on the first fake
    // host it prints about 2 MiB before its JSON, on the others only the JSON.
    let flooding = format!("127.0.0.{SSH_FIRST_OCTET}");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "remote_output_limit = 1048576\n\
             collectors = [\"basic\", \"cpu\", \"board\", \"memory\", \"disk\", \"nic\", \"flood\"]\n\
             [external.flood]\n\
             command = '''case \"$SSH_CONNECTION\" in *' {flooding} '*) awk 'BEGIN {{ for (i = 0; i < 32768; i++) \
             print \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\" }}' ;; esac; echo '{{}}' '''\n\
             [ssh]\nuser = \"root\"\nport = {SSH_PORT}\n"
        ),
    )
    .expect("config");
    let inventory = dir.path().join("hosts.txt");
    std::fs::write(&inventory, hosts.iter().map(|(a, _)| format!("{a}\n")).collect::<String>()).expect("inventory");
    let (status, stderr) = run(ssh_args(
        agent(dir.path(), &config, &dir.path().join("state"), &server).arg("ssh").arg("--inventory").arg(&inventory),
    ))
    .await;
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("ok {}, failed 1", hosts.len() - 1)), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "  {flooding}  {flooding}:{SSH_PORT}: output exceeds 1048576 bytes (remote_output_limit)\n"
        )),
        "{stderr}"
    );
    let stored = server.stored();
    assert_eq!(stored.len(), hosts.len() - 1, "every other host was delivered");
    for report in &stored {
        assert_eq!(report["sections"]["flood"]["data"], serde_json::json!({}), "{report}");
        assert!(report.get("collected_for").is_none(), "hosts from an inventory carry no collected_for");
    }
}

/// A target of collect-targets for the fake SSH host at `address`.
fn ssh_target(asset_id: i64, hostname: &str, address: &str) -> serde_json::Value {
    serde_json::json!({"asset_id": asset_id, "hostname": hostname, "manage_address": address,
                       "ssh_port": SSH_PORT, "salt_minion_id": hostname})
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_reports_carry_collected_for_only_when_the_server_accepts_it() {
    let hosts = fake_ssh_hosts();
    let address = &hosts[0].0;
    for (offered, expected) in [(Some(true), Some(7)), (None, None), (Some(false), None)] {
        let server = TestServer::start().await;
        let mut answer = serde_json::json!({"targets": [ssh_target(7, "listed-7", address)]});
        if let Some(flag) = offered {
            answer["accepts_collected_for"] = flag.into();
        }
        *server.shared.targets.lock().expect("lock") = answer;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, "[ssh]\nuser = \"root\"\n").expect("config");
        let (status, stderr) = run(ssh_args(
            agent(dir.path(), &config, &dir.path().join("state"), &server).arg("ssh").arg("--from-server"),
        ))
        .await;
        assert_eq!(status, Some(0), "{stderr}");
        let stored = server.stored();
        assert_eq!(stored.len(), 1, "{stderr}");
        assert_eq!(stored[0].get("collected_for").and_then(serde_json::Value::as_i64), expected, "offered {offered:?}");
        if expected.is_none() {
            assert!(stored[0].get("collected_for").is_none(), "the member is left out, not null");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_targets_with_hostile_addresses_are_refused_and_the_others_collected() {
    let hosts = fake_ssh_hosts();
    assert!(hosts.len() >= 3, "{hosts:?}");
    let server = TestServer::start().await;
    let (good, second, third) = (&hosts[0].0, &hosts[1].0, &hosts[2].0);
    *server.shared.targets.lock().expect("lock") = serde_json::json!({"accepts_collected_for": true, "targets": [
        ssh_target(7, "good", good),
        // Real fake hosts behind the hostile parts: trimmed, they would be collected.
        ssh_target(8, "spaced", &format!("{second} -oProxyCommand=touch")),
        ssh_target(9, "newline", &format!("{third}\n")),
        {"asset_id": 10, "hostname": "esc\u{1b}[2J", "manage_address": null, "ssh_port": SSH_PORT, "salt_minion_id": null},
    ]});
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[ssh]\nuser = \"root\"\n").expect("config");
    let (status, stderr) =
        run(ssh_args(agent(dir.path(), &config, &dir.path().join("state"), &server).arg("ssh").arg("--from-server")))
            .await;
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("ok 1, failed 3"), "{stderr}");
    for (asset, what) in [(8, "manage_address"), (9, "manage_address"), (10, "hostname")] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("  asset-{asset} ")))
            .unwrap_or_else(|| panic!("no summary line for asset {asset}: {stderr}"));
        assert!(line.contains(&format!("the server gives asset {asset} {what} ")), "{line}");
        assert!(line.contains("or contain whitespace or control characters; not collected"), "{line}");
    }
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    let stored = server.stored();
    assert_eq!(stored.len(), 1, "only the good target was collected");
    assert_eq!(stored[0]["collected_for"], 7);
}

/// A stand-in for the `salt` CLI, for what a real master cannot be made to do: it records its
/// arguments (one a line) in the returned log, then answers for every minion of its `-L` list as
/// this machine would, running the command it was given, except for a minion named `evil`, whose
/// answer is terminal escape sequences.
fn recording_salt(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("salt-argv");
    let salt = dir.join("salt");
    let script = format!(
        r#"#!/bin/sh
printf '%s\n' "$@" >> '{log}'
list=; cmd=
while [ $# -gt 0 ]; do
  case $1 in -L) list=$2; shift ;; cmd.run_all) cmd=$2; shift ;; esac
  shift
done
out=$(sh -c "$cmd" | tr -d '\n')
sep=; printf '{{'
IFS=,
for m in $list; do
  case $m in
    evil) printf '%s"%s": "\\u001b]0;pwned\\u0007\\r\\u009b2J\\u001b[2J hostile"' "$sep" "$m" ;;
    *) printf '%s"%s": {{"retcode": 0, "stderr": "", "stdout": "%s"}}' "$sep" "$m" "$out" ;;
  esac
  sep=,
done
printf '}}\n'
"#,
        log = log.display()
    );
    std::fs::write(&salt, script).expect("stand-in salt");
    std::fs::set_permissions(&salt, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (salt, log)
}

fn salt_config(dir: &Path, salt: &Path) -> PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(&config, format!("[salt]\nsalt_bin = \"{}\"\ntimeout = \"10s\"\n", salt.display())).expect("config");
    config
}

/// The `-L` arguments of every `salt` call recorded in `log`.
fn listed(log: &Path) -> Vec<String> {
    let argv = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = argv.lines().collect();
    lines.windows(2).filter(|w| w[0] == "-L").map(|w| w[1].to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn salt_targets_with_hostile_minion_ids_never_reach_salt() {
    let server = TestServer::start().await;
    let target = |asset: i64, minion: &str| {
        serde_json::json!({"asset_id": asset, "hostname": format!("host-{asset}"), "manage_address": null,
                           "ssh_port": null, "salt_minion_id": minion})
    };
    *server.shared.targets.lock().expect("lock") = serde_json::json!({"accepts_collected_for": true, "targets": [
        target(7, "m1"),
        target(8, "a,b"),
        target(9, "*"),
        target(10, ""),
        target(11, "web 01"),
        target(12, &"m".repeat(254)),
        target(13, "m[12]"),
    ]});
    let dir = tempfile::tempdir().expect("tempdir");
    let (salt, log) = recording_salt(dir.path());
    let config = salt_config(dir.path(), &salt);
    let (status, stderr) =
        run(agent(dir.path(), &config, &dir.path().join("state"), &server).arg("salt").arg("--from-server")).await;
    assert_eq!(status, Some(1), "{stderr}");
    assert_eq!(listed(&log), vec!["m1".to_owned()], "only the plain id reached salt -L");
    assert!(stderr.contains("ok 1, failed 6"), "{stderr}");
    for asset in 8..=13 {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("  asset-{asset} ")))
            .unwrap_or_else(|| panic!("no summary line for asset {asset}: {stderr}"));
        assert!(line.contains("salt_minion_id refused: the minion id"), "{line}");
    }
    let stored = server.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["collected_for"], 7, "the server offered collected_for");

    // On the command line the same ids stop the run before salt is started.
    let before = listed(&log).len();
    for hostile in ["m1,a b", "m1,*", "m1,web\u{1b}[2J"] {
        let (status, stderr) = run(agent(dir.path(), &config, &dir.path().join("state"), &server)
            .arg("salt")
            .arg("--target")
            .arg(hostile))
        .await;
        assert_eq!(status, Some(1), "{hostile:?}: {stderr}");
        assert!(stderr.contains("--target"), "{stderr}");
        assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    }
    assert_eq!(listed(&log).len(), before, "salt never ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn salt_reports_carry_collected_for_only_for_server_targets_of_a_server_that_accepts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (salt, _) = recording_salt(dir.path());
    let config = salt_config(dir.path(), &salt);
    let targets = serde_json::json!([{"asset_id": 7, "hostname": "listed-7", "manage_address": null,
                                      "ssh_port": null, "salt_minion_id": "m1"}]);
    // An older server: no accepts_collected_for.
    let old = TestServer::start().await;
    *old.shared.targets.lock().expect("lock") = serde_json::json!({"targets": targets});
    let (status, stderr) =
        run(agent(dir.path(), &config, &dir.path().join("state"), &old).arg("salt").arg("--from-server")).await;
    assert_eq!(status, Some(0), "{stderr}");
    let stored = old.stored();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].get("collected_for").is_none(), "{}", stored[0]);

    // A server that accepts it, for targets it listed only: not for minions named on the command line.
    let new = TestServer::start().await;
    *new.shared.targets.lock().expect("lock") = serde_json::json!({"accepts_collected_for": true, "targets": targets});
    let (status, stderr) =
        run(agent(dir.path(), &config, &dir.path().join("state"), &new).arg("salt").arg("--from-server")).await;
    assert_eq!(status, Some(0), "{stderr}");
    let (status, stderr) =
        run(agent(dir.path(), &config, &dir.path().join("state"), &new).arg("salt").arg("--target").arg("m1")).await;
    assert_eq!(status, Some(0), "{stderr}");
    let stored = new.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["collected_for"], 7);
    assert!(stored[1].get("collected_for").is_none(), "{}", stored[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_text_reaches_the_terminal_escaped() {
    let server = TestServer::start().await;
    // The server's host name for m1 differs from what m1 reports, which the agent logs; the
    // minion `evil` answers with escape sequences, which the summary shows.
    *server.shared.targets.lock().expect("lock") = serde_json::json!({"targets": [
        {"asset_id": 7, "hostname": "listed\u{1b}]0;pwned\u{7}\r\u{9b}2J", "manage_address": null, "ssh_port": null,
         "salt_minion_id": "m1"},
        {"asset_id": 8, "hostname": "evil-host", "manage_address": null, "ssh_port": null, "salt_minion_id": "evil"},
    ]});
    let dir = tempfile::tempdir().expect("tempdir");
    let (salt, _) = recording_salt(dir.path());
    let config = salt_config(dir.path(), &salt);
    let (status, stderr) =
        run(agent(dir.path(), &config, &dir.path().join("state"), &server).arg("salt").arg("--from-server")).await;
    assert_eq!(status, Some(1), "{stderr}");
    let controls: Vec<char> = stderr.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(controls.is_empty(), "control characters reached the terminal: {controls:?} in {stderr:?}");
    let failed = stderr.lines().find(|l| l.starts_with("  asset-8 ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(failed.contains("Salt answered: \\x1b]0;pwned\\x07\\r\\u{9b}2J\\x1b[2J hostile"), "{failed}");
    let logged = stderr.lines().find(|l| l.contains("host name differs")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(logged.contains("listed=listed\\x1b]0;pwned\\x07\\r\\u{9b}2J"), "{logged}");
}
