//! A stand-in for the cmdb server's ingestion endpoints, for delivery tests.
//!
//! It does what the real server must do for the agent's side of the contract: verify every
//! signature with `cmdb_model::signing::verify`, refuse a reused nonce, validate the body with
//! `cmdb_model::report::parse_report`, and store each report_id once. Tests can queue answers
//! (503, 400 with a message, Retry-After) that the next requests get instead.

#![allow(dead_code)]

pub mod hosts;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub const KEY_ID: &str = "agent-test";
pub const SECRET: &str = "0042-test-secret";

/// A queued answer.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

impl Scripted {
    pub fn status(status: u16) -> Self {
        Scripted { status, body: format!("{{\"error\":\"scripted {status}\"}}"), retry_after: None }
    }
}

/// One request that reached the handler.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub nonce: Option<String>,
    pub signature_ok: bool,
    pub at: Instant,
    pub answered: u16,
}

#[derive(Default)]
pub struct Shared {
    pub script: Mutex<VecDeque<Scripted>>,
    pub seen: Mutex<Vec<Seen>>,
    pub nonces: Mutex<HashSet<String>>,
    /// Accepted reports in arrival order (each report_id once).
    pub stored: Mutex<Vec<serde_json::Value>>,
    pub targets: Mutex<serde_json::Value>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.targets.lock().expect("lock") = serde_json::json!({"targets": []});
        let app = Router::new()
            .route("/api/v1/reports", post(report))
            .route("/api/v1/collect-targets", get(targets))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind test server");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn queue(&self, answer: Scripted) {
        self.shared.script.lock().expect("lock").push_back(answer);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("lock").clone()
    }

    pub fn stored(&self) -> Vec<serde_json::Value> {
        self.shared.stored.lock().expect("lock").clone()
    }

    pub fn stored_ids(&self) -> Vec<String> {
        self.stored().iter().map(|r| r["report_id"].as_str().unwrap_or_default().to_owned()).collect()
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

/// Checks the signature; records the request. `Err` is the 401 to send.
#[allow(clippy::result_large_err)]
fn authenticate(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Response> {
    let target = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| uri.path().to_owned());
    let header = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let parsed = cmdb_model::signing::parse_authorization(header);
    let (nonce, ok) = match &parsed {
        Ok(h) => (
            Some(h.nonce.clone()),
            h.key_id == KEY_ID && cmdb_model::signing::verify(SECRET, h, method.as_str(), &target, body),
        ),
        Err(_) => (None, false),
    };
    let reused = match (&nonce, ok) {
        (Some(n), true) => !shared.nonces.lock().expect("lock").insert(n.clone()),
        _ => false,
    };
    let refusal = if !ok {
        Some("bad signature")
    } else if reused {
        Some("nonce reused")
    } else {
        None
    };
    shared.seen.lock().expect("lock").push(Seen {
        method: method.to_string(),
        target: target.clone(),
        nonce,
        signature_ok: ok,
        at: Instant::now(),
        answered: if refusal.is_some() { 401 } else { 0 },
    });
    match refusal {
        Some(message) => Err(json(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": message }))),
        None => Ok(target),
    }
}

fn set_answered(shared: &Shared, status: u16) {
    if let Some(last) = shared.seen.lock().expect("lock").last_mut() {
        last.answered = status;
    }
}

async fn report(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = authenticate(&shared, &method, &uri, &headers, &body) {
        return refusal;
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        set_answered(&shared, 415);
        return json(StatusCode::UNSUPPORTED_MEDIA_TYPE, serde_json::json!({"error": "content-type"}));
    }
    let scripted = shared.script.lock().expect("lock").pop_front();
    if let Some(s) = scripted {
        set_answered(&shared, s.status);
        let mut response =
            (StatusCode::from_u16(s.status).expect("status"), [("content-type", "application/json")], s.body)
                .into_response();
        if let Some(ra) = s.retry_after {
            response.headers_mut().insert("retry-after", ra.parse().expect("header"));
        }
        return response;
    }
    match cmdb_model::report::parse_report(&body) {
        Err(e) => {
            set_answered(&shared, 400);
            json(StatusCode::BAD_REQUEST, serde_json::json!({"error": e.message, "pointer": e.pointer}))
        }
        Ok(report) => {
            let value: serde_json::Value = serde_json::from_slice(&body).expect("valid json");
            let mut stored = shared.stored.lock().expect("lock");
            let id = report.report_id.to_string();
            if !stored.iter().any(|r| r["report_id"] == id.as_str()) {
                stored.push(value);
            }
            set_answered(&shared, 200);
            json(StatusCode::OK, serde_json::json!({"asset_id": 1, "applied": true, "matched_by": "hostname"}))
        }
    }
}

async fn targets(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(refusal) = authenticate(&shared, &method, &uri, &headers, b"") {
        return refusal;
    }
    set_answered(&shared, 200);
    let body = shared.targets.lock().expect("lock").clone();
    json(StatusCode::OK, body)
}
