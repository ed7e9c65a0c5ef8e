//! Users, sessions, CSRF, roles, login throttling and the audit log, over HTTP against a real server
//! on SQLite and PostgreSQL.

mod common;
mod web_support;

use cmdb_server::db::now_us;
use cmdb_server::web::users;
use common::{Backend, TestDb, report};
use serde_json::json;
use sqlx::Row;
use web_support::{PASSWORD, WebServer, hidden_value};

async fn count(server: &WebServer, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(server.db.reader())
        .await
        .expect("count")
        .try_get(0)
        .expect("int")
}

async fn login_logout_and_cookies(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let mut browser = server.client();

    let anonymous = browser.get("/assets?q=web").await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.location(), "/login?next=%2Fassets%3Fq%3Dweb");

    // The login form has its own CSRF token (double submit with a SameSite=Strict cookie): a
    // login posted from elsewhere, without the cookie, is refused even with the right password.
    let mut forged = server.client();
    let form = forged.get("/login").await;
    let token = hidden_value(&form.body, "csrf").expect("login csrf");
    assert!(form.set_cookies().iter().any(|c| c.starts_with("cmdb_login_csrf=") && c.contains("SameSite=Strict")));
    forged.cookies.clear();
    let refused = forged.post_form("/login", &[("csrf", &token), ("name", "editor"), ("password", PASSWORD)]).await;
    assert_eq!(refused.status, 403);
    assert!(!forged.cookies.contains_key("cmdb_session"));

    let wrong = browser.login("editor", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong user name or password"), "{}", wrong.body);
    assert!(!browser.cookies.contains_key("cmdb_session"));

    let ok = browser.login("Editor", PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location(), "/");
    let cookie = ok.set_cookies().into_iter().find(|c| c.starts_with("cmdb_session=")).expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP without a https public_url: {cookie}");
    let id = browser.cookies["cmdb_session"].clone();
    assert_eq!(id.len(), 43, "256 random bits, base64url");
    // Only the hash is stored.
    let stored = count(&server, &format!("SELECT COUNT(*) FROM sessions WHERE id_hash = '{id}'")).await;
    assert_eq!(stored, 0);
    let hashed = cmdb_server::auth::token_hash(&id);
    assert_eq!(count(&server, &format!("SELECT COUNT(*) FROM sessions WHERE id_hash = '{hashed}'")).await, 1);

    let dashboard = browser.get("/").await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("editor"));
    let csp = dashboard.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(dashboard.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));

    // Logout is a POST with the CSRF token; without it nothing happens.
    let refused = browser.post_form("/logout", &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(browser.get("/").await.status, 200, "still logged in");
    let csrf = browser.csrf().await;
    let out = browser.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/login");
    assert!(!browser.cookies.contains_key("cmdb_session"), "cookie cleared");
    // The old cookie is dead on the server too.
    browser.cookies.insert("cmdb_session".into(), id);
    assert_eq!(browser.get("/").await.status, 303);
    assert_eq!(count(&server, &format!("SELECT COUNT(*) FROM sessions WHERE id_hash = '{hashed}'")).await, 0);

    let actions: Vec<String> = sqlx::query("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(server.db.reader())
        .await
        .expect("audit")
        .iter()
        .map(|r| r.try_get(0).expect("text"))
        .collect();
    assert_eq!(actions, vec!["login_failed", "login", "logout"]);
}

async fn sessions_rotate_and_expire(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let mut browser = server.login("viewer").await;
    let first = browser.cookies["cmdb_session"].clone();
    // Logging in again (or after someone planted a session id) never keeps the old id.
    let again = browser.login("viewer", PASSWORD).await;
    assert_eq!(again.status, 303);
    let second = browser.cookies["cmdb_session"].clone();
    assert_ne!(first, second);
    let mut planted = server.client();
    planted.cookies.insert("cmdb_session".into(), first);
    assert_eq!(planted.get("/").await.status, 303, "the first session ended at the second login");

    // Idle expiry: 8 hours without a request.
    let nine_hours_ago = now_us() - 9 * 3600 * 1_000_000;
    sqlx::query("UPDATE sessions SET last_seen_at = $1")
        .bind(nine_hours_ago)
        .execute(server.db.writer())
        .await
        .expect("age");
    assert_eq!(browser.get("/").await.status, 303, "idle session expired");
    assert_eq!(count(&server, "SELECT COUNT(*) FROM sessions").await, 0, "and deleted");

    // Absolute expiry: however active, a session ends 24 hours after login.
    let mut browser = server.login("viewer").await;
    sqlx::query("UPDATE sessions SET expires_at = $1")
        .bind(now_us() - 1)
        .execute(server.db.writer())
        .await
        .expect("age");
    assert_eq!(browser.get("/").await.status, 303, "absolute expiry");

    // A disabled user's sessions end at once.
    let mut browser = server.login("viewer").await;
    let viewer = users::find(&server.db, "viewer").await.expect("find").expect("viewer");
    let mut admin = server.login("admin").await;
    let csrf = admin.csrf().await;
    let done = admin.post_form(&format!("/admin/users/{}", viewer.id), &[("csrf", &csrf), ("action", "disable")]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(browser.get("/").await.status, 303);
    assert_eq!(server.client().login("viewer", PASSWORD).await.status, 401, "disabled users cannot log in");
}

async fn csrf_and_roles(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let id = server.ingest(&report("web-01")).await;
    let changes_before = count(&server, "SELECT COUNT(*) FROM changes").await;
    let mut editor = server.login("editor").await;
    let mut viewer = server.login("viewer").await;
    let path = format!("/assets/{id}/business");

    // No token, a wrong token, another session's token: all refused, nothing written.
    let viewer_token = viewer.csrf().await;
    for token in [None, Some("x".repeat(43)), Some(viewer_token.clone())] {
        let mut fields = vec![("owner", "mallory"), ("orig_owner", "")];
        if let Some(token) = token.as_deref() {
            fields.push(("csrf", token));
        }
        let refused = editor.post_form(&path, &fields).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(refused.body.contains("expired or did not come from this site"), "{}", refused.body);
    }
    assert_eq!(count(&server, "SELECT COUNT(*) FROM changes").await, changes_before);

    // A viewer with a valid token is still refused by role.
    let denied = viewer.post_form(&path, &[("csrf", &viewer_token), ("owner", "viewer"), ("status", "online")]).await;
    assert_eq!(denied.status, 403);
    assert!(denied.body.contains("needs the editor role"), "{}", denied.body);
    let page = viewer.get(&format!("/assets/{id}")).await;
    assert!(!page.body.contains("id=\"business-form\""), "viewers get no edit form");

    // The editor's own token works and the change's source is the user.
    let token = editor.csrf().await;
    let page = editor.get(&format!("/assets/{id}")).await;
    assert!(page.body.contains("id=\"business-form\""));
    let orig_status = hidden_value(&page.body, "orig_status").expect("orig_status");
    let saved = editor
        .post_form(
            &path,
            &[
                ("csrf", &token),
                ("owner", "team-db"),
                ("orig_owner", ""),
                ("status", &orig_status),
                ("orig_status", &orig_status),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let row =
        sqlx::query("SELECT source, path, new_value FROM changes WHERE section = 'business' ORDER BY id DESC LIMIT 1")
            .fetch_one(server.db.reader())
            .await
            .expect("change");
    assert_eq!(row.try_get::<String, _>(0).expect("source"), "user:editor");
    assert_eq!(row.try_get::<String, _>(1).expect("path"), "/owner");
    assert_eq!(row.try_get::<String, _>(2).expect("new"), "\"team-db\"");
    let page = editor.get(&format!("/assets/{id}?saved=1")).await;
    assert!(page.body.contains("team-db") && page.body.contains("user:editor"), "the edit is in the timeline");

    // Admin pages are for admins.
    assert_eq!(viewer.get("/admin/users").await.status, 403);
    assert_eq!(editor.get("/admin/tokens").await.status, 403);
    let mut admin = server.login("admin").await;
    for page in ["/admin/users", "/admin/keys", "/admin/tokens", "/admin/audit"] {
        assert_eq!(admin.get(page).await.status, 200, "{page}");
    }

    // The REST API accepts the session cookie; writes need the session's X-CSRF-Token header.
    let listed = editor.get("/api/v1/assets").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let patch = json!({"owner": "via-api"});
    let no_header = editor.send_json("PATCH", &format!("/api/v1/assets/{id}"), &patch, &[]).await;
    assert_eq!(no_header.status, 403, "{}", no_header.body);
    let with_header =
        editor.send_json("PATCH", &format!("/api/v1/assets/{id}"), &patch, &[("x-csrf-token", &token)]).await;
    assert_eq!(with_header.status, 200, "{}", with_header.body);
    let as_viewer =
        viewer.send_json("PATCH", &format!("/api/v1/assets/{id}"), &patch, &[("x-csrf-token", &viewer_token)]).await;
    assert_eq!(as_viewer.status, 403, "roles govern sessions like tokens");
}

async fn failed_logins_are_throttled_in_the_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let mut browser = server.client();
    // Five failures are free; the fifth blocks the (user, address) pair for a second.
    for attempt in 1..=5 {
        let answer = browser.login("editor", "wrong password!").await;
        assert_eq!(answer.status, 401, "attempt {attempt}");
        if attempt == 5 {
            assert!(answer.body.contains("blocked for 1 seconds"), "{}", answer.body);
        }
    }
    // Blocked: even the right password is not checked.
    let blocked = browser.login("editor", PASSWORD).await;
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    assert!(blocked.body.contains("Too many failed logins"));
    assert!(blocked.headers.get("retry-after").is_some(), "429 carries Retry-After");
    // The counter is in the database: another instance on the same database refuses too. (The
    // block is lengthened first, as more failures would, so it outlasts starting the instance.)
    let later = now_us() + 60_000_000;
    sqlx::query("UPDATE login_throttle SET blocked_until = $1 WHERE scope = 'pair:editor|127.0.0.1'")
        .bind(later)
        .execute(server.db.writer())
        .await
        .expect("lengthen");
    let other = WebServer::start(&db).await;
    assert_eq!(other.client().login("editor", PASSWORD).await.status, 429);
    // Another user from the same address is not blocked by editor's failures.
    assert_eq!(server.client().login("viewer", PASSWORD).await.status, 303);

    // Once the block has passed, the right password works and the pair's counter is cleared.
    sqlx::query("UPDATE login_throttle SET blocked_until = 0").execute(server.db.writer()).await.expect("unblock");
    assert_eq!(browser.login("editor", PASSWORD).await.status, 303);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM login_throttle WHERE scope LIKE 'pair:editor|%'").await, 0);

    // One address guessing many names is throttled as an address, from its 20th failure.
    sqlx::query("DELETE FROM login_throttle").execute(server.db.writer()).await.expect("reset");
    for index in 0..20 {
        let answer = server.client().login(&format!("nobody{index}"), "guess guess guess").await;
        assert_eq!(answer.status, 401, "attempt {index}");
    }
    sqlx::query("UPDATE login_throttle SET blocked_until = $1 WHERE scope LIKE 'ip:%'")
        .bind(now_us() + 60_000_000)
        .execute(server.db.writer())
        .await
        .expect("lengthen");
    let from_ip = server.client().login("admin", PASSWORD).await;
    assert_eq!(from_ip.status, 429, "the address is blocked after 20 failures");
    let scope: String = sqlx::query("SELECT scope FROM login_throttle WHERE scope LIKE 'ip:%'")
        .fetch_one(server.db.reader())
        .await
        .expect("ip scope")
        .try_get(0)
        .expect("text");
    assert_eq!(scope, "ip:127.0.0.1");

    // Unknown names are not written to the audit log (they may be mistyped passwords).
    assert_eq!(
        count(&server, "SELECT COUNT(*) FROM audit_log WHERE actor LIKE 'nobody%' OR detail LIKE '%nobody%'").await,
        0
    );
    assert!(
        count(
            &server,
            "SELECT CAST(SUM(repeats) AS BIGINT) FROM audit_log WHERE action = 'login_failed' AND actor = '-'"
        )
        .await
            >= 20
    );
    assert!(
        count(&server, "SELECT CAST(SUM(repeats) AS BIGINT) FROM audit_log WHERE action = 'login_throttled'").await
            >= 2
    );
}

async fn first_admin_must_change_the_generated_password(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = db.open().await;
    let data_dir = db.dir.path().join("data");
    let first = users::first_admin(&database, &data_dir).await.expect("first start").expect("created");
    assert_eq!(first.name, "admin");
    let file = std::fs::read_to_string(&first.password_file).expect("password file");
    assert_eq!(file.trim(), first.password);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first.password_file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(users::first_admin(&database, &data_dir).await.expect("second start").is_none(), "only once");

    let config = cmdb_server::config::ServerConfig { data_dir: data_dir.clone(), ..common::test_config(&db) };
    let server = WebServer::start_with(&db, config).await;
    let mut browser = server.client();
    let login = browser.login("admin", &first.password).await;
    assert_eq!(login.status, 303);
    assert_eq!(login.location(), "/account", "a generated password must be changed first");
    assert_eq!(browser.get("/assets").await.location(), "/account");
    let csrf = browser.csrf().await;
    let mismatch = browser
        .post_form(
            "/account",
            &[("csrf", &csrf), ("current", &first.password), ("new", "a new long password"), ("confirm", "another")],
        )
        .await;
    assert_eq!(mismatch.status, 422);
    let changed = browser
        .post_form(
            "/account",
            &[
                ("csrf", &csrf),
                ("current", &first.password),
                ("new", "a new long password"),
                ("confirm", "a new long password"),
            ],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert_eq!(browser.get("/assets").await.status, 200, "the new session works");
    assert!(!first.password_file.exists(), "the stale generated password is removed");
    assert_eq!(server.client().login("admin", &first.password).await.status, 401);
    assert_eq!(server.client().login("admin", "a new long password").await.status, 303);
}

async fn admins_manage_users_keys_and_tokens(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let mut admin = server.login("admin").await;
    let csrf = admin.csrf().await;
    let shown = |html: &str, label: &str| -> String {
        let marker = format!("<dt>{label}</dt><dd><code class=\"select-all\">");
        let start = html.find(&marker).unwrap_or_else(|| panic!("no {label}: {html}")) + marker.len();
        html[start..].split('<').next().unwrap_or("").to_owned()
    };

    // A token made in the UI works against the API with its role, until it is revoked.
    let page =
        admin.post_form("/admin/tokens", &[("csrf", &csrf), ("name", "inventory-script"), ("role", "viewer")]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let token = shown(&page.body, "token");
    let api = reqwest::Client::new();
    let status = |token: String| {
        let api = api.clone();
        let url = format!("{}/api/v1/assets", server.base);
        async move { api.get(url).bearer_auth(token).send().await.expect("api").status().as_u16() }
    };
    assert_eq!(status(token.clone()).await, 200);
    let id: i64 = sqlx::query("SELECT id FROM api_tokens WHERE name = 'inventory-script'")
        .fetch_one(server.db.reader())
        .await
        .expect("token row")
        .try_get(0)
        .expect("id");
    let id_text = id.to_string();
    assert_eq!(admin.post_form("/admin/tokens/revoke", &[("csrf", &csrf), ("id", &id_text)]).await.status, 303);
    assert_eq!(status(token).await, 401);
    assert!(admin.get("/admin/tokens").await.body.contains("revoked"));

    // An agent key: shown once, listed without its secret, revoked.
    let page = admin.post_form("/admin/keys", &[("csrf", &csrf), ("name", "rack-12"), ("scope", "collector")]).await;
    let key_id = shown(&page.body, "key_id");
    let secret = shown(&page.body, "secret");
    assert_eq!(secret.len(), 64);
    assert!(
        page.body.contains("<pre class=\"select-all\" id=\"secret-file\"># cmdb agent key"),
        "the ready-to-paste key file: {}",
        page.body
    );
    // The same name again is refused unless the box says to use it anyway.
    let again = admin.post_form("/admin/keys", &[("csrf", &csrf), ("name", "rack-12"), ("scope", "collector")]).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("already named"), "{}", again.body);
    let forced = admin
        .post_form("/admin/keys", &[("csrf", &csrf), ("name", "rack-12"), ("scope", "collector"), ("force", "1")])
        .await;
    assert_eq!(forced.status, 200, "{}", forced.body);
    let listing = admin.get("/admin/keys").await.body;
    assert!(listing.contains(&key_id) && !listing.contains(&secret), "secrets are shown once");
    assert!(listing.contains(">never</span>"), "a key not used yet says never");
    assert_eq!(admin.post_form("/admin/keys/revoke", &[("csrf", &csrf), ("key_id", &key_id)]).await.status, 303);
    let revoked = count(
        &server,
        &format!("SELECT COUNT(*) FROM agent_keys WHERE key_id = '{key_id}' AND revoked_at IS NOT NULL"),
    )
    .await;
    assert_eq!(revoked, 1);

    // Roles: a new user, promoted; the last administrator cannot demote themself.
    let page = admin
        .post_form("/admin/users", &[("csrf", &csrf), ("name", "Carol"), ("role", "viewer"), ("password", "")])
        .await;
    let password = shown(&page.body, "Password");
    let carol = users::find(&server.db, "carol").await.expect("find").expect("carol");
    assert!(carol.must_change_password);
    let path = format!("/admin/users/{}", carol.id);
    assert_eq!(admin.post_form(&path, &[("csrf", &csrf), ("action", "role"), ("role", "editor")]).await.status, 303);
    assert_eq!(users::get(&server.db, carol.id).await.expect("carol").role, cmdb_server::auth::Role::Editor);
    let me = users::find(&server.db, "admin").await.expect("find").expect("admin");
    let demote = admin
        .post_form(&format!("/admin/users/{}", me.id), &[("csrf", &csrf), ("action", "role"), ("role", "viewer")])
        .await;
    assert_eq!(demote.status, 409);
    assert!(demote.body.contains("last active administrator"), "{}", demote.body);
    let mut carol_browser = server.client();
    assert_eq!(carol_browser.login("carol", &password).await.location(), "/account");
    // A password the admin typed is theirs too: changed at the first login as well.
    let page = admin
        .post_form(
            "/admin/users",
            &[("csrf", &csrf), ("name", "dave"), ("role", "viewer"), ("password", "chosen-by-admin-1")],
        )
        .await;
    assert!(page.status < 400, "{}", page.body);
    assert!(users::find(&server.db, "dave").await.expect("find").expect("dave").must_change_password);
    let mut dave_browser = server.client();
    assert_eq!(dave_browser.login("dave", "chosen-by-admin-1").await.location(), "/account");

    // All of it is in the audit log, which filters by action.
    let audit = admin.get("/admin/audit?action=token.").await.body;
    assert!(
        audit.contains("<td>token.create</td>")
            && audit.contains("<td>token.revoke</td>")
            && !audit.contains("<td>agent_key.create</td>")
    );
    let actions = count(
        &server,
        "SELECT COUNT(*) FROM audit_log WHERE actor = 'admin' AND action IN \
         ('token.create', 'token.revoke', 'agent_key.create', 'agent_key.revoke', 'user.create', 'user.role')",
    )
    .await;
    assert_eq!(actions, 8);
}

on_both_backends!(
    admins_manage_users_keys_and_tokens,
    login_logout_and_cookies,
    sessions_rotate_and_expire,
    csrf_and_roles,
    failed_logins_are_throttled_in_the_database,
    first_admin_must_change_the_generated_password,
);

/// `cmdb-server user create` reads the password from stdin, never from argv, and the user can log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_create_command_reads_the_password_from_stdin() {
    use std::io::Write;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
        .args(["--database-url", &db.url, "user", "create", "--role", "editor", "--name", "Ops.Person"])
        .env_remove("CMDB_USER_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run cmdb-server");
    child.stdin.take().expect("stdin").write_all(b"a password from stdin\n").expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("created user ops.person with role editor"), "{stdout}");
    assert!(!stdout.contains("a password from stdin"));
    let server = WebServer::start(&db).await;
    assert_eq!(server.client().login("ops.person", "a password from stdin").await.status, 303);
    let audit = count(&server, "SELECT COUNT(*) FROM audit_log WHERE actor = 'cli' AND action = 'user.create'").await;
    assert_eq!(audit, 1);

    // Too short a password is refused with a reason.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
        .args(["--database-url", &db.url, "user", "create", "--role", "viewer", "--name", "x"])
        .env("CMDB_USER_PASSWORD", "short")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 10 characters"));
}

/// The real binary, first start on an empty database: prints the administrator's password once and
/// saves it; the second start does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_the_admin_password_once() {
    use std::io::BufRead;
    let db = TestDb::new(Backend::Sqlite).await;
    let data_dir = db.dir.path().join("data");
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cmdb-server"))
            .args(["--listen", "127.0.0.1:0", "--database-url", &db.url, "--data-dir"])
            .arg(&data_dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start cmdb-server")
    };
    // Reads stdout until the server says it listens (bounded), then stops it.
    let run = |mut child: std::process::Child| -> String {
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let done = line.contains("listening on");
                text.push_str(&line);
                text.push('\n');
                if done {
                    break;
                }
            }
            let _ = tx.send(text);
        });
        let text = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the server started within 60 s");
        let _ = child.kill();
        let _ = child.wait();
        text
    };
    // Stdout is a pipe here (as under systemd, where a journal keeps it): the secrets stay in
    // their files and only the files are named.
    let first = run(start());
    assert!(first.contains("Created the web UI administrator \"admin\""), "{first}");
    assert!(first.contains("/login"), "{first}");
    let saved = std::fs::read_to_string(data_dir.join("admin-password")).expect("saved");
    let password = saved.trim().to_owned();
    assert_eq!(password.len(), 20);
    let token = std::fs::read_to_string(data_dir.join("admin-token")).expect("token saved");
    assert!(!first.contains(&password) && !first.contains(token.trim()), "no secret on a piped stdout: {first}");
    assert!(first.contains(&data_dir.join("admin-password").display().to_string()), "{first}");
    let second = run(start());
    assert!(!second.contains(&password) && !second.contains("password:"), "printed once: {second}");
    let server = WebServer::start(&db).await;
    let login = server.client().login("admin", &password).await;
    assert_eq!((login.status, login.location()), (303, "/account"));
}
