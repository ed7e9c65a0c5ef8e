//! `cmdb-server verify` on both backends: a history written by reports, business edits, a merge
//! and a delete rebuilds every stored state; a change row edited or deleted behind cmdb's back, or
//! a section row no change wrote, is named, and the command exits non-zero.

mod common;

use std::process::Command;

use cmdb_server::service::verify::verify;
use common::{Backend, TestDb, TestServer, at, report};
use serde_json::json;
use sqlx::Row;

fn run_verify(db: &TestDb) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
        .args(["--database-url", &db.url, "--data-dir"])
        .arg(db.dir.path().join("data"))
        .arg("verify")
        .env("CMDB_LOG", "warn")
        .output()
        .expect("run cmdb-server verify");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn verify_names_what_was_tampered_with(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let mut ids = Vec::new();
    for host in ["v-01", "v-02", "v-03"] {
        ids.push(server.accept(&report(host)).await["asset_id"].as_i64().expect("id"));
    }
    let mut changed = at(report("v-01"), 10);
    changed["sections"]["cpu"]["data"]["cpu_count"] = json!(16);
    server.accept(&changed).await;
    let (status, _) =
        server.send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{}", ids[0]), &json!({"owner": "ops"})).await;
    assert_eq!(status, 200);
    let (status, _) = server
        .send_json(&server.admin, "POST", &format!("/api/v1/assets/{}/merge", ids[1]), &json!({"from": ids[2]}))
        .await;
    assert_eq!(status, 200);
    let found = verify(server.db(), &mut |_| {}).await.expect("verify");
    assert_eq!((found.assets, found.mismatches.len()), (3, 0), "{:?}", found.mismatches);
    assert!(found.changes > 20);
    let (ok, out) = run_verify(&db);
    assert!(ok, "{out}");
    assert!(out.contains("verified 3 assets") && out.contains("rebuilds every stored state"), "{out}");

    // Behind cmdb's back: one change row edited in the middle of v-01's history, one deleted from
    // v-02's (not its last), and a section row of no asset.
    let writer = server.db().writer();
    let middle: i64 = sqlx::query("SELECT id FROM changes WHERE asset_id = $1 AND section = 'cpu' ORDER BY id LIMIT 1")
        .bind(ids[0])
        .fetch_one(writer)
        .await
        .expect("row")
        .try_get(0)
        .expect("id");
    sqlx::query("UPDATE changes SET new_value = '{\"cpu_count\": 64, \"cpu_model\": \"forged\"}' WHERE id = $1")
        .bind(middle)
        .execute(writer)
        .await
        .expect("edit");
    let removed: i64 = sqlx::query(
        "SELECT id FROM changes WHERE asset_id = $1 AND section = 'disk' AND component IS NOT NULL ORDER BY id LIMIT 1",
    )
    .bind(ids[1])
    .fetch_one(writer)
    .await
    .expect("row")
    .try_get(0)
    .expect("id");
    sqlx::query("DELETE FROM changes WHERE id = $1").bind(removed).execute(writer).await.expect("delete");
    sqlx::query("INSERT INTO asset_sections (asset_id, section, fields) VALUES ($1, 'forged', '{}')")
        .bind(ids[2])
        .execute(writer)
        .await
        .expect("a section no change wrote");
    let found = verify(server.db(), &mut |_| {}).await.expect("verify");
    let named: Vec<(i64, Option<i64>)> = found.mismatches.iter().map(|m| (m.asset_id, m.change_id)).collect();
    assert_eq!(named.len(), 3, "{:?}", found.mismatches);
    assert_eq!(named[0].0, ids[0]);
    assert_eq!(named[1].0, ids[1]);
    assert_eq!(named[2], (ids[2], None), "a section no change wrote");
    assert!(found.mismatches[0].reason.contains("section cpu"), "{:?}", found.mismatches[0]);
    assert!(found.mismatches[1].reason.contains("disk"), "{:?}", found.mismatches[1]);
    let (ok, out) = run_verify(&db);
    assert!(!ok, "verify exits non-zero: {out}");
    assert!(out.contains(&format!("asset {}:", ids[0])) && out.contains("3 mismatch(es)"), "{out}");
}

on_both_backends!(verify_names_what_was_tampered_with);
