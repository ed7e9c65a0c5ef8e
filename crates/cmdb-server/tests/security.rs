//! The attacks of the security hardening issue, each reproduced against a real server (SQLite and,
//! where the database decides the outcome, PostgreSQL). SECURITY.md lists every defence and names
//! its test here. Tests elsewhere that belong to the same threat model:
//! - `cmdb-model` `report::tests::reports_over_a_limit_are_refused_naming_it` (report limits) and
//!   `business::tests::patch_validates_and_normalizes` (minion ids and addresses);
//! - `cmdb-server` `secrets::tests` (sealing), `file_modes::tests` (modes), `web::throttle::tests`;
//! - the agent-side tests in `crates/cmdb-collect/tests/security.rs` and `crates/cmdb-agent/tests/security.rs`.

mod common;
mod web_support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cmdb_server::auth::{self, KeyScope};
use cmdb_server::db::now_us;
use common::{Backend, TestDb, TestServer, at, report, test_config};
use serde_json::{Value, json};
use sqlx::Row;
use web_support::{PASSWORD, WebServer, hidden_value};

async fn scalar(db: &cmdb_server::db::Db, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.reader())
        .await
        .expect("query")
        .try_get(0)
        .expect("integer")
}

// ---------------------------------------------------------------------------------------------
// 2. Open redirect after login.

/// Known ways to make a "local path" leave the site or break the header, from open-redirect
/// write-ups and browser URL-parsing quirks.
const REDIRECT_BYPASSES: &[&str] = &[
    "//evil.example",
    "//evil.example/",
    "///evil.example",
    "////evil.example",
    "/\\evil.example",
    "/\\/evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "/\r\nLocation: https://evil.example",
    "/\r\nSet-Cookie: cmdb_session=planted",
    "/ /evil.example",
    "/\u{0b}/evil.example",
    "/\u{0c}/evil.example",
    "/\u{a0}/evil.example",
    "/\u{3000}/evil.example",
    "/\u{200b}/evil.example",
    "/\u{feff}/evil.example",
    "/\u{2028}/evil.example",
    "/\u{202e}/evil.example",
    "/\u{1b}/evil.example",
    "/\u{7f}/evil.example",
    "/\u{85}/evil.example",
    "https://evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "@evil.example",
    " /assets",
    "/assets ",
    "",
];

async fn redirect_bypasses_stay_on_the_site(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let mut browser = server.login("viewer").await;
    assert!(REDIRECT_BYPASSES.len() >= 20);
    for next in REDIRECT_BYPASSES {
        // Logged in, the login form sends the browser on to `next` at once.
        let query = serde_urlencoded::to_string([("next", next)]).expect("query");
        let answer = browser.get(&format!("/login?{query}")).await;
        assert_eq!(answer.status, 303, "{next:?}: {}", answer.body);
        assert_eq!(answer.location(), "/", "{next:?} must become /");
    }
    // A few through the login form itself (each login costs a hash, so not all).
    for next in ["/\t/evil.example", "/\r\nLocation: https://evil.example", "//evil.example", "/\\evil.example"] {
        let mut fresh = server.client();
        let form = fresh.get("/login").await;
        let csrf = hidden_value(&form.body, "csrf").expect("csrf");
        let answer = fresh
            .post_form("/login", &[("csrf", &csrf), ("name", "editor"), ("password", PASSWORD), ("next", next)])
            .await;
        assert_eq!((answer.status, answer.location()), (303, "/"), "{next:?}");
    }
    // Paths of this site still work, non-ASCII ones percent-encoded so the header stays valid.
    for (next, expected) in [("/assets?q=web", "/assets?q=web"), ("/assets?q=北京", "/assets?q=%E5%8C%97%E4%BA%AC")] {
        let query = serde_urlencoded::to_string([("next", next)]).expect("query");
        assert_eq!(browser.get(&format!("/login?{query}")).await.location(), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. Login throttling, bounded hashing, and the audit log under unauthenticated traffic.

/// A login form's CSRF cookie and token, reusable for many posts (as an attacker would).
async fn login_form(server: &WebServer) -> (String, String) {
    let mut client = server.client();
    let form = client.get("/login").await;
    let csrf = hidden_value(&form.body, "csrf").expect("csrf");
    (format!("cmdb_login_csrf={}", client.cookies["cmdb_login_csrf"]), csrf)
}

async fn post_login(
    http: &reqwest::Client,
    base: &str,
    (cookie, csrf): &(String, String),
    name: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let body =
        serde_urlencoded::to_string([("csrf", csrf.as_str()), ("name", name), ("password", password)]).expect("form");
    let mut request = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(body);
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    request.send().await.expect("login request")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// A server whose loopback client is a trusted proxy, so X-Forwarded-For sets the client
/// address; with a login form and a client that follows no redirects.
async fn behind_proxy(db: &TestDb) -> (WebServer, (String, String), reqwest::Client) {
    let mut config = test_config(db);
    config.web.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
    let server = WebServer::start_with(db, config).await;
    let form = login_form(&server).await;
    (server, form, no_redirects())
}

async fn parallel_wrong_passwords_get_five_checks(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let form = login_form(&server).await;
    let http = no_redirects();
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (http, base, form) = (http.clone(), server.base.clone(), form.clone());
        tasks.push(tokio::spawn(async move {
            let response = post_login(&http, &base, &form, "editor", "wrong password!", None).await;
            let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (response.status().as_u16(), retry_after)
        }));
    }
    let mut checked = 0;
    let mut throttled = 0;
    for task in tasks {
        match task.await.expect("task") {
            (401, _) => checked += 1,
            (429, retry_after) => {
                throttled += 1;
                let secs: u64 = retry_after.expect("429 carries Retry-After").parse().expect("seconds");
                assert!(secs >= 1);
            }
            (status, _) => panic!("unexpected status {status}"),
        }
    }
    // 401 means the password was checked (a hash ran); 429 means nothing ran.
    assert_eq!((checked, throttled), (5, 55), "five free failures per (user, address), counted atomically");

    // The audit log holds one row per (action, actor, address) and window, with the count.
    let rows =
        scalar(&server.db, "SELECT COUNT(*) FROM audit_log WHERE action IN ('login_failed', 'login_throttled')").await;
    let repeats =
        scalar(&server.db, "SELECT CAST(COALESCE(SUM(repeats), 0) AS BIGINT) FROM audit_log WHERE action IN ('login_failed', 'login_throttled')")
            .await;
    assert!(rows <= 4, "{rows} rows for 60 attempts");
    assert_eq!(repeats, 60, "every attempt is counted");
}

async fn unauthenticated_traffic_cannot_grow_the_audit_log(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (server, form, http) = behind_proxy(&db).await;
    let before = scalar(&server.db, "SELECT COUNT(*) FROM audit_log").await;
    // 500 throttled-or-failed logins for one user from one address, then 120 from 120 addresses.
    for _ in 0..500 {
        post_login(&http, &server.base, &form, "admin", "guess guess guess", Some("203.0.113.7")).await;
    }
    let one_address = scalar(&server.db, "SELECT COUNT(*) FROM audit_log").await - before;
    assert!(one_address <= 2, "500 attempts from one address added {one_address} rows");
    let rows = scalar(
        &server.db,
        "SELECT CAST(COALESCE(SUM(repeats), 0) AS BIGINT) FROM audit_log WHERE client_ip = '203.0.113.7'",
    )
    .await;
    assert_eq!(rows, 500);
    for i in 0..120 {
        let address = format!("198.51.100.{}", i + 1);
        post_login(&http, &server.base, &form, "nobody", "guess guess guess", Some(&address)).await;
    }
    let total = scalar(&server.db, "SELECT COUNT(*) FROM audit_log").await - before;
    assert!(total <= 120 + 2 + 2, "{total} rows");
    // The folding row: past REPEAT_ROWS_PER_WINDOW rows, repeats go to one '*' row (checked on
    // the function, since filling 1,000 rows over HTTP would cost 1,000 hashes).
    let window_rows = cmdb_server::service::audit_log::REPEAT_ROWS_PER_WINDOW;
    for i in 0..window_rows + 50 {
        cmdb_server::service::audit_log::record_repeated(
            &server.db,
            "-",
            "login_failed",
            "x",
            Some(&format!("10.9.{}.{}", i / 250, i % 250)),
        )
        .await
        .expect("record");
    }
    let in_window = scalar(&server.db, "SELECT COUNT(*) FROM audit_log WHERE last_at IS NOT NULL").await;
    assert!(in_window <= window_rows + 2, "{in_window} rows in one window");
}

async fn the_per_user_cap_never_locks_out_known_addresses(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (server, form, http) = behind_proxy(&db).await;
    // The admin logs in from the office once.
    let office = post_login(&http, &server.base, &form, "admin", PASSWORD, Some("192.0.2.10")).await;
    assert_eq!(office.status(), 303);
    // Then 100 failures from 100 addresses (a spray: no address reaches its own limit).
    for i in 0..100 {
        let address = format!("203.0.113.{}", i + 1);
        let answer = post_login(&http, &server.base, &form, "admin", "guess guess guess", Some(&address)).await;
        assert_eq!(answer.status(), 401, "attempt {i}");
    }
    // The 101st from anywhere new is refused without a hash; the office still gets in.
    let outside = post_login(&http, &server.base, &form, "admin", PASSWORD, Some("203.0.113.200")).await;
    assert_eq!(outside.status(), 429, "the user's hourly cap");
    let office = post_login(&http, &server.base, &form, "admin", PASSWORD, Some("192.0.2.10")).await;
    assert_eq!(office.status(), 303, "an address the user logged in from is never locked out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_passwords_cost_a_hash_like_any_other() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (server, form, http) = behind_proxy(&db).await;
    let time = |password: String, address: String| {
        let (http, base, form) = (http.clone(), server.base.clone(), form.clone());
        async move {
            let started = std::time::Instant::now();
            let answer = post_login(&http, &base, &form, "editor", &password, Some(&address)).await;
            assert_eq!(answer.status(), 401);
            started.elapsed()
        }
    };
    // Best of three each (a loaded machine only makes either slower).
    let mut normal = Duration::MAX;
    let mut oversized = Duration::MAX;
    for i in 0..3 {
        normal = normal.min(time("wrong password!".to_owned(), format!("192.0.2.{}", i + 1)).await);
        oversized = oversized.min(time("x".repeat(10_000), format!("192.0.2.{}", i + 101)).await);
    }
    // Without the dummy hash an oversized password answered in well under a millisecond.
    assert!(oversized * 3 >= normal, "oversized {oversized:?} vs normal {normal:?}: the timing tells");
}

async fn password_changes_are_throttled(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let mut browser = server.login("viewer").await;
    let csrf = browser.csrf().await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let answer = browser
            .post_form(
                "/account",
                &[
                    ("csrf", &csrf),
                    ("current", "not my password"),
                    ("new", "new password 123"),
                    ("confirm", "new password 123"),
                ],
            )
            .await;
        statuses.push(answer.status);
    }
    assert_eq!(statuses[..5], [422; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
}

// ---------------------------------------------------------------------------------------------
// 1. Secrets at rest.

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_are_private_and_hold_no_agent_secret() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let (key_id, secret) = server.collector.clone();
    // Something written, so the WAL and shared-memory files exist.
    server.accept(&report("private-01")).await;
    let file = db.dir.path().join("cmdb.db");
    for path in [file.clone(), db.dir.path().join("cmdb.db-wal"), db.dir.path().join("cmdb.db-shm")] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    let key_file = server.state.config.secrets_key_file();
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(key_file.parent().expect("data dir")), 0o700);
    // A copy of the database reveals no secret: not in the row, not anywhere in the files.
    let stored: String = sqlx::query("SELECT secret FROM agent_keys WHERE key_id = $1")
        .bind(key_id.clone())
        .fetch_one(server.db().reader())
        .await
        .expect("row")
        .try_get(0)
        .expect("text");
    assert!(stored.starts_with("v1:") && !stored.contains(&secret));
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(server.db().writer()).await.expect("checkpoint");
    for path in [file, db.dir.path().join("cmdb.db-wal")] {
        let bytes = std::fs::read(&path).expect("read");
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds the secret", path.display());
    }
    // The signed request still verifies: the server opens the sealed secret.
    let (status, body) = server.report(&report("private-02")).await;
    assert_eq!(status, 200, "{body}");
}

async fn secrets_stored_in_the_clear_are_sealed_and_a_wrong_key_file_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = db.open().await;
    let config = test_config(&db);
    // A key as an older version stored it.
    sqlx::query("INSERT INTO agent_keys (key_id, secret, scope, name, created_at) VALUES ('ak_old', 'oldsecret', 'collector', 'old', 0)")
        .execute(database.writer())
        .await
        .expect("insert");
    let key = cmdb_server::admin::open_secrets(&database, &config).await.expect("seal at start");
    let stored: String = sqlx::query("SELECT secret FROM agent_keys WHERE key_id = 'ak_old'")
        .fetch_one(database.reader())
        .await
        .expect("row")
        .try_get(0)
        .expect("text");
    assert!(stored.starts_with("v1:"), "sealed: {stored}");
    let cache = auth::KeyCache::new(Duration::ZERO, key);
    assert_eq!(cache.get(database.reader(), "ak_old").await.expect("load").expect("key").secret, "oldsecret");
    // Another instance with another key file stops at start, naming the problem.
    let mut other = config.clone();
    other.secrets.key_file = Some(db.dir.path().join("other.key"));
    let missing = cmdb_server::admin::open_secrets(&database, &other).await.expect_err("no key file");
    assert!(missing.to_string().contains("other.key"), "{missing}");
    std::fs::write(db.dir.path().join("other.key"), format!("{}\n", "ab".repeat(32))).expect("write");
    let wrong = cmdb_server::admin::open_secrets(&database, &other).await.expect_err("wrong key");
    assert!(wrong.to_string().contains("same file on every instance"), "{wrong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wider_modes_are_reported_at_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    let data_dir = db.dir.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("dir");
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = db.dir.path().join("cmdb.db");
    std::fs::write(&file, b"").expect("create");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
        .args(["--database-url", &db.url, "--data-dir"])
        .arg(&data_dir)
        .arg("migrate")
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(log.contains("readable by other local users") && log.contains("cmdb.db"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_and_revoked_keys_are_refused() {
    let db = TestDb::new(Backend::Postgres).await;
    let one = TestServer::start(&db).await;
    let two = TestServer::start_with(&db, test_config(&db)).await;
    let (key_id, old_secret) = one.collector.clone();
    let body = serde_json::to_vec(&report("rotate-01")).expect("json");
    async fn post(server: &TestServer, key_id: &str, secret: String, body: Vec<u8>) -> u16 {
        server.signed_with(key_id, &secret, "POST", "/api/v1/reports", &body, "application/json").await.0
    }
    let send = |server, secret, body| post(server, &key_id, secret, body);
    assert_eq!(send(&two, old_secret.clone(), body.clone()).await, 200, "instance two knows the key");
    let new_secret = auth::rotate_agent_key(one.db().writer(), one.state.keys.secret_key(), &key_id)
        .await
        .expect("rotate")
        .expect("active key");
    one.state.keys.clear();
    assert_eq!(send(&one, old_secret.clone(), at(report("rotate-01"), 1).to_string().into_bytes()).await, 401);
    assert_eq!(send(&one, new_secret.clone(), at(report("rotate-01"), 2).to_string().into_bytes()).await, 200);
    // The other instance follows within key_cache_secs (1 s by default).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(&two, old_secret, at(report("rotate-01"), 3).to_string().into_bytes()).await, 401);
    // Revocation: refused at once here, within 1 s there.
    assert!(cmdb_server::admin::revoke_key(one.db(), &key_id).await.expect("revoke"));
    one.state.keys.clear();
    assert_eq!(send(&one, new_secret.clone(), at(report("rotate-01"), 4).to_string().into_bytes()).await, 401);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(&two, new_secret, at(report("rotate-01"), 5).to_string().into_bytes()).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_secrets_go_to_a_terminal_only() {
    let db = TestDb::new(Backend::Sqlite).await;
    let data_dir = db.dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    // `script` gives the server a pseudo-terminal as stdout, as a person starting it by hand has.
    let command = format!(
        "timeout 20 {} --listen 127.0.0.1:{port} --database-url {} --data-dir {}",
        env!("CARGO_BIN_EXE_cmdb-server"),
        db.url,
        data_dir.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("script(1) from util-linux");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.contains("listening on") {
                break;
            }
        }
        text
    });
    let text = reader.join().expect("reader");
    let _ = std::process::Command::new("pkill").args(["-f", &format!("127.0.0.1:{port}")]).status();
    let _ = child.wait();
    let password = std::fs::read_to_string(data_dir.join("admin-password")).expect("password file");
    assert!(text.contains(password.trim()), "a terminal is shown the password: {text}");
}

// ---------------------------------------------------------------------------------------------
// 5 and 6. Which asset a report may write.

fn with_uuid(mut doc: Value, uuid: &str) -> Value {
    doc["sections"]["board"]["data"]["uuid"] = json!(uuid);
    doc
}

async fn new_host_keys_never_take_over_an_asset_by_name(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let secret_key = server.state.keys.secret_key().clone();
    // web-01 is known by its board (collected over SSH).
    let known = server.accept(&with_uuid(report("web-01"), "4c4c4544-0001-0001-0001-000000000001")).await;
    let known_id = known["asset_id"].as_i64().expect("id");
    let hostile = |doc: Value, key: (String, String)| {
        let server = &server;
        async move {
            let body = serde_json::to_vec(&doc).expect("json");
            server.signed_with(&key.0, &key.1, "POST", "/api/v1/reports", &body, "application/json").await
        }
    };
    // A fresh host key on another machine claims the name, with its board section failed.
    let key =
        auth::create_agent_key(server.db().writer(), &secret_key, KeyScope::Host, "new", None).await.expect("key");
    let mut doc = report("web-01");
    doc["sections"]["board"] = json!({"status": "error", "error": "dmidecode: permission denied"});
    let (status, outcome) = hostile(doc, key.clone()).await;
    assert_eq!(status, 200, "{outcome}");
    let new_id = outcome["asset_id"].as_i64().expect("id");
    assert_ne!(new_id, known_id, "not bound by name to an asset with a board identity");
    assert_eq!(server.asset(new_id).await["possible_duplicate_of"], json!(known_id));
    assert_eq!(
        server.asset(known_id).await["sections"]["board"]["uuid"],
        json!("4c4c4544-0001-0001-0001-000000000001")
    );
    // Registered by hand (no board, no machine id): the first report of a host key binds to it.
    let (status, registered) =
        server.send_json(&server.admin.clone(), "POST", "/api/v1/assets", &json!({"hostname": "db-07"})).await;
    assert_eq!(status, 201, "{registered}");
    let registered_id = registered["id"].as_i64().expect("id");
    let key =
        auth::create_agent_key(server.db().writer(), &secret_key, KeyScope::Host, "db-07", None).await.expect("key");
    let (status, outcome) = hostile(report("db-07"), key).await;
    assert_eq!((status, outcome["asset_id"].as_i64()), (200, Some(registered_id)), "{outcome}");
    // An admin may bind explicitly to an asset with a board identity.
    let key = auth::create_agent_key(server.db().writer(), &secret_key, KeyScope::Host, "web-01", Some(known_id))
        .await
        .expect("key");
    let (status, outcome) =
        hostile(at(with_uuid(report("web-01"), "4c4c4544-0001-0001-0001-000000000001"), 5), key).await;
    assert_eq!((status, outcome["asset_id"].as_i64()), (200, Some(known_id)), "{outcome}");
}

async fn reports_collected_for_a_target_must_be_that_target(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let a = server.accept(&report("target-a")).await["asset_id"].as_i64().expect("id");
    let b = server.accept(&report("target-b")).await["asset_id"].as_i64().expect("id");
    let changes_of_b = server.changes(b).await.len();
    // Collected at target-a's address, the host prints target-b's identity.
    let mut lie = at(report("target-b"), 10);
    lie["collected_for"] = json!(a);
    lie["sections"]["cpu"]["data"]["cpu_count"] = json!(1);
    let (status, body) = server.report(&lie).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(server.changes(b).await.len(), changes_of_b, "target-b is not written");
    let (_, errors) = server.get(&format!("/api/v1/errors?asset_id={a}")).await;
    assert!(errors.to_string().contains(&format!("asset {b}")), "the target's error names the other asset: {errors}");
    // A machine nobody knows at target-a's address (a board swap): a new asset, flagged.
    let mut swapped = at(report("target-a-new-board"), 20);
    swapped["collected_for"] = json!(a);
    let outcome = server.accept(&swapped).await;
    let new_id = outcome["asset_id"].as_i64().expect("id");
    assert_ne!(new_id, a);
    assert_eq!(server.asset(new_id).await["possible_duplicate_of"], json!(a));
    // The target itself: accepted as usual.
    let mut honest = at(report("target-a"), 30);
    honest["collected_for"] = json!(a);
    assert_eq!(server.accept(&honest).await["asset_id"], json!(a));
}

async fn collect_targets_never_share_an_address(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let admin = server.admin.clone();
    let mut ids = Vec::new();
    for name in ["ct-1", "ct-2", "ct-3"] {
        let (status, asset) =
            server.send_json(&admin, "POST", "/api/v1/assets", &json!({"hostname": name, "status": "online"})).await;
        assert_eq!(status, 201, "{asset}");
        ids.push(asset["id"].as_i64().expect("id"));
    }
    for id in &ids[..2] {
        let (status, body) = server
            .send_json(&admin, "PATCH", &format!("/api/v1/assets/{id}"), &json!({"manage_address": "10.1.1.1"}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Hostile values never get stored.
    for (field, value) in [("manage_address", "10.1.1.2 -oProxyCommand=touch"), ("salt_minion_id", "ct-3,*")] {
        let (status, body) =
            server.send_json(&admin, "PATCH", &format!("/api/v1/assets/{}", ids[2]), &json!({field: value})).await;
        assert_eq!(status, 422, "{field}: {body}");
    }
    let (status, body) = server.signed("GET", "/api/v1/collect-targets", b"").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepts_collected_for"], json!(true));
    let listed: Vec<i64> =
        body["targets"].as_array().expect("targets").iter().filter_map(|t| t["asset_id"].as_i64()).collect();
    assert_eq!(listed, vec![ids[2]], "the two assets sharing 10.1.1.1 are withheld");
    let (_, errors) = server.get(&format!("/api/v1/errors?asset_id={}", ids[0])).await;
    assert!(errors.to_string().contains("10.1.1.1"), "{errors}");
    // Asking again does not add the same error again.
    let count = |db: cmdb_server::db::Db| async move {
        scalar(&db, "SELECT COUNT(*) FROM collection_errors WHERE source = 'collect-targets'").await
    };
    let before = count(server.db().clone()).await;
    server.signed("GET", "/api/v1/collect-targets", b"").await;
    assert_eq!(count(server.db().clone()).await, before);
}

// ---------------------------------------------------------------------------------------------
// 7. Unbounded reports.

async fn oversized_reports_write_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let changes_before = scalar(server.db(), "SELECT COUNT(*) FROM changes").await;
    let mut doc = report("many-disks");
    let disks: Vec<Value> = (0..5000)
        .map(
            |i| json!({"slot": format!("0:{i}"), "capacity_bytes": 1_000_000_000, "model": "X", "sn": format!("S{i}")}),
        )
        .collect();
    doc["sections"]["disk"]["data"]["disks"] = json!(disks);
    let (status, body) = server.report(&doc).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("limits.max_components_per_section"), "{body}");
    let mut doc = report("long-string");
    doc["sections"]["x-inventory"] = json!({"status": "ok", "data": {"blob": "x".repeat(5000)}});
    let (status, body) = server.report(&doc).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("limits.max_string_bytes"), "{body}");
    assert_eq!(scalar(server.db(), "SELECT COUNT(*) FROM changes").await, changes_before, "nothing written");
    assert_eq!(scalar(server.db(), "SELECT COUNT(*) FROM assets").await, 0);
}

// ---------------------------------------------------------------------------------------------
// 8 to 10. Metrics, nonces, list edits, the legacy endpoint.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_their_token_when_one_is_set() {
    let db = TestDb::new(Backend::Sqlite).await;
    let open = TestServer::start(&db).await;
    assert_eq!(open.http.get(format!("{}/metrics", open.base)).send().await.expect("get").status(), 200);
    let mut config = test_config(&db);
    config.metrics.token = Some("metrics-token-0123456789".to_owned());
    let server = TestServer::start_with(&db, config).await;
    let get = |token: Option<&str>| {
        let mut request = server.http.get(format!("{}/metrics", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("get").status().as_u16() }
    };
    assert_eq!(get(None).await, 401);
    assert_eq!(get(Some("metrics-token-012345678")).await, 401);
    assert_eq!(get(Some(&server.admin.clone())).await, 401, "an admin token is not the metrics token");
    assert_eq!(get(Some("metrics-token-0123456789")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_outlive_their_window_by_a_margin() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let now = now_us();
    for (nonce, expired_ago) in
        [("recent", 10_000_000_i64), ("old", cmdb_server::app::NONCE_PRUNE_MARGIN_US + 1_000_000)]
    {
        sqlx::query("INSERT INTO nonces (key_id, nonce, expires_at) VALUES ('k', $1, $2)")
            .bind(nonce)
            .bind(now - expired_ago)
            .execute(server.db().writer())
            .await
            .expect("insert");
    }
    cmdb_server::app::prune(server.db(), &server.state.config).await.expect("prune");
    let left: Vec<String> = sqlx::query("SELECT nonce FROM nonces WHERE key_id = 'k'")
        .fetch_all(server.db().reader())
        .await
        .expect("rows")
        .iter()
        .map(|r| r.try_get(0).expect("text"))
        .collect();
    assert_eq!(left, vec!["recent".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_edits_in_the_ui_are_audited() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = WebServer::start(&db).await;
    let mut editor = server.login("editor").await;
    let csrf = editor.csrf().await;
    let answer = editor
        .post_form(
            "/lists",
            &[("csrf", &csrf), ("action", "add"), ("list", "idc"), ("value", "bj-9"), ("description", "")],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let audited = scalar(
        &server.db,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'list.add' AND actor = 'editor' AND detail LIKE '%bj-9%'",
    )
    .await;
    assert_eq!(audited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_endpoint_is_open_only_to_its_networks() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = test_config(&db);
    config.legacy.enabled = true;
    config.legacy.key = Some("legacy-key-123".to_owned());
    config.legacy.allow_from = vec!["10.0.0.0/8".parse().expect("cidr")];
    let server = TestServer::start_with(&db, config).await;
    let ts = format!("{}.5", chrono::Utc::now().timestamp());
    let payload = include_str!("../../cmdb-model/testdata/legacy/course-client-payload.json");
    let response = server
        .http
        .post(format!("{}/api/asset", server.base))
        .header("auth-api", cmdb_model::legacy::auth_header("legacy-key-123", &ts))
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 403, "loopback is not in 10.0.0.0/8");
    assert_eq!(scalar(server.db(), "SELECT COUNT(*) FROM assets").await, 0);
}

on_both_backends!(
    redirect_bypasses_stay_on_the_site,
    parallel_wrong_passwords_get_five_checks,
    unauthenticated_traffic_cannot_grow_the_audit_log,
    the_per_user_cap_never_locks_out_known_addresses,
    password_changes_are_throttled,
    secrets_stored_in_the_clear_are_sealed_and_a_wrong_key_file_is_refused,
    new_host_keys_never_take_over_an_asset_by_name,
    reports_collected_for_a_target_must_be_that_target,
    collect_targets_never_share_an_address,
    oversized_reports_write_nothing,
);
