//! kill -9 under load: after a restart, every report acknowledged with 2xx is there, and every
//! asset's state is exactly one applied report (no half-applied report). Runs the real binary.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cmdb_server::auth::{self, KeyScope};
use cmdb_server::db::{Db, PoolSettings};
use cmdb_server::store;
use common::{Backend, TestDb, report};
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::Mutex;

const HOSTS: usize = 24;

/// host -> (last acknowledged sequence number, report ids acknowledged).
type Acked = BTreeMap<usize, (i64, Vec<String>)>;

fn spawn_server(db: &TestDb, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--database-url", &db.url, "--data-dir"])
        .arg(db.dir.path().join("data"))
        .env("CMDB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cmdb-server")
}

/// A report whose every section carries the sequence number `seq`, so a half-applied report
/// would show as sections with different numbers.
fn numbered(host: usize, seq: i64) -> Value {
    let mut r = report(&format!("crash-{host:02}"));
    r["collected_at"] = json!((chrono::Utc::now() + chrono::Duration::milliseconds(seq)).to_rfc3339());
    r["sections"]["cpu"]["data"]["cpu_count"] = json!(seq);
    r["sections"]["memory"]["data"]["total_mb"] = json!(seq);
    r["sections"]["disk"]["data"]["disks"][0]["capacity_bytes"] = json!(seq);
    r["sections"]["disk"]["data"]["disks"][1]["slot"] = json!(format!("32:{}", seq % 7 + 1));
    r["sections"]["seq"] = json!({"status": "ok", "data": {"seq": seq}});
    r
}

fn seq_of(state: &cmdb_model::AssetState) -> Vec<i64> {
    let mut seqs = vec![
        state.field("cpu", "cpu_count").and_then(Value::as_i64).unwrap_or(-1),
        state.field("memory", "total_mb").and_then(Value::as_i64).unwrap_or(-1),
        state.field("seq", "seq").and_then(Value::as_i64).unwrap_or(-1),
    ];
    if let Some(disk) = state.sections.get("disk") {
        seqs.push(
            disk.components.get("32:0").and_then(|d| d.get("capacity_bytes")).and_then(Value::as_i64).unwrap_or(-1),
        );
        // The second disk's slot moves with the report: a half-applied report would leave two or none.
        let others: Vec<&String> = disk.components.keys().filter(|k| *k != "32:0").collect();
        let expected = format!("32:{}", seqs[0] % 7 + 1);
        seqs.push(if others == [&expected] { seqs[0] } else { -2 });
    }
    seqs
}

async fn kill_nine_loses_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (key_id, secret) = {
        let database = db.open().await;
        // The spawned server reads the secrets key from its data directory, where this creates it.
        let secret_key =
            cmdb_server::admin::open_secrets(&database, &common::test_config(&db)).await.expect("secrets key");
        let key = auth::create_agent_key(database.writer(), &secret_key, KeyScope::Collector, "crash", None)
            .await
            .expect("key");
        database.close().await;
        key
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut child = spawn_server(&db, port);
    common::wait_ready(&http, &base).await;

    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut senders = Vec::new();
    for host in 0..HOSTS {
        let (http, base, key_id, secret, acked) =
            (http.clone(), base.clone(), key_id.clone(), secret.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            // One report in flight per host, so the stored state is the last acknowledged report
            // or the one after it.
            for seq in 1.. {
                let r = numbered(host, seq * 10 + host as i64 % 7);
                let body = serde_json::to_vec(&r).expect("json");
                let header = cmdb_model::signing::authorization(
                    &key_id,
                    &secret,
                    "POST",
                    "/api/v1/reports",
                    chrono::Utc::now().timestamp(),
                    &auth::random_hex(16),
                    &body,
                );
                let sent = http
                    .post(format!("{base}/api/v1/reports"))
                    .header("content-type", "application/json")
                    .header("authorization", header)
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        let mut acked = acked.lock().await;
                        let entry = acked.entry(host).or_default();
                        entry.0 = seq * 10 + host as i64 % 7;
                        entry.1.push(r["report_id"].as_str().unwrap_or_default().to_owned());
                    }
                    // The server is gone: stop this host.
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    for sender in senders {
        let _ = sender.await;
    }
    let acked = acked.lock().await.clone();
    let total: usize = acked.values().map(|(_, ids)| ids.len()).sum();
    assert!(total > HOSTS, "the load ran ({total} reports acknowledged before the kill)");

    // Restart on the same database: it must come up (recovery) and serve.
    let mut child = spawn_server(&db, port);
    common::wait_ready(&http, &base).await;
    let database = Db::open(&db.url, &PoolSettings::default()).await.expect("reopen");
    let mut conn = database.reader().acquire().await.expect("conn");
    for (host, (last_seq, ids)) in &acked {
        for id in ids {
            let found = sqlx::query("SELECT COUNT(*) FROM reports WHERE report_id = $1")
                .bind(id.clone())
                .fetch_one(&mut *conn)
                .await
                .expect("query")
                .try_get::<i64, _>(0)
                .expect("count");
            assert_eq!(found, 1, "acknowledged report {id} of host {host} survived the crash");
        }
        let row = sqlx::query("SELECT id FROM assets WHERE hostname = $1")
            .bind(format!("crash-{host:02}"))
            .fetch_one(&mut *conn)
            .await
            .expect("asset");
        let asset: i64 = row.try_get(0).expect("id");
        let state = store::load_state(&mut conn, asset).await.expect("state");
        let seqs = seq_of(&state);
        assert!(seqs.iter().all(|s| *s == seqs[0]), "host {host}: sections from different reports {seqs:?}");
        assert!(
            seqs[0] == *last_seq || seqs[0] == *last_seq + 10,
            "host {host}: stored report {} is neither the last acknowledged ({last_seq}) nor the one in flight",
            seqs[0]
        );
        let ops: Vec<_> =
            store::asset_history(&mut conn, asset).await.expect("history").iter().map(|c| c.op()).collect();
        assert_eq!(cmdb_model::diff::replay(&ops).expect("replay"), state, "host {host}: history rebuilds the state");
    }
    // No duplicate assets: one per host name. A host whose first report was still in flight at the
    // kill may or may not have one (never acknowledged, perhaps committed), so every acknowledged
    // host has exactly one and no host more.
    let row =
        sqlx::query("SELECT COUNT(*), COUNT(DISTINCT hostname) FROM assets").fetch_one(&mut *conn).await.expect("n");
    let (assets, names): (i64, i64) = (row.try_get(0).expect("n"), row.try_get(1).expect("n"));
    assert_eq!(assets, names, "no duplicate assets");
    assert!(
        (acked.len() as i64..=HOSTS as i64).contains(&assets),
        "{assets} assets for {} acknowledged hosts",
        acked.len()
    );
    drop(conn);
    database.close().await;
    child.kill().expect("stop");
    let _ = child.wait();
}

on_both_backends!(kill_nine_loses_nothing);
