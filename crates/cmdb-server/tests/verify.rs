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
    run_verify_with(db, &[])
}

fn run_verify_with(db: &TestDb, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
        .args(["--database-url", &db.url, "--data-dir"])
        .arg(db.dir.path().join("data"))
        .arg("verify")
        .args(args)
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
    let found = verify(server.db(), None, &mut |_| {}).await.expect("verify");
    assert_eq!((found.assets, found.mismatches.len()), (3, 0), "{:?}", found.mismatches);
    assert!(found.changes > 20);
    let (ok, out) = run_verify(&db);
    assert!(ok, "{out}");
    assert!(out.contains("verified 3 assets") && out.contains("rebuilds every stored state"), "{out}");

    // The history so far is an hour old; one edit comes after the instant an auditor keeps.
    common::age_history(server.db(), 3600).await;
    let kept_at = chrono::Utc::now() - chrono::Duration::minutes(30);
    let before_all = chrono::Utc::now() - chrono::Duration::hours(2);
    let (status, _) = server
        .send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{}", ids[2]), &json!({"owner": "late"}))
        .await;
    assert_eq!(status, 200);
    let rfc = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, kept) = server.get(&format!("/api/v1/audit/digest?as_of={}", rfc(kept_at))).await;
    assert_eq!(status, 200, "{kept}");
    let kept_digest = kept["digest"].as_str().expect("digest").to_owned();
    assert_eq!(kept["chains"], 3, "{kept}");
    assert_eq!(kept["algorithm"], "sha256-merkle-v1");
    assert!(kept["verify_command"].as_str().expect("command").ends_with(&kept_digest), "{kept}");
    let (_, empty) = server.get(&format!("/api/v1/audit/digest?as_of={}", rfc(before_all))).await;
    assert_eq!(empty["chains"], 0, "{empty}");
    let (status, now) = server.get("/api/v1/audit/digest").await;
    assert_eq!(status, 200);
    assert_eq!(now["digest"], kept["digest"], "now means settled: the late edit is not in it yet");
    let (status, bad) = server.get("/api/v1/audit/digest?as_of=yesterday-ish").await;
    assert_eq!(status, 400, "{bad}");
    // The kept digest is what verify recomputes from the records, as of that instant.
    let (ok, out) = run_verify_with(&db, &["--as-of", &rfc(kept_at), "--expect", &kept_digest]);
    assert!(ok, "{out}");
    assert!(out.contains(&kept_digest) && !out.contains("differs"), "{out}");

    // Behind cmdb's back: one change row edited in the middle of v-01's history, one deleted from
    // v-02's (not its last), and a section row of no asset.
    let writer = server.db().writer();
    let first_id = |sql: &'static str, asset: i64| async move {
        sqlx::query(sql).bind(asset).fetch_one(writer).await.expect("row").try_get::<i64, _>(0).expect("id")
    };
    let middle =
        first_id("SELECT id FROM changes WHERE asset_id = $1 AND section = 'cpu' ORDER BY id LIMIT 1", ids[0]).await;
    sqlx::query("UPDATE changes SET new_value = '{\"cpu_count\": 64, \"cpu_model\": \"forged\"}' WHERE id = $1")
        .bind(middle)
        .execute(writer)
        .await
        .expect("edit");
    let removed = first_id(
        "SELECT id FROM changes WHERE asset_id = $1 AND section = 'disk' AND component IS NOT NULL ORDER BY id LIMIT 1",
        ids[1],
    )
    .await;
    let after_removed: i64 = sqlx::query("SELECT MIN(id) FROM changes WHERE asset_id = $1 AND id > $2")
        .bind(ids[1])
        .bind(removed)
        .fetch_one(writer)
        .await
        .expect("row")
        .try_get(0)
        .expect("a record after it");
    sqlx::query("DELETE FROM changes WHERE id = $1").bind(removed).execute(writer).await.expect("delete");
    sqlx::query("INSERT INTO asset_sections (asset_id, section, fields) VALUES ($1, 'forged', '{}')")
        .bind(ids[2])
        .execute(writer)
        .await
        .expect("a section no change wrote");
    let found = verify(server.db(), None, &mut |_| {}).await.expect("verify");
    let named: Vec<(i64, Option<i64>)> = found.mismatches.iter().map(|m| (m.asset_id, m.change_id)).collect();
    assert_eq!(
        named,
        vec![(ids[0], Some(middle)), (ids[1], Some(after_removed)), (ids[2], None)],
        "exactly the edited record, the record after the deleted one, and the section no change wrote: {:?}",
        found.mismatches
    );
    assert!(found.mismatches[0].reason.contains("content was edited"), "{:?}", found.mismatches[0]);
    assert!(found.mismatches[1].reason.contains("deleted"), "{:?}", found.mismatches[1]);
    assert!(found.mismatches[2].reason.contains("forged"), "{:?}", found.mismatches[2]);
    let (ok, out) = run_verify(&db);
    assert!(!ok, "verify exits non-zero: {out}");
    assert!(out.contains(&format!("asset {}:", ids[0])) && out.contains("3 mismatch(es)"), "{out}");
    let (ok, out) = run_verify_with(&db, &["--as-of", &rfc(kept_at), "--expect", &kept_digest]);
    assert!(!ok && out.contains("differs"), "the kept digest no longer matches: {out}");
    // Before the tampered records, the history is what it was.
    let (_, early) = server.get(&format!("/api/v1/audit/digest?as_of={}", rfc(before_all))).await;
    let (_, out) =
        run_verify_with(&db, &["--as-of", &rfc(before_all), "--expect", early["digest"].as_str().expect("d")]);
    assert!(!out.contains("differs"), "{out}");

    // Someone who rewrites every hash to match (as the migration step would compute them) makes
    // the chains look intact, but not the digest kept outside the database.
    common::rechain(server.db()).await;
    let found = verify(server.db(), None, &mut |_| {}).await.expect("verify");
    assert!(found.mismatches.iter().all(|m| !m.reason.contains("chain")), "{:?}", found.mismatches);
    let (ok, out) = run_verify_with(&db, &["--as-of", &rfc(kept_at), "--expect", &kept_digest]);
    assert!(!ok && out.contains("differs"), "{out}");
    let (_, stored) = server.get(&format!("/api/v1/audit/digest?as_of={}", rfc(kept_at))).await;
    assert_ne!(stored["digest"], kept["digest"]);
}

on_both_backends!(verify_names_what_was_tampered_with);
