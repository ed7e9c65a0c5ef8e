//! Test harness: real databases (a SQLite file, a fresh PostgreSQL database) and a real server
//! listening on loopback, driven over HTTP with signed requests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use cmdb_server::AppState;
use cmdb_server::auth::{self, KeyScope, Role};
use cmdb_server::config::ServerConfig;
use cmdb_server::db::{Db, PoolSettings};
use serde_json::{Value, json};
use sqlx::Connection;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_base() -> String {
    std::env::var("CMDB_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database that exists for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("cmdb.db").display());
                TestDb { backend, url, dir, pg_name: None }
            }
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let name = format!("cmdb_test_{}", auth::random_hex(6));
                let mut admin = sqlx::AnyConnection::connect(&format!("{}/postgres", postgres_base()))
                    .await
                    .expect("PostgreSQL at 127.0.0.1:5432 must be running for the PostgreSQL half of the suite");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let url = format!("{}/{name}", postgres_base());
                TestDb { backend, url, dir, pg_name: Some(name) }
            }
        }
    }

    pub async fn open(&self) -> Db {
        Db::open(&self.url, &PoolSettings::default()).await.expect("open test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            let _ = std::process::Command::new("psql")
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .output();
        }
    }
}

/// A running server on loopback with an admin token and agent keys.
pub struct TestServer {
    pub base: String,
    pub state: Arc<AppState>,
    pub admin: String,
    pub viewer: String,
    pub collector: (String, String),
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn test_config(db: &TestDb) -> ServerConfig {
    ServerConfig {
        database_url: db.url.clone(),
        data_dir: db.dir.path().join("data"),
        listen: "127.0.0.1:0".to_owned(),
        ..ServerConfig::default()
    }
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(db, test_config(db)).await
    }

    pub async fn start_with(db: &TestDb, config: ServerConfig) -> TestServer {
        let database = db.open().await;
        let admin = auth::create_token(database.writer(), "test-admin", Role::Admin).await.expect("token");
        let viewer = auth::create_token(database.writer(), "test-viewer", Role::Viewer).await.expect("token");
        let secret_key = cmdb_server::admin::open_secrets(&database, &config).await.expect("secrets key");
        let collector =
            auth::create_agent_key(database.writer(), &secret_key, KeyScope::Collector, "test-collector", None)
                .await
                .expect("key");
        let data_dir = config.data_dir.clone();
        let state = AppState::new(database, config, secret_key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = cmdb_server::app(state.clone());
        // With the peer's address, as `cmdb_server::serve` runs it.
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
        });
        TestServer { base, state, admin, viewer, collector, data_dir, http: reqwest::Client::new(), task }
    }

    /// The server's database.
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// Sends a signed request with the collector key.
    pub async fn signed(&self, method: &str, target: &str, body: &[u8]) -> (u16, Value) {
        self.signed_with(&self.collector.0, &self.collector.1, method, target, body, "application/json").await
    }

    pub async fn signed_with(
        &self,
        key_id: &str,
        secret: &str,
        method: &str,
        target: &str,
        body: &[u8],
        content_type: &str,
    ) -> (u16, Value) {
        let now = chrono::Utc::now().timestamp();
        let nonce = auth::random_hex(16);
        let header = cmdb_model::signing::authorization(key_id, secret, method, target, now, &nonce, body);
        let request = self
            .http
            .request(method.parse().expect("method"), format!("{}{target}", self.base))
            .header("authorization", header)
            .header("content-type", content_type)
            .body(body.to_vec());
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts a report (a JSON value) signed with the collector key.
    pub async fn report(&self, report: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(report).expect("json");
        self.signed("POST", "/api/v1/reports", &body).await
    }

    /// Posts a report that must be accepted; returns the outcome.
    pub async fn accept(&self, report: &Value) -> Value {
        let (status, body) = self.report(report).await;
        assert_eq!(status, 200, "report refused: {body}");
        body
    }

    /// GET with the admin token.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(&self.admin, path).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Sends JSON with a bearer token.
    pub async fn send_json(&self, token: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .request(method.parse().expect("method"), format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Every change record of an asset, oldest first.
    pub async fn changes(&self, asset_id: i64) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/v1/assets/{asset_id}/changes?limit=1000")).await;
        assert_eq!(status, 200, "{body}");
        let mut items = body["items"].as_array().cloned().unwrap_or_default();
        items.reverse();
        items
    }

    pub async fn asset(&self, asset_id: i64) -> Value {
        let (status, body) = self.get(&format!("/api/v1/assets/{asset_id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// A complete, valid v1 report.
pub fn report(hostname: &str) -> Value {
    json!({
        "schema": 1,
        "report_id": uuid::Uuid::new_v4().to_string(),
        "collected_at": chrono::Utc::now().to_rfc3339(),
        "agent": {"version": "0.1.0", "mode": "ssh"},
        "host": {"hostname": hostname, "previous_hostname": null, "machine_id": null},
        "sections": {
            "basic": {"status": "ok", "data": {"hostname": hostname, "os_platform": "linux", "os_name": "Debian GNU/Linux", "os_version": "12", "kernel": "6.1.0", "arch": "x86_64"}},
            "cpu": {"status": "ok", "data": {"cpu_count": 8, "cpu_physical_count": 1, "cpu_model": "AMD EPYC"}},
            "board": {"status": "ok", "data": {"manufacturer": "Dell Inc.", "model": "PowerEdge R630", "sn": format!("SN-{hostname}"), "uuid": null}},
            "memory": {"status": "ok", "data": {"total_mb": 32768, "slots_total": 4, "modules": [
                {"slot": "A1", "capacity_mb": 16384, "type": "DDR4", "speed_mts": 2133, "manufacturer": "Samsung", "sn": "M1", "part_number": "P1"},
                {"slot": "A2", "capacity_mb": 16384, "type": "DDR4", "speed_mts": 2133, "manufacturer": "Samsung", "sn": "M2", "part_number": "P1"}]}},
            "disk": {"status": "ok", "data": {"disks": [
                {"slot": "32:0", "capacity_bytes": 299_999_999_000u64, "model": "ST300MM0006", "sn": "D0", "pd_type": "SAS", "media": "hdd", "vendor": "SEAGATE", "firmware": "LS08"},
                {"slot": "32:1", "capacity_bytes": 299_999_999_000u64, "model": "ST300MM0006", "sn": "D1", "pd_type": "SAS", "media": "hdd", "vendor": "SEAGATE", "firmware": "LS08"}]}},
            "nic": {"status": "ok", "data": {"interfaces": [
                {"name": "eth0", "hwaddr": "00:1c:42:a5:57:7a", "up": true, "carrier": true, "mtu": 1500, "master": null, "ipv4": ["10.0.0.5/24"], "ipv6": ["fe80::21c:42ff:fea5:577a/64"]}]}}
        }
    })
}

/// Sets `collected_at` to now + `seconds` (reports must move forward in time to apply).
pub fn at(mut report: Value, seconds: i64) -> Value {
    report["collected_at"] = json!((chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339());
    report["report_id"] = json!(uuid::Uuid::new_v4().to_string());
    report
}

/// Generates `mod name { sqlite, postgres }` tests from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::common::Backend::Postgres).await
                }
            }
        )+
    };
}

/// Moves every recorded time of assets and changes `seconds` into the past, as if the history had
/// been written that long ago. An as-of reads at the latest 120 s before now (changes are stamped
/// before they commit), so a test that reads "today" needs data older than that.
#[allow(dead_code)]
pub async fn age_history(db: &Db, seconds: i64) {
    let us = seconds * 1_000_000;
    for statement in [
        "UPDATE changes SET recorded_at = recorded_at - $1, collected_at = collected_at - $1",
        "UPDATE assets SET created_at = created_at - $1, updated_at = updated_at - $1, \
         last_seen_at = last_seen_at - $1, last_collected_at = last_collected_at - $1",
    ] {
        sqlx::query(statement).bind(us).execute(db.writer()).await.expect("age history");
    }
    rechain(db).await;
}

/// After a test moved recorded times (which breaks the records' hashes, as any edit behind cmdb's
/// back does): the chains computed again from the records as they now are, as the migration step
/// computes them for history written before chains.
#[allow(dead_code)]
pub async fn rechain(db: &Db) {
    sqlx::query("UPDATE changes SET hash = NULL, prev_hash = NULL").execute(db.writer()).await.expect("unchain");
    db.complete_chains().await.expect("rechain");
}

/// Sets every recorded time of asset `id` (its changes and its row) to `at`.
#[allow(dead_code)]
pub async fn record_asset_at(db: &Db, id: i64, at: chrono::DateTime<chrono::Utc>) {
    let us = at.timestamp_micros();
    sqlx::query("UPDATE changes SET recorded_at = $2, collected_at = $2 WHERE asset_id = $1")
        .bind(id)
        .bind(us)
        .execute(db.writer())
        .await
        .expect("backdate changes");
    sqlx::query(
        "UPDATE assets SET created_at = $2, updated_at = $2, last_seen_at = $2, last_collected_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(us)
    .execute(db.writer())
    .await
    .expect("backdate asset");
    rechain(db).await;
}

/// Replaying every asset's history rebuilds its stored state (the server's own `verify`).
pub async fn assert_every_history_rebuilds_its_state(db: &Db) {
    let found = cmdb_server::service::verify::verify(db, None, &mut |_| {}).await.expect("verify");
    assert!(found.mismatches.is_empty(), "history and state disagree: {:?}", found.mismatches);
}

/// Waits until the server at `base` answers `/readyz` with 200 (a spawned server binary that is
/// starting), at most 30 s.
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(response) = http.get(format!("{base}/readyz")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{base} did not become ready");
}
