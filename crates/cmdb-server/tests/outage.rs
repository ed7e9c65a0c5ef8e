//! The database goes away: answers are 503 with Retry-After (never 500), nothing is half-written,
//! and the server recovers by itself when the database returns. Uses a throwaway PostgreSQL cluster
//! so nothing else on the machine is disturbed.

mod common;

#[path = "common/pgcluster.rs"]
mod pgcluster;

use std::time::{Duration, Instant};

use common::{TestDb, TestServer, at, report, test_config};
use pgcluster::PgCluster;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_and_recovers() {
    let cluster = PgCluster::start();
    // A TestDb pointing at the private cluster's own "postgres" database.
    let mut db = TestDb::new(common::Backend::Sqlite).await;
    db.backend = common::Backend::Postgres;
    db.url = cluster.url("postgres");
    let mut config = test_config(&db);
    config.pool.acquire_timeout_secs = 2;
    let server = TestServer::start_with(&db, config).await;
    let base = report("outage-01");
    let first = server.accept(&base).await;

    cluster.down();
    let started = Instant::now();
    let (status, body) = server.report(&at(base.clone(), 1)).await;
    assert_eq!(status, 503, "report while the database is down: {body}");
    assert_eq!(body["error"], "unavailable");
    assert!(started.elapsed() < Duration::from_secs(15), "the answer comes within the acquire timeout");
    let response = server
        .http
        .post(format!("{}/api/v1/reports", server.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    // Unsigned: refused before the database is needed, still not a 500.
    assert_eq!(response.status(), 401);
    let ready = server.http.get(format!("{}/readyz", server.base)).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let (status, _) = server.get("/api/v1/assets").await;
    assert_eq!(status, 503);
    let response = server
        .http
        .get(format!("{}/api/v1/assets", server.base))
        .bearer_auth(&server.admin)
        .send()
        .await
        .expect("send");
    assert!(response.headers().get("retry-after").is_some(), "503 carries Retry-After");
    let health = server.http.get(format!("{}/healthz", server.base)).send().await.expect("healthz");
    assert_eq!(health.status(), 200, "the process is up even when the database is not");

    cluster.up();
    // The pools reconnect by themselves: no restart of the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    let retried = at(base, 2);
    let outcome: Value = loop {
        let (status, body) = server.report(&retried).await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "only 503 while recovering: {body}");
        assert!(Instant::now() < deadline, "the server did not recover within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(outcome["asset_id"], first["asset_id"]);
    let ready = server.http.get(format!("{}/readyz", server.base)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
}
