//! `cmdb-server backup` and `restore` across the backends: a backup taken while 16 clients report
//! restores into the other backend with every change it saw (id, txid and every column), counts
//! that match its manifest, and histories that rebuild every state; a restore refuses a database
//! that is not empty unless forced, and one at another schema version; changes written after a
//! restore come after every restored one in the change feed; the file is private.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cmdb_server::backup::{self, BackupError, Manifest};
use cmdb_server::db::Db;
use cmdb_server::service::history::{FeedFilter, change_feed};
use common::{Backend, TestDb, TestServer, at, report, test_config};
use serde_json::json;
use sqlx::Row;

/// Seed hosts reported before the clients start.
const SEED_HOSTS: usize = 24;
/// Concurrent reporting clients.
const CLIENTS: usize = 16;
/// Reports a client sends at most (it stops earlier, when the backup is done).
const CLIENT_REPORTS: u64 = 60;

fn other(backend: Backend) -> Backend {
    match backend {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Sqlite,
    }
}

/// Every column of a change row, as stored.
#[derive(Debug, PartialEq)]
struct ChangeRow {
    id: i64,
    txid: i64,
    asset_id: i64,
    recorded_at: i64,
    collected_at: Option<i64>,
    report_id: Option<String>,
    source: String,
    section: String,
    component: Option<String>,
    path: String,
    action: String,
    old_value: Option<String>,
    new_value: Option<String>,
    summary: String,
}

/// Every change row by id.
async fn changes(db: &Db) -> BTreeMap<i64, ChangeRow> {
    let rows = sqlx::query(
        "SELECT id, txid, asset_id, recorded_at, collected_at, report_id, source, section, component, path, \
         action, old_value, new_value, summary FROM changes ORDER BY id",
    )
    .fetch_all(db.reader())
    .await
    .expect("read changes");
    let decode = |row: &sqlx::any::AnyRow| -> Result<ChangeRow, sqlx::Error> {
        Ok(ChangeRow {
            id: row.try_get(0)?,
            txid: row.try_get(1)?,
            asset_id: row.try_get(2)?,
            recorded_at: row.try_get(3)?,
            collected_at: row.try_get(4)?,
            report_id: row.try_get(5)?,
            source: row.try_get(6)?,
            section: row.try_get(7)?,
            component: row.try_get(8)?,
            path: row.try_get(9)?,
            action: row.try_get(10)?,
            old_value: row.try_get(11)?,
            new_value: row.try_get(12)?,
            summary: row.try_get(13)?,
        })
    };
    rows.iter().map(|row| decode(row).map(|c| (c.id, c))).collect::<Result<_, _>>().expect("decode changes")
}

/// Rows of every table the manifest lists, counted in `db`; `settings` without the feed's txid
/// offset, which a restore sets rather than copies.
async fn counts(db: &Db, manifest: &Manifest) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for table in manifest.tables.keys() {
        let condition = if table == "settings" { " WHERE name <> 'feed_txid_offset'" } else { "" };
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}{condition}")))
            .fetch_one(db.reader())
            .await
            .expect("count")
            .try_get(0)
            .expect("count");
        out.insert(table.clone(), u64::try_from(n).expect("count"));
    }
    out
}

/// The manifest's counts, without the feed offset's row in `settings` when the backup has one.
fn expected_counts(manifest: &Manifest, backup_has_offset: bool) -> BTreeMap<String, u64> {
    let mut out = manifest.tables.clone();
    if backup_has_offset && let Some(settings) = out.get_mut("settings") {
        *settings -= 1;
    }
    out
}

/// Whether `db` holds a feed offset row.
async fn has_offset(db: &Db) -> bool {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM settings WHERE name = 'feed_txid_offset'")
        .fetch_one(db.reader())
        .await
        .expect("count");
    n == 1
}

/// Follows the change feed from `after` to its end; returns the ids in feed order and the last
/// cursor.
async fn follow_feed(db: &Db, after: Option<String>) -> (Vec<i64>, Option<String>) {
    let mut cursor = after;
    let mut ids = Vec::new();
    loop {
        let page = change_feed(db, cursor.as_deref(), FeedFilter::default(), 500).await.expect("feed");
        if page.items.is_empty() {
            return (ids, cursor);
        }
        ids.extend(page.items.iter().map(|c| c.id));
        cursor = page.next;
    }
}

/// Runs `cmdb-server restore` on `db`.
fn run_restore(db: &TestDb, file: &Path, force: bool) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cmdb-server"));
    command.args(["--database-url", &db.url, "--data-dir"]).arg(db.dir.path().join("data"));
    command.arg("restore").arg("--from").arg(file).env("CMDB_LOG", "warn");
    if force {
        command.arg("--force");
    }
    let output = command.output().expect("run cmdb-server restore");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Checks that `target` holds exactly what the backup holds, and every change of `before`.
async fn assert_restored(target: &Db, manifest: &Manifest, offset: bool, before: &BTreeMap<i64, ChangeRow>) {
    assert_eq!(
        counts(target, manifest).await,
        expected_counts(manifest, offset),
        "restored row counts are the manifest's"
    );
    let restored = changes(target).await;
    for (id, row) in before {
        assert_eq!(restored.get(id), Some(row), "change {id} restored with every column");
    }
    common::assert_every_history_rebuilds_its_state(target).await;
}

async fn backup_during_ingest_restores_into_the_other_backend(backend: Backend) {
    let source = TestDb::new(backend).await;
    let server = Arc::new(TestServer::start(&source).await);
    if backend == Backend::Sqlite {
        // As if this SQLite database had been restored from a PostgreSQL cluster whose
        // transaction ids are far ahead of the target's: PostgreSQL then needs an offset too.
        sqlx::query("INSERT INTO settings (name, value) VALUES ('feed_txid_offset', '5000000000')")
            .execute(server.db().writer())
            .await
            .expect("offset");
    }
    for host in 0..SEED_HOSTS {
        server.accept(&report(&format!("seed-{host:02}"))).await;
    }

    // 16 clients report (new hosts, then changes to them) until the backup is done.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (server, stop, accepted) = (server.clone(), stop.clone(), accepted.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < CLIENT_REPORTS {
                let mut changed = at(report(&format!("client-{client:02}-{}", n % 2)), i64::try_from(n).expect("n"));
                changed["sections"]["cpu"]["data"]["cpu_count"] = json!(8 + n);
                let (status, body) = server.report(&changed).await;
                assert_eq!(status, 200, "report refused: {body}");
                accepted.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    while accepted.load(Ordering::SeqCst) < CLIENTS as u64 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = changes(server.db()).await;
    let backup_has_offset = has_offset(server.db()).await;
    let file = source.dir.path().join("backups/cmdb.tar");
    let during = accepted.load(Ordering::SeqCst);
    let written = backup::backup(server.db(), &file).await.expect("backup");
    let during = accepted.load(Ordering::SeqCst) - during;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("client");
    }
    let manifest = written.manifest.clone();
    eprintln!(
        "backup of {} rows ({} bytes) took {:.3} s; {during} reports were accepted meanwhile",
        manifest.rows(),
        written.bytes,
        written.seconds
    );
    assert_eq!(backup::read_manifest(&file).expect("manifest"), manifest);
    assert_eq!(manifest.backend, if backend == Backend::Sqlite { "sqlite" } else { "postgres" });
    assert_eq!(manifest.cmdb_version, env!("CARGO_PKG_VERSION"));
    assert!(!manifest.tables.contains_key("_sqlx_migrations"));
    assert!(manifest.tables["changes"] >= before.len() as u64);
    assert!(manifest.tables["assets"] >= SEED_HOSTS as u64);
    // The file is private (0600) and nothing else was left beside it.
    let mode = std::fs::metadata(&file).expect("backup file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds sealed secrets and password hashes");
    let beside: Vec<_> = std::fs::read_dir(file.parent().expect("dir")).expect("dir").collect();
    assert_eq!(beside.len(), 1, "no temporary file is left");
    // The source kept writing after the snapshot, and its own history still rebuilds.
    common::assert_every_history_rebuilds_its_state(server.db()).await;

    // Into a fresh database of the other backend.
    let target = TestDb::new(other(backend)).await;
    let target_db = target.open().await;
    let restored = backup::restore(&target_db, &file, false).await.expect("restore into an empty database");
    eprintln!(
        "restore into {:?} took {:.3} s (feed txid offset {})",
        other(backend),
        restored.seconds,
        restored.feed_txid_offset
    );
    assert_eq!(restored.manifest, manifest);
    let largest_txid = changes(&target_db).await.values().map(|c| c.txid).max().expect("changes");
    match other(backend) {
        // New changes get the offset as their txid, and larger ids.
        Backend::Sqlite => assert_eq!(restored.feed_txid_offset, largest_txid),
        // The SQLite source's txids are ahead of this cluster's transaction ids.
        Backend::Postgres => assert!(restored.feed_txid_offset > 0 && largest_txid >= 5_000_000_000),
    }
    assert_restored(&target_db, &manifest, backup_has_offset, &before).await;

    // (b) Not empty now: refused without --force (the command exits non-zero and says why),
    // done with it.
    let refused = backup::restore(&target_db, &file, false).await;
    assert!(matches!(refused, Err(BackupError::NotEmpty { .. })), "{refused:?}");
    let (ok, out) = run_restore(&target, &file, false);
    assert!(!ok && out.contains("not empty") && out.contains("--force"), "{out}");
    let (ok, out) = run_restore(&target, &file, true);
    assert!(
        ok && out.contains(&format!("restored {} tables, {} rows", manifest.tables.len(), manifest.rows())),
        "{out}"
    );
    assert_restored(&target_db, &manifest, backup_has_offset, &before).await;

    // (c) Changes written after the restore come after every restored one in the feed.
    let restored_ids: BTreeSet<i64> = changes(&target_db).await.into_keys().collect();
    let (fed, cursor) = follow_feed(&target_db, None).await;
    assert_eq!(fed.iter().copied().collect::<BTreeSet<_>>(), restored_ids, "the feed shows every restored change");
    // Agent secrets are sealed under the key file, which travels beside the backup.
    let key = test_config(&target).secrets_key_file();
    std::fs::create_dir_all(key.parent().expect("data dir")).expect("data dir");
    std::fs::copy(test_config(&source).secrets_key_file(), &key).expect("copy the key file");
    let restarted = TestServer::start(&target).await;
    let mut changed = at(report("seed-00"), 3600);
    changed["sections"]["cpu"]["data"]["cpu_count"] = json!(64);
    restarted.accept(&changed).await;
    restarted.accept(&report("after-restore")).await;
    let new: BTreeSet<i64> = changes(&target_db).await.into_keys().filter(|id| !restored_ids.contains(id)).collect();
    assert!(new.len() > 10, "{new:?}");
    let (fed, _) = follow_feed(&target_db, cursor).await;
    assert_eq!(fed.iter().copied().collect::<BTreeSet<_>>(), new, "exactly the new changes follow the last cursor");
    common::assert_every_history_rebuilds_its_state(&target_db).await;
}

/// Copies the backup at `from` to `to` with its manifest edited.
fn edit_manifest(from: &Path, to: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut archive = tar::Archive::new(std::fs::File::open(from).expect("open backup"));
    let mut builder = tar::Builder::new(std::fs::File::create(to).expect("create copy"));
    let mut edit = Some(edit);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        if path == Path::new("manifest.json") {
            let mut manifest: serde_json::Value = serde_json::from_slice(&data).expect("manifest");
            if let Some(edit) = edit.take() {
                edit(&mut manifest);
            }
            data = serde_json::to_vec(&manifest).expect("json");
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, &path, data.as_slice()).expect("append");
    }
    builder.finish().expect("finish");
}

async fn restore_refuses_what_does_not_fit(backend: Backend) {
    let source = TestDb::new(backend).await;
    let server = TestServer::start(&source).await;
    server.accept(&report("fit-01")).await;
    // The command, beside the running server.
    let file = source.dir.path().join("cmdb.tar");
    let output = Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
        .args(["--database-url", &source.url, "--data-dir"])
        .arg(source.dir.path().join("data"))
        .arg("backup")
        .arg("--to")
        .arg(&file)
        .env("CMDB_LOG", "warn")
        .output()
        .expect("run cmdb-server backup");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    let manifest = backup::read_manifest(&file).expect("manifest");
    assert!(out.starts_with(&format!("backed up {} tables, {} rows", manifest.tables.len(), manifest.rows())), "{out}");

    // (d) Another schema version: refused, naming both, and nothing is written.
    let older = source.dir.path().join("older.tar");
    edit_manifest(&file, &older, |m| m["schema_version"] = json!(manifest.schema_version - 1));
    let target = TestDb::new(backend).await;
    let target_db = target.open().await;
    let refused = backup::restore(&target_db, &older, false).await;
    match &refused {
        Err(e @ BackupError::SchemaMismatch { backup, target, .. }) => {
            assert_eq!((*backup, *target), (manifest.schema_version - 1, manifest.schema_version));
            let text = e.to_string();
            assert!(text.contains("schema version") && text.contains(&target.to_string()), "{text}");
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
    let (ok, out) = run_restore(&target, &older, true);
    assert!(!ok && out.contains("schema version"), "--force does not override the schema check: {out}");

    // A manifest whose counts the tables do not match: refused, and the transaction leaves the
    // target as empty as it was.
    let miscounted = source.dir.path().join("miscounted.tar");
    edit_manifest(&file, &miscounted, |m| m["tables"]["changes"] = json!(1));
    let refused = backup::restore(&target_db, &miscounted, false).await;
    assert!(matches!(&refused, Err(BackupError::Mismatch(text)) if text.contains("changes")), "{refused:?}");
    let assets: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM assets").fetch_one(target_db.reader()).await.expect("count");
    assert_eq!(assets, 0);

    // Not a backup at all.
    let junk = source.dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar").expect("write");
    let refused = backup::restore(&target_db, &junk, false).await;
    assert!(matches!(refused, Err(BackupError::NotABackup { .. })), "{refused:?}");

    // The original restores (the target is still empty), with the finance fields the migrations
    // seeded replaced by the source's.
    backup::restore(&target_db, &file, false).await.expect("restore");
    assert_eq!(counts(&target_db, &manifest).await, expected_counts(&manifest, false));
    assert!(has_offset(&target_db).await, "the restore sets the feed's txid offset");

    // A backup that fails leaves no file behind.
    let failed_dir = source.dir.path().join("failed");
    server.db().close().await;
    let failed = backup::backup(server.db(), &failed_dir.join("cmdb.tar")).await;
    assert!(failed.is_err());
    assert_eq!(std::fs::read_dir(&failed_dir).expect("dir").count(), 0, "nothing is left behind");
}

on_both_backends!(backup_during_ingest_restores_into_the_other_backend, restore_refuses_what_does_not_fit);
