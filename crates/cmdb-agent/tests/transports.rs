//! `cmdb-agent ssh` and `cmdb-agent salt` end to end, against real parts on this machine
//! (`support/hosts.rs`): the agent reads an Ansible INI inventory with a host range of fake SSH
//! hosts, collects every host and delivers to the in-test server; and collects the loopback Salt
//! minions.

mod support;

use std::path::Path;
use std::time::Duration;

use cmdb_agent::collect::collect_replay;
use cmdb_model::report::Mode;
use support::TestServer;
use support::hosts::{
    SALT_DIR, SSH_FIRST_OCTET, SSH_PORT, SSH_STATE, agent, ensure_salt, expected_hostname, fake_ssh_hosts,
    workspace_root,
};

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
    assert!(stored[0].get("collected_for").is_none(), "this server did not say it accepts collected_for");
    assert!(server.seen().iter().any(|s| s.target == "/api/v1/collect-targets?mode=salt"));
}
