//! The real agent binary against a real cmdb-server (in-process, real HTTP) on SQLite and
//! PostgreSQL: replayed hosts arrive with their facts; a server that is down during a run, then
//! up, receives every report exactly once; a host key cannot report for another machine.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use cmdb_server::AppState;
use cmdb_server::auth::{self, KeyScope};
use cmdb_server::config::ServerConfig;
use cmdb_server::db::{Db, PoolSettings};
use cmdb_server::service::assets;
use sqlx::{Connection, Row};

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hosts").canonicalize().expect("fixtures")
}

/// A database for one test (a SQLite file, or a fresh PostgreSQL database dropped afterwards).
struct Database {
    url: String,
    pg_name: Option<String>,
    dir: tempfile::TempDir,
}

impl Database {
    async fn new(backend: Backend) -> Database {
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => {
                Database { url: format!("sqlite://{}", dir.path().join("cmdb.db").display()), pg_name: None, dir }
            }
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let base =
                    std::env::var("CMDB_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
                let name = format!("cmdb_e2e_{}", auth::random_hex(6));
                let mut admin = sqlx::AnyConnection::connect(&format!("{base}/postgres")).await.expect("PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create");
                Database { url: format!("{base}/{name}"), pg_name: Some(name), dir }
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            let _ = std::process::Command::new("psql")
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .output();
        }
    }
}

struct Server {
    state: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(db: &Database, port: u16) -> Server {
    let database = Db::open(&db.url, &PoolSettings::default()).await.expect("open");
    let config =
        ServerConfig { database_url: db.url.clone(), data_dir: db.dir.path().join("data"), ..ServerConfig::default() };
    let secret_key = cmdb_server::admin::open_secrets(&database, &config).await.expect("secrets key");
    let state = AppState::new(database, config, secret_key);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let app = cmdb_server::app(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { state, task }
}

/// Writes a key file like the one the server's first start writes.
async fn key_file(db: &Database, scope: KeyScope, path: &Path) {
    let database = Db::open(&db.url, &PoolSettings::default()).await.expect("open");
    let config =
        ServerConfig { database_url: db.url.clone(), data_dir: db.dir.path().join("data"), ..ServerConfig::default() };
    let secret_key = cmdb_server::admin::open_secrets(&database, &config).await.expect("secrets key");
    let (key_id, secret) =
        auth::create_agent_key(database.writer(), &secret_key, scope, "e2e", None).await.expect("key");
    std::fs::write(path, format!("key_id = \"{key_id}\"\nsecret = \"{secret}\"\n")).expect("write key");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

async fn agent(args: &[&str], url: &str, key: &Path, state: &Path) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cmdb-agent"));
    command
        .args(args)
        .args(["--server-url", url, "--key-file"])
        .arg(key)
        .arg("--state-dir")
        .arg(state)
        .env("CMDB_CONFIG", "/nonexistent/cmdb-agent-e2e.toml")
        .env_remove("CMDB_CONFIG")
        .env("CMDB_DELIVERY__RETRIES", "0")
        .env("CMDB_DELIVERY__BACKOFF", "10ms")
        .env("CMDB_LOG", "warn");
    command.output().await.expect("run cmdb-agent")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn count(state: &AppState, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(state.db.reader()).await.expect("count").try_get(0).expect("int")
}

async fn replayed_hosts_arrive_with_their_facts(backend: Backend) {
    let db = Database::new(backend).await;
    let port = free_port();
    let server = serve(&db, port).await;
    let url = format!("http://127.0.0.1:{port}");
    let key = db.dir.path().join("collector.toml");
    key_file(&db, KeyScope::Collector, &key).await;
    let mut hosts = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let dir = entry.expect("entry").path();
        let out =
            agent(&["run", "--replay", dir.to_str().expect("utf8")], &url, &key, &db.dir.path().join("state")).await;
        assert!(out.status.success(), "{}: {}", dir.display(), text(&out.stderr));
        hosts += 1;
    }
    assert_eq!(count(&server.state, "SELECT COUNT(*) FROM assets").await, hosts, "one asset per host");
    // Facts from fixtures/README.md, now read back from the server.
    for (serial, disks, dimms) in [("2WF88P2", 4, 16), ("PC0C6Y1R", 12, 8), ("CZJ02901TG", 2, 2), ("1634NM1100", 2, 8)]
    {
        let page =
            assets::list(&server.state.db, &assets::ListQuery { q: Some(serial.to_owned()), ..Default::default() })
                .await
                .expect("search");
        assert_eq!(page.total, 1, "search by serial {serial}");
        let detail = assets::detail(&server.state.db, page.items[0].id).await.expect("detail");
        assert_eq!(detail.sections["disk"]["disks"].as_array().map(Vec::len), Some(disks), "{serial} disks");
        assert_eq!(detail.sections["memory"]["modules"].as_array().map(Vec::len), Some(dimms), "{serial} DIMMs");
        assert_eq!(detail.summary.status, "online");
    }
}

async fn server_down_then_up_gets_every_report_once(backend: Backend) {
    let db = Database::new(backend).await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let key = db.dir.path().join("collector.toml");
    key_file(&db, KeyScope::Collector, &key).await;
    let state = db.dir.path().join("state");
    let dirs: Vec<PathBuf> = ["dell-r630", "hp-dl180-g6", "lenovo-rd650"].iter().map(|d| fixtures().join(d)).collect();
    // Nothing listens: every report goes to the spool.
    for dir in &dirs {
        let out = agent(&["run", "--replay", dir.to_str().expect("utf8")], &url, &key, &state).await;
        assert!(!out.status.success(), "delivery cannot succeed while the server is down");
        assert_eq!(out.status.code(), Some(75), "exit 75: collected and spooled: {}", text(&out.stderr));
    }
    let listed = agent(&["spool", "list"], &url, &key, &state).await;
    assert_eq!(text(&listed.stdout).lines().filter(|l| l.contains("replay:")).count(), 3, "{}", text(&listed.stdout));
    // The server comes up: a flush delivers them all, a second flush has nothing left.
    let server = serve(&db, port).await;
    let out = agent(&["spool", "flush"], &url, &key, &state).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count(&server.state, "SELECT COUNT(*) FROM reports").await, 3);
    let out = agent(&["spool", "flush"], &url, &key, &state).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A new run delivers only its own report (the spool is empty).
    let out = agent(&["run", "--replay", dirs[0].to_str().expect("utf8")], &url, &key, &state).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count(&server.state, "SELECT COUNT(*) FROM reports").await, 4, "every report exactly once");
    assert_eq!(count(&server.state, "SELECT COUNT(*) FROM assets").await, 3);
    let applied: i64 = count(&server.state, "SELECT COUNT(DISTINCT report_id) FROM changes").await;
    assert_eq!(applied, 3, "the three first reports wrote history; the repeat of dell-r630 changed nothing");
}

async fn host_key_cannot_report_another_machine(backend: Backend) {
    let db = Database::new(backend).await;
    let port = free_port();
    let server = serve(&db, port).await;
    let url = format!("http://127.0.0.1:{port}");
    let key = db.dir.path().join("host.toml");
    key_file(&db, KeyScope::Host, &key).await;
    let state = db.dir.path().join("state");
    let first = fixtures().join("dell-r630");
    let out = agent(&["run", "--replay", first.to_str().expect("utf8")], &url, &key, &state).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let other = fixtures().join("oracle-x5-2-oda");
    let out = agent(&["run", "--replay", other.to_str().expect("utf8")], &url, &key, &state).await;
    assert_eq!(out.status.code(), Some(1), "refused: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("403") || text(&out.stderr).to_lowercase().contains("forbidden"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(count(&server.state, "SELECT COUNT(*) FROM assets").await, 1, "nothing written for the other machine");
    let rejected = std::fs::read_dir(state.join("rejected")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(rejected, 1, "the refused report is kept for inspection");
}

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::Backend::Postgres).await
                }
            }
        )+
    };
}

on_both_backends!(
    replayed_hosts_arrive_with_their_facts,
    server_down_then_up_gets_every_report_once,
    host_key_cannot_report_another_machine
);
