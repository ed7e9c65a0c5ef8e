//! Production topology: three cmdb-server processes on one PostgreSQL database behind a real
//! HAProxy (Debian's `haproxy`, installed when missing) that checks `/readyz`. 32 agents report
//! through HAProxy for 30 s while one instance is killed with SIGKILL (and started again) and
//! another is stopped gracefully and started again. Then: every acknowledged report is stored
//! exactly once, every asset's history replays to its state and its chain is intact, the change
//! feed read through HAProxy skipped nothing, a logged-in browser session moved between instances
//! without being asked to log in again, and an agent key revoked through one instance was refused
//! by every instance within 1 s. The HAProxy configuration is the one docs/deployment.md shows.

mod common;
mod web_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cmdb_server::auth::{self, KeyScope, Role};
use cmdb_server::web::users;
use common::{Backend, TestDb, report};
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::Mutex;
use web_support::{Client, PASSWORD};

const AGENTS: usize = 32;
const LOAD: Duration = Duration::from_secs(30);
const INSTANCES: [&str; 3] = ["a", "b", "c"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// HAProxy from Debian's package, installed when missing (CI runs as root; `.ci/run` installs it
/// up front). apt-get waits for the package lock rather than failing on it.
fn haproxy() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/haproxy");
    if !path.exists() {
        let install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                       -o DPkg::Lock::Timeout=300 --no-install-recommends haproxy";
        let status = Command::new("sh").args(["-c", install]).status().expect("run apt-get");
        assert!(status.success() && path.exists(), "haproxy could not be installed");
    }
    path
}

/// The configuration docs/deployment.md gives, with loopback ports. Health checks every 200 ms:
/// two failures take an instance out, two passes bring it back. Only a request that never reached
/// an instance (`conn-failure`) is retried by HAProxy on another: a report may have been stored by
/// an instance that then died before answering, and the agent's own retry (same report id) is
/// what makes that safe.
fn haproxy_config(front: u16, servers: &[(&str, u16)]) -> String {
    let mut cfg = format!(
        "global\n    maxconn 2048\n\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n    \
         retries 3\n    option redispatch\n    retry-on conn-failure\n    option forwardfor\n\n\
         frontend cmdb\n    bind 127.0.0.1:{front}\n    default_backend cmdb_servers\n    \
         http-response set-header X-Cmdb-Instance %s\n\n\
         backend cmdb_servers\n    balance roundrobin\n    option httpchk GET /readyz\n    \
         http-check expect status 200\n    default-server inter 200ms fall 2 rise 2\n"
    );
    for (name, port) in servers {
        cfg.push_str(&format!("    server {name} 127.0.0.1:{port} check\n"));
    }
    cfg
}

struct Instance {
    name: &'static str,
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Instance {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
            .args(["--config"])
            .arg(&self.config)
            .env("CMDB_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cmdb-server");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the process to drain and exit.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
            assert!(status.success());
            let exit = child.wait().expect("wait");
            assert!(exit.success(), "instance {} exited with {exit} after SIGTERM", self.name);
        }
        started.elapsed()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signed_header(key_id: &str, secret: &str, method: &str, target: &str, body: &[u8]) -> String {
    cmdb_model::signing::authorization(
        key_id,
        secret,
        method,
        target,
        chrono::Utc::now().timestamp(),
        &auth::random_hex(16),
        body,
    )
}

/// A report of agent `host` whose memory size is its sequence number, so each one changes
/// something and writes change records.
fn numbered(host: usize, seq: i64) -> Value {
    let mut r = report(&format!("lb-{host:02}"));
    r["collected_at"] = json!((chrono::Utc::now() + chrono::Duration::milliseconds(seq)).to_rfc3339());
    r["sections"]["memory"]["data"]["total_mb"] = json!(1024 + seq);
    r["sections"]["cpu"]["data"]["cpu_count"] = json!(seq % 64 + 1);
    r
}

#[derive(Default)]
struct Tally {
    acknowledged: Vec<String>,
    failures: BTreeMap<String, usize>,
}

/// An agent as the real one behaves: it sends a report until it is acknowledged (the same report
/// id every time, a fresh signature each time), then the next one.
async fn agent(
    host: usize,
    http: reqwest::Client,
    front: String,
    key: (String, String),
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let r = numbered(host, seq);
        let body = serde_json::to_vec(&r).expect("json");
        let id = r["report_id"].as_str().unwrap_or_default().to_owned();
        loop {
            let header = signed_header(&key.0, &key.1, "POST", "/api/v1/reports", &body);
            let sent = http
                .post(format!("{front}/api/v1/reports"))
                .header("content-type", "application/json")
                .header("authorization", header)
                .body(body.clone())
                .send()
                .await;
            let outcome = match sent {
                Ok(response) if response.status() == 200 => {
                    tally.lock().await.acknowledged.push(id.clone());
                    break;
                }
                Ok(response) => format!("HTTP {}", response.status().as_u16()),
                Err(e) if e.is_timeout() => "timeout".to_owned(),
                Err(_) => "connection".to_owned(),
            };
            *tally.lock().await.failures.entry(outcome).or_default() += 1;
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Follows the change feed through HAProxy from the beginning until `stop`, then until it has
/// caught up; returns every record id in the order read.
async fn follow_feed(http: reqwest::Client, front: String, token: String, stop: Arc<AtomicBool>) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut quiet_after_stop = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{front}/api/v1/changes?limit=1000&after={c}"),
            None => format!("{front}/api/v1/changes?limit=1000"),
        };
        let page: Option<Value> = match http.get(url).bearer_auth(&token).send().await {
            Ok(response) if response.status() == 200 => response.json().await.ok(),
            _ => None,
        };
        let Some(page) = page else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let items = page["items"].as_array().cloned().unwrap_or_default();
        ids.extend(items.iter().filter_map(|c| c["id"].as_i64()));
        if let Some(next) = page["next"].as_str() {
            cursor = Some(next.to_owned());
        }
        if items.is_empty() {
            if stop.load(Ordering::Relaxed) {
                // Caught up after the load ended: a few empty pages in a row, so a transaction
                // that committed late (the feed waits for it) is read too.
                quiet_after_stop += 1;
                if quiet_after_stop >= 5 {
                    return ids;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            quiet_after_stop = 0;
        }
    }
}

/// A browser logged in through HAProxy keeps asking for pages; each answer names the instance
/// that served it. Returns (instance, status) per page until `stop`, and the page loads whose
/// connection was cut before the answer was whole: the instance serving it was killed (HAProxy
/// retries only a request that never reached an instance), as a person's browser would show an
/// error and they would reload.
async fn browse(mut browser: Client, stop: Arc<AtomicBool>) -> (Vec<(String, u16)>, Vec<String>) {
    let (mut seen, mut cut) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::Relaxed) {
        match browser.try_get("/assets").await {
            Ok(page) => {
                let instance =
                    page.headers.get("x-cmdb-instance").and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_owned();
                seen.push((instance, page.status));
            }
            Err(e) => cut.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (seen, cut)
}

/// How long after `revoked` each instance first refused `key` (polled directly, not through
/// HAProxy, so every instance is asked).
async fn refused_within(http: &reqwest::Client, instances: &[String], key: &(String, String)) -> Vec<Duration> {
    let started = Instant::now();
    let mut took = Vec::new();
    for base in instances {
        loop {
            let header = signed_header(&key.0, &key.1, "GET", "/api/v1/collect-targets", b"");
            let status = http
                .get(format!("{base}/api/v1/collect-targets"))
                .header("authorization", header)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            if status == 401 {
                took.push(started.elapsed());
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{base} still accepts the revoked key");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    took
}

/// An instance's configuration. Keys are cached for 30 s, so a revoked key refused everywhere
/// within 1 s was refused because the instances heard of the revocation, not because their cache
/// expired.
fn write_instance_config(dir: &Path, name: &str, port: u16, url: &str, key_file: &Path) -> PathBuf {
    let data = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).expect("data dir");
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{url}\"\ndata_dir = \"{}\"\n\
         shutdown_drain_secs = 1\nkey_cache_secs = 30\n\n[web]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[secrets]\nkey_file = \"{}\"\n",
        data.display(),
        key_file.display()
    );
    let path = dir.join(format!("server-{name}.toml"));
    std::fs::write(&path, text).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_behind_haproxy_lose_nothing() {
    let haproxy = haproxy();
    let db = TestDb::new(Backend::Postgres).await;
    let dir = db.dir.path().to_owned();
    let key_file = dir.join("shared").join("secret.key");
    std::fs::create_dir_all(key_file.parent().expect("parent")).expect("shared dir");

    // The schema, the shared secrets key, an agent key for the fleet, one to revoke, a viewer
    // token for the feed reader and an admin for the browser.
    let database = db.open().await;
    let mut setup = common::test_config(&db);
    setup.secrets.key_file = Some(key_file.clone());
    let secret_key = cmdb_server::admin::open_secrets(&database, &setup).await.expect("secrets key");
    let fleet = auth::create_agent_key(database.writer(), &secret_key, KeyScope::Collector, "fleet", None)
        .await
        .expect("fleet key");
    let doomed = auth::create_agent_key(database.writer(), &secret_key, KeyScope::Collector, "doomed", None)
        .await
        .expect("doomed key");
    let viewer = auth::create_token(database.writer(), "feed", Role::Viewer).await.expect("token");
    users::create(&database, "admin", Role::Admin, PASSWORD, false).await.expect("admin");

    let mut instances: Vec<Instance> = INSTANCES
        .iter()
        .map(|name| {
            let port = free_port();
            let config = write_instance_config(&dir, name, port, &db.url, &key_file);
            Instance { name, port, config, child: None }
        })
        .collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
    for instance in &mut instances {
        instance.start();
    }
    for instance in &instances {
        common::wait_ready(&http, &instance.base()).await;
    }

    let front_port = free_port();
    let front = format!("http://127.0.0.1:{front_port}");
    let servers: Vec<(&str, u16)> = instances.iter().map(|i| (i.name, i.port)).collect();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(front_port, &servers)).expect("haproxy.cfg");
    let check = Command::new(&haproxy).arg("-c").arg("-f").arg(&cfg).output().expect("haproxy -c");
    assert!(check.status.success(), "haproxy rejects the configuration: {}", String::from_utf8_lossy(&check.stderr));
    let _proxy = Proxy(
        Command::new(&haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy"),
    );
    common::wait_ready(&http, &front).await;
    // Every instance is up in HAProxy's eyes (rise 2 at 200 ms) before the load starts.
    tokio::time::sleep(Duration::from_millis(600)).await;

    // A browser logs in through HAProxy: the login form and its POST land on different instances.
    let mut browser = Client::new(&front);
    let login = browser.login("admin", PASSWORD).await;
    assert_eq!(login.status, 303, "login through HAProxy: {}", login.body);

    let stop = Arc::new(AtomicBool::new(false));
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let agents: Vec<_> = (0..AGENTS)
        .map(|host| tokio::spawn(agent(host, http.clone(), front.clone(), fleet.clone(), stop.clone(), tally.clone())))
        .collect();
    let feed = tokio::spawn(follow_feed(http.clone(), front.clone(), viewer.clone(), stop.clone()));
    let browsing = tokio::spawn(browse(browser, stop.clone()));
    let load_started = Instant::now();

    // Chaos while the agents report.
    tokio::time::sleep(Duration::from_secs(6)).await;
    instances[0].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    instances[0].start();
    common::wait_ready(&http, &instances[0].base()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drained_in = instances[1].stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    instances[1].start();
    common::wait_ready(&http, &instances[1].base()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Revocation, still under load: the doomed key works on every instance (so each has it
    // cached), then an admin revokes it through HAProxy (whichever instance that is).
    let bases: Vec<String> = instances.iter().map(Instance::base).collect();
    for base in &bases {
        let header = signed_header(&doomed.0, &doomed.1, "GET", "/api/v1/collect-targets", b"");
        let response = http.get(format!("{base}/api/v1/collect-targets")).header("authorization", header).send().await;
        assert_eq!(response.map(|r| r.status().as_u16()).unwrap_or(0), 200, "{base} accepts the doomed key");
    }
    let mut admin = Client::new(&front);
    assert_eq!(admin.login("admin", PASSWORD).await.status, 303);
    let csrf = admin.csrf().await;
    let revoked = admin.post_form("/admin/keys/revoke", &[("csrf", &csrf), ("key_id", &doomed.0)]).await;
    assert_eq!(revoked.status, 303, "revoke through HAProxy: {}", revoked.body);
    let revoked_by =
        revoked.headers.get("x-cmdb-instance").and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_owned();
    let refusal = refused_within(&http, &bases, &doomed).await;

    let remaining = LOAD.saturating_sub(load_started.elapsed());
    tokio::time::sleep(remaining).await;
    stop.store(true, Ordering::Relaxed);
    for agent in agents {
        agent.await.expect("agent");
    }
    let read = feed.await.expect("feed reader");
    let (pages, cut_pages) = browsing.await.expect("browser");
    let tally = std::mem::take(&mut *tally.lock().await);

    // Every acknowledged report is stored exactly once.
    let mut stored: HashMap<String, i64> = HashMap::new();
    for row in sqlx::query("SELECT report_id FROM reports").fetch_all(database.reader()).await.expect("reports") {
        *stored.entry(row.try_get::<String, _>(0).expect("id")).or_default() += 1;
    }
    assert!(tally.acknowledged.len() > AGENTS * 10, "the load ran: {} acknowledged", tally.acknowledged.len());
    for id in &tally.acknowledged {
        assert_eq!(stored.get(id).copied().unwrap_or(0), 1, "acknowledged report {id} stored exactly once");
    }
    let unique: BTreeSet<&String> = tally.acknowledged.iter().collect();
    assert_eq!(unique.len(), tally.acknowledged.len(), "no report acknowledged twice as new work");
    assert!(stored.values().all(|n| *n == 1), "no report id stored twice");

    // Every asset's history replays to its state, and every chain is intact.
    common::assert_every_history_rebuilds_its_state(&database).await;
    let assets: i64 = sqlx::query("SELECT COUNT(*) FROM assets")
        .fetch_one(database.reader())
        .await
        .expect("assets")
        .try_get(0)
        .expect("n");
    assert_eq!(assets, AGENTS as i64, "one asset per agent, no duplicates");

    // The feed read through HAProxy skipped nothing and repeated nothing.
    let all: Vec<i64> = sqlx::query("SELECT id FROM changes ORDER BY id")
        .fetch_all(database.reader())
        .await
        .expect("changes")
        .iter()
        .map(|row| row.try_get(0).expect("id"))
        .collect();
    let read_set: BTreeSet<i64> = read.iter().copied().collect();
    assert_eq!(read_set.len(), read.len(), "the feed handed out no record twice");
    let missed: Vec<&i64> = all.iter().filter(|id| !read_set.contains(id)).take(10).collect();
    assert!(missed.is_empty(), "the feed skipped {} of {} records, e.g. {missed:?}", all.len() - read.len(), all.len());
    assert_eq!(read.len(), all.len());

    // The session moved between instances and was never asked to log in again.
    let served_by: BTreeSet<&str> = pages.iter().map(|(i, _)| i.as_str()).collect();
    let refused: Vec<&(String, u16)> = pages.iter().filter(|(_, s)| *s != 200).collect();
    assert!(refused.is_empty(), "the session was refused or redirected: {refused:?}");
    assert!(served_by.len() >= 2 && !served_by.contains("(none)"), "pages were served by {served_by:?}");
    // The browser has one page in flight at a time, so the one SIGKILL can cut at most one; the
    // SIGTERM drains and cuts none.
    assert!(cut_pages.len() <= 1, "page loads cut: {cut_pages:?}");

    // The revoked key was refused by all instances within 1 s.
    let slowest = refusal.iter().max().copied().unwrap_or_default();
    assert!(slowest < Duration::from_secs(1), "a revoked key was still accepted after {slowest:?}: {refusal:?}");

    println!(
        "load balanced: {} reports acknowledged by {AGENTS} agents in {:?}; failed attempts {:?}; {} change records, \
         all read through the feed; {} pages served by {:?} ({} cut by the kill); graceful stop took {drained_in:?}; key revoked through \
         instance {revoked_by} refused by every instance after {:?}",
        tally.acknowledged.len(),
        LOAD,
        tally.failures,
        all.len(),
        pages.len(),
        served_by,
        cut_pages.len(),
        refusal
    );
    drop(instances);
    database.close().await;
}

/// SIGTERM first drains: for `shutdown_drain_secs` the instance still serves requests but
/// `/readyz` answers 503, so a balancer moves new work away before the listener closes; then the
/// process exits by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_before_closing() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = db.dir.path().to_owned();
    let port = free_port();
    let config = write_instance_config(&dir, "solo", port, &db.url, &dir.join("secret.key"));
    let text =
        std::fs::read_to_string(&config).expect("config").replace("shutdown_drain_secs = 1", "shutdown_drain_secs = 3");
    std::fs::write(&config, text).expect("config");
    let mut instance = Instance { name: "solo", port, config, child: None };
    instance.start();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    common::wait_ready(&http, &instance.base()).await;
    let child = instance.child.take().expect("running");
    let pid = child.id().to_string();
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    // Draining: not ready, still serving.
    let mut saw_draining = false;
    while signalled.elapsed() < Duration::from_secs(2) {
        let ready = http.get(format!("{}/readyz", instance.base())).send().await.expect("served while draining");
        let alive = http.get(format!("{}/healthz", instance.base())).send().await.expect("served while draining");
        assert_eq!(alive.status(), 200);
        if ready.status() == 503 {
            saw_draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_draining, "/readyz kept answering 200 after SIGTERM");
    let exit = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    })
    .await
    .expect("join")
    .expect("wait");
    let took = signalled.elapsed();
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    assert!(took >= Duration::from_secs(3), "the drain lasted {took:?}, not shutdown_drain_secs");
    assert!(
        http.get(format!("{}/healthz", instance.base())).send().await.is_err(),
        "the listener is closed after the drain"
    );
}
