//! Migrations that fill new columns from stored data do so: an asset stored before
//! `0006_list_columns` (no `cabinet_u` column value, no owner/IDC/cabinet search terms) reads
//! after it as one stored after it, on both backends. The migration's own SQL is replayed on a
//! database put back into the state it finds.

mod common;

use cmdb_server::service::assets::{self, ListQuery};
use common::{Backend, TestServer, report};
use serde_json::json;

async fn list_columns_are_filled_from_stored_data(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let id = server.accept(&report("rack-host.example")).await["asset_id"].as_i64().expect("id");
    let (status, body) = server
        .send_json(
            &server.admin,
            "PATCH",
            &format!("/api/v1/assets/{id}"),
            &json!({"cabinet": "R07", "cabinet_u": 12, "owner": "Storage Team", "idc": "FRA-2"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let pool = server.state.db.writer();
    // Back to what an older version left: the column empty, the terms without the new values.
    for statement in [
        "UPDATE assets SET cabinet_u = NULL",
        "DELETE FROM search_terms WHERE term IN ('storage team', 'fra-2', 'r07')",
    ] {
        sqlx::query(statement).execute(pool).await.expect("undo");
    }
    let search = |q: &str| ListQuery { q: Some(q.into()), ..ListQuery::default() };
    assert_eq!(assets::list(&server.state.db, &search("storage")).await.expect("list").total, 0);
    let sql = match backend {
        Backend::Sqlite => include_str!("../migrations/sqlite/0006_list_columns.sql"),
        Backend::Postgres => include_str!("../migrations/postgres/0006_list_columns.sql"),
    };
    // The statements after the ALTERs (the columns exist already), comments left out.
    let code: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    let fills: Vec<&str> =
        code.split(';').map(str::trim).filter(|s| !s.is_empty() && !s.contains("ALTER TABLE")).collect();
    assert!(fills.len() >= 3, "{fills:?}");
    for statement in fills {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).execute(pool).await.expect(statement);
    }
    let detail = assets::detail(&server.state.db, id).await.expect("detail");
    assert_eq!(detail.summary.cabinet_u, Some(12));
    for q in ["storage", "fra-2", "r07"] {
        assert_eq!(assets::list(&server.state.db, &search(q)).await.expect("list").total, 1, "search {q}");
    }
}

on_both_backends!(list_columns_are_filled_from_stored_data);

/// `0009_change_chains`: history written before chains gets them from the migrate step, which
/// resumes where an interrupted run stopped and leaves a chain that `verify` accepts and that
/// ingestion goes on from.
async fn chains_are_computed_for_history_written_before_them(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let mut ids = Vec::new();
    for host in ["old-1", "old-2", "old-3"] {
        ids.push(server.accept(&report(host)).await["asset_id"].as_i64().expect("id"));
    }
    let pool = server.state.db.writer();
    let hashes = || async {
        let rows =
            sqlx::query("SELECT id, hash, prev_hash FROM changes ORDER BY id").fetch_all(pool).await.expect("rows");
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                (row.get::<i64, _>(0), row.get::<Option<String>, _>(1), row.get::<Option<String>, _>(2))
            })
            .collect::<Vec<_>>()
    };
    let written = hashes().await;
    assert!(written.iter().all(|(_, hash, _)| hash.is_some()), "ingestion chains every record");
    // What an older version left: no hashes. And a run interrupted after the first asset: its
    // chain done, the progress row pointing at it.
    sqlx::query("UPDATE changes SET hash = NULL, prev_hash = NULL WHERE asset_id <> $1")
        .bind(ids[0])
        .execute(pool)
        .await
        .expect("unchain");
    sqlx::query("UPDATE settings SET value = $1 WHERE name = 'chain_backfill'")
        .bind(ids[0].to_string())
        .execute(pool)
        .await
        .expect("progress");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
        .args(["--database-url", &db.url, "--data-dir"])
        .arg(db.dir.path().join("data"))
        .arg("migrate")
        .env("CMDB_LOG", "warn")
        .output()
        .expect("run migrate");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(hashes().await, written, "the step computes exactly the hashes ingestion wrote");
    // Ingestion links on from the computed heads.
    let mut next = common::at(report("old-2"), 30);
    next["sections"]["cpu"]["data"]["cpu_count"] = json!(96);
    server.accept(&next).await;
    common::assert_every_history_rebuilds_its_state(&server.state.db).await;
}

on_both_backends!(chains_are_computed_for_history_written_before_them);
