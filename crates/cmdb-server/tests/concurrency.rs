//! Concurrency: reports racing for one asset are serialized (no duplicate assets or components,
//! no SQLITE_BUSY), two server instances share one PostgreSQL, and a consumer following the change
//! feed while writers commit out of order never misses a change.

mod common;

use std::collections::BTreeSet;

use cmdb_model::diff::replay;
use cmdb_server::store;
use common::{Backend, TestDb, TestServer, at, report};
use serde_json::json;
use sqlx::Row;

async fn count(server: &TestServer, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(server.state.db.reader()).await.expect("count").try_get(0).expect("int")
}

/// The first column of every row `sql` returns.
async fn column<T>(conn: &mut sqlx::AnyConnection, sql: &'static str) -> Vec<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await.expect(sql);
    rows.iter().map(|row| row.try_get(0).expect(sql)).collect()
}

/// Asserts that replaying asset `id`'s history rebuilds its stored state, and returns the state.
async fn assert_history_rebuilds_state(conn: &mut sqlx::AnyConnection, id: i64) -> cmdb_model::state::AssetState {
    let state = store::load_state(conn, id).await.expect("state");
    let ops: Vec<_> = store::asset_history(conn, id).await.expect("history").iter().map(|c| c.op()).collect();
    assert_eq!(replay(&ops).expect("replay"), state, "asset {id}: history rebuilds the state");
    state
}

async fn racing_reports_for_one_host(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let mut tasks = Vec::new();
    for i in 0..40_i64 {
        let mut r = at(report("race-01"), i);
        // Different disks per report so the races also touch components.
        r["sections"]["disk"]["data"]["disks"][1]["slot"] = json!(format!("32:{}", i % 5 + 1));
        let client = server.http.clone();
        let (key, secret, base) = (server.collector.0.clone(), server.collector.1.clone(), server.base.clone());
        tasks.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&r).expect("json");
            let header = cmdb_model::signing::authorization(
                &key,
                &secret,
                "POST",
                "/api/v1/reports",
                chrono::Utc::now().timestamp(),
                &cmdb_server::auth::random_hex(16),
                &body,
            );
            let response = client
                .post(format!("{base}/api/v1/reports"))
                .header("content-type", "application/json")
                .header("authorization", header)
                .body(body)
                .send()
                .await
                .expect("send");
            response.status().as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), 200, "every racing report is acknowledged (no SQLITE_BUSY, no deadlock)");
    }
    assert_eq!(count(&server, "SELECT COUNT(*) FROM assets").await, 1, "one host, one asset");
    let duplicates = count(
        &server,
        "SELECT COUNT(*) FROM (SELECT asset_id, section, ckey FROM components GROUP BY asset_id, section, ckey HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(duplicates, 0);
    let mut conn = server.state.db.reader().acquire().await.expect("conn");
    let id: i64 = sqlx::query("SELECT id FROM assets").fetch_one(&mut *conn).await.expect("id").try_get(0).expect("id");
    // The history still rebuilds the state after the race.
    let state = assert_history_rebuilds_state(&mut conn, id).await;
    assert_eq!(state.sections["disk"].components.len(), 2);
}

async fn follow_feed(server: &TestServer, cursor: &mut Option<String>, seen: &mut Vec<i64>) {
    loop {
        let path = match cursor.as_deref() {
            Some(c) => format!("/api/v1/changes?limit=100&after={c}"),
            None => "/api/v1/changes?limit=100".to_owned(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return;
        }
        seen.extend(items.iter().map(|c| c["id"].as_i64().expect("id")));
        *cursor = page["next"].as_str().map(str::to_owned);
    }
}

async fn feed_consumer_misses_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    // Two instances on one database (on SQLite: two pools on one file, as two processes would be).
    let first = TestServer::start(&db).await;
    let second = TestServer::start(&db).await;
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let server = if w == 0 { &first } else { &second };
            let client = server.http.clone();
            let (key, secret, base) = (server.collector.0.clone(), server.collector.1.clone(), server.base.clone());
            tokio::spawn(async move {
                for i in 0..30_i64 {
                    let mut r = at(report(&format!("feed-{w}-{}", i % 6)), i);
                    r["sections"]["cpu"]["data"]["cpu_count"] = json!(i);
                    let body = serde_json::to_vec(&r).expect("json");
                    let header = cmdb_model::signing::authorization(
                        &key,
                        &secret,
                        "POST",
                        "/api/v1/reports",
                        chrono::Utc::now().timestamp(),
                        &cmdb_server::auth::random_hex(16),
                        &body,
                    );
                    let status = client
                        .post(format!("{base}/api/v1/reports"))
                        .header("content-type", "application/json")
                        .header("authorization", header)
                        .body(body)
                        .send()
                        .await
                        .expect("send")
                        .status();
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    // Follow the feed while the writers commit.
    let mut cursor = None;
    let mut seen = Vec::new();
    while writers.iter().any(|w| !w.is_finished()) {
        follow_feed(&first, &mut cursor, &mut seen).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let all: BTreeSet<i64> = sqlx::query("SELECT id FROM changes")
        .fetch_all(first.state.db.reader())
        .await
        .expect("ids")
        .iter()
        .map(|r| r.try_get::<i64, _>(0).expect("id"))
        .collect();
    // On PostgreSQL the feed waits for every older write transaction of this database to end,
    // so it may be late; it must never skip. Keep following until it has caught up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        follow_feed(&first, &mut cursor, &mut seen).await;
        if seen.len() >= all.len() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let consumed: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(consumed.len(), seen.len(), "no change delivered twice");
    assert_eq!(consumed, all, "the consumer saw every change");
    assert_eq!(count(&first, "SELECT COUNT(*) FROM assets").await, 12, "no duplicate assets across instances");
}

/// Reports that fail and reports that succeed, all at once (on SQLite in groups that share a
/// transaction): each gets its own answer, a refused or replayed report leaves nothing behind, a
/// report whose last write fails (a trigger poisons some report ids) rolls back alone, and the
/// others are stored whole with intact chains.
async fn refused_reports_fail_alone(backend: Backend) {
    use cmdb_server::auth::{KeyCache, KeyScope, create_agent_key};
    use cmdb_server::ingest::{self, Disposition, IngestError, NonceUse};

    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let secret_key = std::sync::Arc::new(cmdb_server::secrets::SecretKey::from_bytes(&[1; 32], "test".into()));
    let (host_key_id, _) =
        create_agent_key(db.writer(), &secret_key, KeyScope::Host, "bound", None).await.expect("key");
    let keys = KeyCache::new(std::time::Duration::ZERO, secret_key.clone());
    let host_key = keys.get(db.writer(), &host_key_id).await.expect("lookup").expect("key");
    let parse = |value: serde_json::Value| {
        cmdb_model::report::validate(serde_json::from_value(value).expect("wire")).expect("valid")
    };
    // The host key is bound to mixed-00 by its first report.
    let bound = parse(report("mixed-00"));
    let ingestor = ingest::Ingestor::start(db.clone());
    ingestor.ingest(&bound, "agent", Some(&host_key), None).await.expect("first report of the host key");
    let host_key = KeyCache::new(std::time::Duration::ZERO, secret_key)
        .get(db.writer(), &host_key_id)
        .await
        .expect("lookup")
        .expect("key");

    // The database refuses some reports' last write (their outcome row), after their changes and
    // state were written: only their savepoint may be rolled back.
    let poison: &[&'static str] = match backend {
        Backend::Sqlite => &["CREATE TRIGGER poison BEFORE INSERT ON reports WHEN NEW.report_id LIKE '00000000-%' \
             BEGIN SELECT RAISE(ABORT, 'poisoned report'); END"],
        Backend::Postgres => &[
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.report_id LIKE '00000000-%' THEN RAISE EXCEPTION 'poisoned report'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER poison BEFORE INSERT ON reports FOR EACH ROW EXECUTE FUNCTION poison()",
        ],
    };
    for statement in poison {
        sqlx::query(*statement).execute(db.writer()).await.expect("poison trigger");
    }
    let mut tasks = Vec::new();
    for i in 0..60_i64 {
        let ingestor = ingestor.clone();
        let host_key = host_key.clone();
        tasks.push(tokio::spawn(async move {
            let hostname = format!("mixed-{:02}", i % 20 + 1);
            let mut value = at(report(&hostname), i);
            value["sections"]["cpu"]["data"]["cpu_count"] = json!(8 + i);
            if i % 11 == 10 {
                value["report_id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
            }
            let report = cmdb_model::report::validate(serde_json::from_value(value).expect("wire")).expect("valid");
            // Every fifth report reuses the nonce of the one before (a replay), every seventh
            // comes with the host key bound to mixed-00 (refused).
            let nonce = format!("nonce-{}", if i % 5 == 4 { i - 1 } else { i });
            let used =
                NonceUse { key_id: "k", nonce: &nonce, timestamp: chrono::Utc::now().timestamp(), window_secs: 300 };
            let key = (i % 7 == 6).then_some(&host_key);
            let answer = ingestor.ingest(&report, "ssh", key, Some(&used)).await;
            (i, hostname, nonce, answer)
        }));
    }
    let mut applied: std::collections::BTreeMap<String, i64> = Default::default();
    let (mut replays, mut refused, mut poisoned) = (0, 0, 0);
    let mut spent = BTreeSet::new();
    for task in tasks {
        let (i, hostname, nonce, answer) = task.await.expect("task");
        match answer {
            Ok((outcome, disposition)) => {
                assert!(spent.insert(nonce), "report {i}: a nonce is accepted once");
                assert!(i % 7 != 6, "report {i} with a foreign host key was refused");
                // Racing reports of one host may arrive out of order: the older is stale.
                assert_eq!(outcome.applied, disposition != Disposition::Stale, "report {i}: {outcome:?}");
                assert!(disposition != Disposition::Duplicate, "report {i}: every report id is new");
                *applied.entry(hostname).or_default() += 1;
            }
            Err(IngestError::Replay) => replays += 1,
            Err(IngestError::Forbidden(_)) => {
                assert_eq!(i % 7, 6, "only the foreign host key is refused");
                refused += 1;
            }
            Err(IngestError::Db(_)) if i % 11 == 10 => poisoned += 1,
            Err(other) => panic!("report {i}: {other}"),
        }
    }
    assert!(replays >= 1 && refused >= 1, "the mix had replays ({replays}) and refusals ({refused})");
    assert!(poisoned >= 3, "poisoned reports failed ({poisoned})");
    let mut conn = db.reader().acquire().await.expect("conn");
    let stored: i64 =
        sqlx::query("SELECT COUNT(*) FROM reports").fetch_one(&mut *conn).await.expect("n").try_get(0).expect("n");
    assert_eq!(stored, 1 + applied.values().sum::<i64>(), "exactly the acknowledged reports are stored");
    let nonces: BTreeSet<String> = column(&mut conn, "SELECT nonce FROM nonces").await.into_iter().collect();
    assert_eq!(nonces, spent, "exactly the nonces of acknowledged reports are spent (a refused one is not)");
    let ids: Vec<i64> = column(&mut conn, "SELECT id FROM assets").await;
    assert_eq!(ids.len(), 1 + applied.len(), "no asset from a refused report");
    for id in ids {
        assert_history_rebuilds_state(&mut conn, id).await;
    }
    drop(conn);
    common::assert_every_history_rebuilds_its_state(&db).await;
    db.close().await;
}

on_both_backends!(racing_reports_for_one_host, feed_consumer_misses_nothing, refused_reports_fail_alone);

/// The PostgreSQL feed horizon: an open write transaction in another database of the cluster does
/// not hold the feed back, while one in cmdb's own database does (until it ends, and then the
/// feed shows everything, in transaction order).
#[tokio::test(flavor = "multi_thread")]
async fn feed_horizon_is_this_databases_own() {
    use sqlx::Connection;
    let db = TestDb::new(Backend::Postgres).await;
    let server = TestServer::start(&db).await;
    async fn feed(server: &TestServer) -> usize {
        let (status, page) = server.get("/api/v1/changes?limit=1000").await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().map_or(0, Vec::len)
    }

    // A neighbour in another database holds a transaction id open.
    let mut neighbour = sqlx::AnyConnection::connect(&format!("{}/postgres", common::postgres_base()))
        .await
        .expect("connect to the postgres database");
    sqlx::query("BEGIN").execute(&mut neighbour).await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()::text").execute(&mut neighbour).await.expect("take an xid");
    let first = server.accept(&report("horizon-01")).await;
    let first_changes = server.changes(first["asset_id"].as_i64().expect("id")).await.len();
    assert!(first_changes > 0);
    assert_eq!(feed(&server).await, first_changes, "a neighbour's transaction does not delay the feed");

    // A writer in cmdb's own database that started before the next report holds it back.
    let mut writer = sqlx::AnyConnection::connect(&db.url).await.expect("connect to the cmdb database");
    sqlx::query("BEGIN").execute(&mut writer).await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()::text").execute(&mut writer).await.expect("take an xid");
    let second = server.accept(&report("horizon-02")).await;
    let second_changes = server.changes(second["asset_id"].as_i64().expect("id")).await.len();
    assert_eq!(feed(&server).await, first_changes, "a later transaction waits behind a running older one");
    sqlx::query("COMMIT").execute(&mut writer).await.expect("commit");
    assert_eq!(feed(&server).await, first_changes + second_changes, "once it ends, the feed catches up");
    sqlx::query("ROLLBACK").execute(&mut neighbour).await.expect("rollback");
}
