//! Helpers for the web UI tests: a real server on loopback (with the client address known, as in
//! production), users of each role, seeded assets, and a small cookie-keeping HTTP client that
//! behaves like a browser without JavaScript (it follows no redirects, so tests see them).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use cmdb_model::report::parse_report;
use cmdb_server::AppState;
use cmdb_server::auth::Role;
use cmdb_server::config::ServerConfig;
use cmdb_server::db::Db;
use cmdb_server::web::users;
use serde_json::Value;

use super::common::{TestDb, test_config};

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running server with an admin, an editor and a viewer.
pub struct WebServer {
    pub base: String,
    pub state: Arc<AppState>,
    pub db: Db,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebServer {
    pub async fn start(test_db: &TestDb) -> WebServer {
        Self::start_with(test_db, test_config(test_db)).await
    }

    pub async fn start_with(test_db: &TestDb, config: ServerConfig) -> WebServer {
        // Server logs go to the test's captured output (shown when a test fails).
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info,sqlx=warn").try_init();
        let db = test_db.open().await;
        for (name, role) in [("admin", Role::Admin), ("editor", Role::Editor), ("viewer", Role::Viewer)] {
            if users::find(&db, name).await.expect("find").is_none() {
                users::create(&db, name, role, PASSWORD, false).await.expect("create user");
            }
        }
        let secret_key = cmdb_server::admin::open_secrets(&db, &config).await.expect("secrets key");
        let state = AppState::new(db.clone(), config, secret_key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = cmdb_server::app(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        WebServer { base, state, db, task }
    }

    /// Ingests a report document directly (no HTTP), as an SSH collector would.
    pub async fn ingest(&self, doc: &Value) -> i64 {
        let report = parse_report(&serde_json::to_vec(doc).expect("json")).expect("valid report");
        let (outcome, _) = self.state.ingestor.ingest(&report, "ssh", None, None).await.expect("ingest");
        outcome.asset_id
    }

    /// A machine recorded twice: `old_host` reports, is retired, then reports again under
    /// `new_host` with the same board serial (a retired asset is never matched, so it becomes a
    /// new record). Returns (old, new).
    #[allow(dead_code)]
    pub async fn retired_host_reports_again(&self, old_host: &str, new_host: &str) -> (i64, i64) {
        let old = self.ingest(&super::common::report(old_host)).await;
        let retire = serde_json::json!({"status": "retired"});
        cmdb_server::service::assets::patch_business(&self.db, old, "user:test", retire.as_object().expect("object"))
            .await
            .expect("retire");
        let mut back = super::common::at(super::common::report(new_host), 60);
        back["sections"]["board"]["data"]["sn"] = serde_json::json!(format!("SN-{old_host}"));
        (old, self.ingest(&back).await)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    /// A client logged in as `name` (one of admin, editor, viewer).
    pub async fn login(&self, name: &str) -> Client {
        let mut client = self.client();
        let response = client.login(name, PASSWORD).await;
        assert_eq!(response.status, 303, "login as {name} failed: {}", response.body);
        client
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }
}

/// A cookie-keeping client.
pub struct Client {
    pub base: String,
    pub cookies: BTreeMap<String, String>,
    http: reqwest::Client,
}

/// The value of `<input ... name="NAME" value="...">` (first occurrence), unescaped.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&#x2f;", "/").replace("&amp;", "&").replace("&quot;", "\"").replace("&#34;", "\""))
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Client { base: base.to_owned(), cookies: BTreeMap::new(), http }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&mut self, headers: &reqwest::header::HeaderMap) {
        for value in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let pair = value.split(';').next().unwrap_or("");
            let deleted = value.contains("Max-Age=0");
            if let Some((name, value)) = pair.split_once('=') {
                if deleted || value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        self.try_send(request).await.expect("request")
    }

    /// The answer, or the transport error (a connection cut before the whole answer came).
    async fn try_send(&mut self, request: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
        let request = if self.cookies.is_empty() { request } else { request.header("cookie", self.cookie_header()) };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        self.keep_cookies(&headers);
        let body = response.text().await.unwrap_or_default();
        Ok(Answer { status, headers, body })
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// Like [`Client::get`], but a transport error is returned instead of failing the test.
    pub async fn try_get(&mut self, path: &str) -> Result<Answer, reqwest::Error> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.try_send(request).await
    }

    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request).await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = serde_urlencoded::to_string(fields).expect("form");
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    pub async fn send_json(&mut self, method: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.request(method.parse().expect("method"), format!("{}{path}", self.base)).json(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request).await
    }

    /// Fills and posts the login form the way a browser would.
    pub async fn login(&mut self, name: &str, password: &str) -> Answer {
        // A logged-in browser is sent away from the form, so fetch the form without the session
        // cookie and post it with the cookie (as a browser with a planted or old session would).
        let session = self.cookies.remove("cmdb_session");
        let form = self.get("/login").await;
        if let Some(session) = session {
            self.cookies.insert("cmdb_session".to_owned(), session);
        }
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = hidden_value(&form.body, "csrf").expect("login form has a csrf field");
        self.post_form("/login", &[("csrf", &csrf), ("name", name), ("password", password), ("next", "/")]).await
    }

    /// The session's CSRF token, read from any logged-in page.
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/account").await;
        hidden_value(&page.body, "csrf").expect("logged-in pages carry the csrf token")
    }
}
