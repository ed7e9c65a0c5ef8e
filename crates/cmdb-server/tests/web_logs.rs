//! Passwords, session ids, CSRF tokens, API tokens and agent secrets never reach the logs, at any
//! log level, whatever the UI does with them (log in, fail to log in, create users, tokens and
//! keys, reset passwords, change one's own).

mod common;
mod web_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Backend, TestDb};
use web_support::{PASSWORD, WebServer, hidden_value};

/// Every log line of the process, at TRACE level.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut lines) = self.0.lock() {
            lines.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn secrets_in(html: &str, label: &str) -> String {
    // The secret box renders `<dt>label</dt><dd><code class="select-all">VALUE</code>`.
    let marker = format!("<dt>{label}</dt><dd><code class=\"select-all\">");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {label} shown: {html}")) + marker.len();
    html[start..].split('<').next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let db = TestDb::new(Backend::Sqlite).await;
    let server = WebServer::start(&db).await;
    let mut secrets: Vec<String> =
        vec![PASSWORD.to_owned(), "a wrong password typed".to_owned(), "typed-into-name-field".to_owned()];

    let mut stranger = server.client();
    assert_eq!(stranger.login("typed-into-name-field", "a wrong password typed").await.status, 401);
    assert_eq!(stranger.login("editor", "a wrong password typed").await.status, 401);
    let mut admin = server.login("admin").await;
    secrets.push(admin.cookies["cmdb_session"].clone());
    let csrf = admin.csrf().await;
    secrets.push(csrf.clone());

    let page = admin
        .post_form("/admin/users", &[("csrf", &csrf), ("name", "newbie"), ("role", "viewer"), ("password", "")])
        .await;
    secrets.push(secrets_in(&page.body, "Password"));
    let page = admin
        .post_form(
            "/admin/users",
            &[("csrf", &csrf), ("name", "chosen"), ("role", "editor"), ("password", "chosen password 123")],
        )
        .await;
    assert_eq!(page.status, 303);
    secrets.push("chosen password 123".to_owned());
    let page = admin.post_form("/admin/tokens", &[("csrf", &csrf), ("name", "ci"), ("role", "viewer")]).await;
    secrets.push(secrets_in(&page.body, "token"));
    let page = admin.post_form("/admin/keys", &[("csrf", &csrf), ("name", "rack-7"), ("scope", "host")]).await;
    secrets.push(secrets_in(&page.body, "secret"));
    let newbie = cmdb_server::web::users::find(&server.db, "newbie").await.expect("find").expect("newbie");
    let page =
        admin.post_form(&format!("/admin/users/{}", newbie.id), &[("csrf", &csrf), ("action", "reset_password")]).await;
    let reset = secrets_in(&page.body, "Password");
    secrets.push(reset.clone());

    // The user logs in with the reset password and chooses their own.
    let mut user = server.client();
    assert_eq!(user.login("newbie", &reset).await.status, 303);
    let page = user.get("/account").await;
    let token = hidden_value(&page.body, "csrf").expect("csrf");
    secrets.push(token.clone());
    let changed = user
        .post_form(
            "/account",
            &[("csrf", &token), ("current", &reset), ("new", "my own password!"), ("confirm", "my own password!")],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    secrets.push("my own password!".to_owned());
    secrets.push(user.cookies["cmdb_session"].clone());

    let logs = String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned();
    assert!(logs.contains("login failed") && logs.contains("audit"), "the capture works: {logs}");
    for secret in &secrets {
        assert!(secret.len() >= 10, "a real secret: {secret:?}");
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs: {secret:?}");
    }
}
