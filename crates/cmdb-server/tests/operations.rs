//! Operating the server: the opt-in legacy endpoint, pruning of bookkeeping rows, first-start
//! credentials, the admin commands, and graceful shutdown of the real binary.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cmdb_model::legacy;
use cmdb_server::db::now_us;
use common::{Backend, TestDb, TestServer, report, test_config};
use serde_json::{Value, json};
use sqlx::Row;

const LEGACY_KEY: &str = "course-shared-key";
const PAYLOAD: &str = include_str!("../../cmdb-model/testdata/legacy/course-client-payload.json");

async fn post_legacy(server: &TestServer, header: &str, body: &str) -> (u16, Value) {
    let response = server
        .http
        .post(format!("{}/api/asset", server.base))
        .header("auth-api", header)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn legacy_endpoint(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = test_config(&db);
    config.legacy.enabled = true;
    config.legacy.key = Some(LEGACY_KEY.to_owned());
    let server = TestServer::start_with(&db, config).await;
    let ts = format!("{}.25", chrono::Utc::now().timestamp());
    let header = legacy::auth_header(LEGACY_KEY, &ts);
    let (status, outcome) = post_legacy(&server, &header, PAYLOAD).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["report_id"], json!(legacy::legacy_report_id(LEGACY_KEY, &ts).to_string()));
    let id = outcome["asset_id"].as_i64().expect("asset");
    let asset = server.asset(id).await;
    assert_eq!(asset["hostname"], "c1.com");
    assert_eq!(asset["sections"]["disk"]["disks"][0]["capacity_bytes"], json!(299_999_170_658_u64), "GB become bytes");
    assert_eq!(asset["sections"]["memory"]["total_mb"], json!(1024));
    assert!(server.changes(id).await.iter().all(|c| c["source"] == "legacy"), "changes carry source legacy");
    // The same header again is a replay (nonce store), whatever the body.
    let (status, _) = post_legacy(&server, &header, PAYLOAD).await;
    assert_eq!(status, 401);
    // A wrong key, an old timestamp, a missing header: refused.
    let old = format!("{}", chrono::Utc::now().timestamp() - 3600);
    for bad in [legacy::auth_header("wrong-key", &ts), legacy::auth_header(LEGACY_KEY, &old), String::new()] {
        let (status, body) = post_legacy(&server, &bad, PAYLOAD).await;
        assert_eq!(status, 401, "{body}");
    }
    // A rename announced the old client's way is refused: the body is unsigned and the key shared
    // by the fleet, so the endpoint never renames (security issue, point 10).
    let name_before = server.asset(id).await["hostname"].clone();
    let mut payload: Value = serde_json::from_str(PAYLOAD).expect("json");
    payload["type"] = json!("host_update");
    payload["cert"] = json!("c1.com");
    payload["basic"]["data"]["hostname"] = json!("c1-new.com");
    let ts = format!("{}.75", chrono::Utc::now().timestamp());
    let (status, outcome) = post_legacy(&server, &legacy::auth_header(LEGACY_KEY, &ts), &payload.to_string()).await;
    assert_eq!(status, 409, "{outcome}");
    assert!(outcome.to_string().contains("does not rename"), "{outcome}");
    assert_eq!(server.asset(id).await["hostname"], name_before, "the asset keeps its name");
}

async fn legacy_endpoint_is_off_by_default(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let ts = chrono::Utc::now().timestamp().to_string();
    let (status, body) = post_legacy(&server, &legacy::auth_header(LEGACY_KEY, &ts), PAYLOAD).await;
    assert_eq!((status, body["error"].clone()), (404, json!("not_found")));
}

async fn bookkeeping_is_pruned(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let mut failed = report("prune-01");
    failed["sections"]["disk"] = json!({"status": "error", "error": "MegaCli: command not found"});
    server.accept(&failed).await;
    let pool = server.state.db.writer();
    let reader = server.state.db.reader().clone();
    let count = |table: &'static str| {
        let reader = reader.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&reader)
                .await
                .expect("count")
                .try_get::<i64, _>(0)
                .expect("int")
        }
    };
    assert_eq!((count("nonces").await, count("reports").await, count("collection_errors").await), (1, 1, 1));
    let changes_before = count("changes").await;
    // Age everything past its retention.
    let long_ago = now_us() - 400 * 86_400_000_000;
    sqlx::query("UPDATE nonces SET expires_at = $1").bind(long_ago).execute(pool).await.expect("age");
    sqlx::query("UPDATE reports SET received_at = $1").bind(long_ago).execute(pool).await.expect("age");
    sqlx::query("UPDATE collection_errors SET recorded_at = $1").bind(long_ago).execute(pool).await.expect("age");
    let removed = cmdb_server::app::prune(&server.state.db, &server.state.config).await.expect("prune");
    assert_eq!(removed, 3);
    assert_eq!((count("nonces").await, count("reports").await, count("collection_errors").await), (0, 0, 0));
    assert_eq!(count("changes").await, changes_before, "history is never pruned");
    // Fresh rows survive a pruning run.
    server.accept(&common::at(report("prune-02"), 1)).await;
    cmdb_server::app::prune(&server.state.db, &server.state.config).await.expect("prune");
    assert_eq!((count("nonces").await, count("reports").await), (1, 1));
}

async fn first_start_writes_private_credentials_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = db.open().await;
    let dir = db.dir.path().join("first");
    let secret_key = cmdb_server::secrets::SecretKey::from_bytes(&[3; 32], "test".into());
    let first =
        cmdb_server::admin::first_start(&database, &dir, &secret_key).await.expect("first start").expect("created");
    let token = std::fs::read_to_string(dir.join("admin-token")).expect("token file");
    assert_eq!(token.trim(), first.admin_token);
    let key = std::fs::read_to_string(dir.join("agent-key.toml")).expect("key file");
    assert!(key.contains(&first.key_id) && key.contains(&first.secret));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["admin-token", "agent-key.toml"] {
            let mode = std::fs::metadata(dir.join(file)).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file} is readable only by its owner");
        }
    }
    assert!(
        cmdb_server::admin::first_start(&database, &dir, &secret_key).await.expect("second").is_none(),
        "only once"
    );
    let principal = cmdb_server::auth::token_principal(database.reader(), &first.admin_token).await.expect("lookup");
    assert_eq!(principal.map(|p| p.role), Some(cmdb_server::auth::Role::Admin));
}

on_both_backends!(
    legacy_endpoint,
    legacy_endpoint_is_off_by_default,
    bookkeeping_is_pruned,
    first_start_writes_private_credentials_once
);

fn server_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
}

#[test]
fn admin_commands_create_list_and_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cmdb.db").display());
    let output = |args: &[&str]| {
        server_bin()
            .args(["--database-url", &url, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .expect("run cmdb-server")
    };
    let run = |args: &[&str]| {
        let output = output(args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // A command that must fail: its standard error.
    let refused = |args: &[&str]| {
        let output = output(args);
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let created = run(&["agent-key", "create", "--scope", "collector", "--name", "worker-1"]);
    let key_id =
        created.lines().find_map(|l| l.strip_prefix("key_id = \"")).and_then(|l| l.strip_suffix('"')).expect("id");
    let secret =
        created.lines().find_map(|l| l.strip_prefix("secret = \"")).and_then(|l| l.strip_suffix('"')).expect("s");
    // A name already in use is refused unless forced.
    assert!(refused(&["agent-key", "create", "--scope", "collector", "--name", "worker-1"]).contains("--force"));
    run(&["agent-key", "create", "--scope", "collector", "--name", "worker-1", "--force"]);
    // --out writes the agent's key file, 0600, and never overwrites one.
    let file = dir.path().join("agent-key.toml");
    let written = run(&["agent-key", "create", "--scope", "host", "--out", file.to_str().expect("utf-8")]);
    let text = std::fs::read_to_string(&file).expect("key file");
    assert!(text.contains(&format!("key_id = \"{}\"", written.trim())) && text.contains("secret = \""), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
    let keys_before = run(&["agent-key", "list"]).lines().count();
    // An existing key file is never overwritten.
    refused(&["agent-key", "create", "--scope", "host", "--out", file.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read_to_string(&file).expect("key file"), text);
    assert_eq!(run(&["agent-key", "list"]).lines().count(), keys_before, "no key was created for nothing");
    let help = run(&["agent-key", "create", "--help"]);
    assert!(help.contains("--out <FILE>"), "{help}");
    let listed = run(&["agent-key", "list"]);
    assert!(listed.contains(key_id) && listed.contains("collector") && listed.contains("worker-1"));
    assert!(!listed.contains(secret), "secrets are never listed");
    // Rotation prints a new secret once; the stored one is sealed, never the printed text.
    let rotated = run(&["agent-key", "rotate", key_id]);
    let new_secret =
        rotated.lines().find_map(|l| l.strip_prefix("secret = \"")).and_then(|l| l.strip_suffix('"')).expect("s");
    assert_ne!(new_secret, secret);
    assert!(!run(&["agent-key", "list"]).contains(new_secret));
    // Only host keys are bound to an asset.
    refused(&["agent-key", "create", "--scope", "collector", "--asset", "1"]);
    run(&["agent-key", "revoke", key_id]);
    assert!(run(&["agent-key", "list"]).contains("revoked"));
    // Revoking twice fails.
    refused(&["agent-key", "revoke", key_id]);

    let token = run(&["token", "create", "--role", "editor", "--name", "ci"]);
    assert!(token.trim().starts_with("cmdb_"));
    let listed = run(&["token", "list"]);
    assert!(listed.contains("editor") && listed.contains("ci") && !listed.contains(token.trim()));
    let id = listed.lines().next().and_then(|l| l.split('\t').next()).expect("id").to_owned();
    run(&["token", "revoke", &id]);
    assert!(run(&["token", "list"]).contains("revoked"));
}

#[test]
fn graceful_shutdown_finishes_in_flight_reports() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("cmdb.db").display());
        // The same data directory as the server: the key file that seals the secret lives there.
        let key = server_bin()
            .args(["--database-url", &url, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["agent-key", "create", "--scope", "collector"])
            .output()
            .expect("key");
        let text = String::from_utf8_lossy(&key.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("{name} = \"")).and_then(|v| v.strip_suffix('"')).map(str::to_owned)
                })
                .expect("field")
        };
        let (key_id, secret) = (field("key_id"), field("secret"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let mut child = server_bin()
            .args(["--listen", &format!("127.0.0.1:{port}"), "--database-url", &url, "--data-dir"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Start a burst of reports, then ask the server to stop while they are in flight.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (http, base, key_id, secret) = (http.clone(), base.clone(), key_id.clone(), secret.clone());
            tasks.push(tokio::spawn(async move {
                let body = serde_json::to_vec(&report(&format!("drain-{i}"))).expect("json");
                let header = cmdb_model::signing::authorization(
                    &key_id,
                    &secret,
                    "POST",
                    "/api/v1/reports",
                    chrono::Utc::now().timestamp(),
                    &cmdb_server::auth::random_hex(16),
                    &body,
                );
                http.post(format!("{base}/api/v1/reports"))
                    .header("content-type", "application/json")
                    .header("authorization", header)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(killed.success());
        let mut answered = 0;
        for task in tasks {
            // Requests accepted before the signal are answered 200; later ones find the port closed.
            if let Ok(Ok(status)) = task.await {
                assert_eq!(status, 200, "an in-flight report was cut off");
                answered += 1;
            }
        }
        let status = child.wait().expect("wait");
        assert!(status.success(), "clean exit after SIGTERM: {status:?}");
        assert!(answered > 0, "some reports were in flight");
        // Everything acknowledged is in the database.
        let db = cmdb_server::db::Db::open(&url, &cmdb_server::db::PoolSettings::default()).await.expect("open");
        let stored: i64 =
            sqlx::query("SELECT COUNT(*) FROM reports").fetch_one(db.reader()).await.expect("n").try_get(0).expect("n");
        assert_eq!(stored, answered, "every acknowledged report is stored");
    });
}
