//! Delivery against a server that verifies every signature: retries, spool, refusals, renames.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cmdb_agent::collect::announce_rename;
use cmdb_agent::config::{ConfigInputs, LoadedConfig};
use cmdb_agent::delivery::{Deliverer, Outcome};
use cmdb_model::report::{AgentInfo, HostInfo, Mode, WireReport, WireSection};
use support::{KEY_ID, SECRET, Scripted, TestServer, free_port};

fn config(server_url: &str, state_dir: &Path, extra: &[(&str, &str)]) -> LoadedConfig {
    let empty = state_dir.join("agent.toml");
    std::fs::write(&empty, "").expect("config file");
    let mut env: Vec<(String, String)> = vec![
        ("CMDB_SERVER_URL".into(), server_url.into()),
        ("CMDB_KEY_ID".into(), KEY_ID.into()),
        ("CMDB_SECRET".into(), SECRET.into()),
        ("CMDB_STATE_DIR".into(), state_dir.display().to_string()),
        ("CMDB_DELIVERY__RETRIES".into(), "3".into()),
        ("CMDB_DELIVERY__BACKOFF".into(), "10ms".into()),
        ("CMDB_DELIVERY__TIMEOUT".into(), "5s".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    cmdb_agent::config::load(&ConfigInputs { file: Some(empty), env, flags: vec![] }).expect("config loads")
}

fn deliverer(loaded: &LoadedConfig) -> Deliverer {
    cmdb_agent::commands::deliverer(loaded).expect("deliverer")
}

fn report(hostname: &str) -> WireReport {
    let mut sections = std::collections::BTreeMap::new();
    sections.insert("cpu".to_owned(), WireSection::ok(serde_json::json!({"cpu_count": 4})));
    WireReport {
        schema: 1,
        report_id: uuid::Uuid::new_v4(),
        collected_at: chrono::Utc::now(),
        agent: AgentInfo { version: "test".into(), mode: Mode::Agent },
        host: HostInfo { hostname: hostname.into(), previous_hostname: None, machine_id: None },
        sections,
        collected_for: None,
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            entries.map(|e| e.expect("entry").path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect()
        }
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn every_attempt_is_signed_afresh_and_503_then_200_delivers_once() {
    let server = TestServer::start().await;
    server.queue(Scripted::status(503));
    server.queue(Scripted::status(502));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = deliverer(&config(&server.url(), dir.path(), &[]));
    let r = report("web-01");
    let outcome = d.deliver("local", &r).await.expect("delivers");
    assert!(matches!(outcome, Outcome::Delivered(_)), "{outcome:?}");

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "two failures then success: {seen:?}");
    assert!(seen.iter().all(|s| s.signature_ok), "every attempt carries a valid signature");
    let nonces: HashSet<_> = seen.iter().filter_map(|s| s.nonce.clone()).collect();
    assert_eq!(nonces.len(), 3, "every attempt has its own nonce");
    assert!(seen.iter().all(|s| s.nonce.as_ref().is_some_and(|n| n.len() == 32)));
    assert_eq!(server.stored_ids(), vec![r.report_id.to_string()]);
    assert!(files(&dir.path().join("spool")).is_empty());
}

#[tokio::test]
async fn retry_after_is_respected() {
    let server = TestServer::start().await;
    server.queue(Scripted { retry_after: Some("1".into()), ..Scripted::status(429) });
    let dir = tempfile::tempdir().expect("tempdir");
    let d = deliverer(&config(&server.url(), dir.path(), &[]));
    d.deliver("local", &report("web-01")).await.expect("delivers");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(waited >= Duration::from_millis(950), "waited only {waited:?}");
}

#[tokio::test]
async fn a_400_is_not_retried_and_is_kept_for_inspection() {
    let server = TestServer::start().await;
    server.queue(Scripted {
        body: r#"{"error":"an ok section must carry data","pointer":"/sections/cpu/data"}"#.into(),
        ..Scripted::status(400)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let d = deliverer(&config(&server.url(), dir.path(), &[]));
    let outcome = d.deliver("local", &report("web-01")).await.expect("handled");
    match outcome {
        Outcome::Rejected { status, message } => {
            assert_eq!(status, 400);
            assert!(message.contains("must carry data") && message.contains("/sections/cpu/data"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(server.seen().len(), 1, "not retried");
    let rejected = files(&dir.path().join("rejected"));
    assert_eq!(rejected.len(), 1);
    let kept = std::fs::read_to_string(&rejected[0]).expect("read");
    assert!(kept.contains("must carry data") && kept.contains("\"status\": 400"), "{kept}");
    assert!(files(&dir.path().join("spool")).is_empty(), "a refused report is not spooled");

    // The server's own validation refusing a malformed report ends the same way.
    let mut bad = report("web-02");
    bad.sections
        .insert("cpu".into(), WireSection { status: cmdb_model::report::SectionStatus::Ok, data: None, error: None });
    assert!(matches!(d.deliver("local", &bad).await.expect("handled"), Outcome::Rejected { status: 400, .. }));
}

#[tokio::test]
async fn server_down_spools_and_the_next_run_delivers_exactly_once_oldest_first() {
    let addr = free_port();
    let url = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("tempdir");

    // Two runs while the server is down: both reports are spooled.
    let first = report("web-01");
    let second = report("web-01");
    for r in [&first, &second] {
        let d = deliverer(&config(&url, dir.path(), &[("CMDB_DELIVERY__RETRIES", "1")]));
        assert!(matches!(d.deliver("local", r).await.expect("spooled"), Outcome::Spooled(_)));
    }
    assert_eq!(files(&dir.path().join("spool")).len(), 2);

    // The server is back: the next run sends the spool, oldest first, then its own report.
    let server = TestServer::start_on(addr).await;
    let third = report("web-01");
    let d = deliverer(&config(&url, dir.path(), &[]));
    assert!(matches!(d.deliver("local", &third).await.expect("delivers"), Outcome::Delivered(_)));
    assert_eq!(
        server.stored_ids(),
        vec![first.report_id.to_string(), second.report_id.to_string(), third.report_id.to_string()]
    );
    assert!(files(&dir.path().join("spool")).is_empty());

    // Nothing is sent twice: a later flush finds an empty spool.
    let attempts = server.seen().len();
    let summary = deliverer(&config(&url, dir.path(), &[])).flush_spool().await.expect("flush");
    assert_eq!((summary.delivered, summary.remaining), (0, 0));
    assert_eq!(server.seen().len(), attempts);
    assert_eq!(server.stored().len(), 3);
}

#[tokio::test]
async fn a_wrong_key_spools_instead_of_rejecting() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = deliverer(&config(&server.url(), dir.path(), &[("CMDB_SECRET", "wrong-secret")]));
    let outcome = d.deliver("local", &report("web-01")).await.expect("handled");
    assert!(matches!(outcome, Outcome::Spooled(ref why) if why.contains("401")), "{outcome:?}");
    assert_eq!(server.seen().len(), 1, "401 is not retried");
    assert!(d.halted().is_some());
    assert_eq!(files(&dir.path().join("spool")).len(), 1, "the report waits for a fixed key");
    assert!(files(&dir.path().join("rejected")).is_empty());

    // With the right key, the next run delivers it.
    let d = deliverer(&config(&server.url(), dir.path(), &[]));
    let summary = d.flush_spool().await.expect("flush");
    assert_eq!(summary.delivered, 1);
    assert_eq!(server.stored().len(), 1);
}

#[tokio::test]
async fn a_rename_reaches_the_server_as_previous_hostname() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = config(&server.url(), dir.path(), &[]);

    let mut r = report("old-name");
    let d = deliverer(&loaded);
    announce_rename(&mut r, d.state(), "local");
    d.deliver("local", &r).await.expect("delivers");
    d.finish().expect("state saved");

    // The next run (a new process) finds the host renamed.
    let d = deliverer(&loaded);
    let mut r = report("new-name");
    announce_rename(&mut r, d.state(), "local");
    assert_eq!(r.host.previous_hostname.as_deref(), Some("old-name"));
    d.deliver("local", &r).await.expect("delivers");
    d.finish().expect("state saved");

    let d = deliverer(&loaded);
    let mut r = report("new-name");
    announce_rename(&mut r, d.state(), "local");
    assert_eq!(r.host.previous_hostname, None, "announced once the server has the new name");

    let stored = server.stored();
    assert_eq!(stored[1]["host"]["previous_hostname"], "old-name");
    assert_eq!(stored[1]["host"]["hostname"], "new-name");
}

#[tokio::test]
async fn collect_targets_is_a_signed_get() {
    let server = TestServer::start().await;
    *server.shared.targets.lock().expect("lock") = serde_json::json!({"targets": [
        {"asset_id": 1, "hostname": "web-01", "manage_address": "10.0.0.5", "ssh_port": 2222, "salt_minion_id": "web-01"},
        {"asset_id": 2, "hostname": "db-01", "manage_address": null, "ssh_port": null, "salt_minion_id": null}
    ]});
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = config(&server.url(), dir.path(), &[]);
    let client = cmdb_agent::client::ServerClient::new(
        loaded.server_url().expect("url"),
        loaded.credentials().expect("key"),
        Duration::from_secs(5),
    )
    .expect("client");
    let answer = client.collect_targets(Some("ssh")).await.expect("targets");
    assert!(!answer.accepts_collected_for, "a server that does not say so does not accept collected_for");
    let targets = answer.targets;
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].manage_address.as_deref(), Some("10.0.0.5"));
    assert_eq!(targets[0].ssh_port, Some(2222));
    assert_eq!(targets[1].manage_address, None);
    let seen = server.seen();
    assert_eq!(seen[0].target, "/api/v1/collect-targets?mode=ssh");
    assert!(seen[0].signature_ok);
}
