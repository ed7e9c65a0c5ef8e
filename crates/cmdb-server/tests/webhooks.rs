//! Webhooks end to end: a real HTTP receiver inside the test checks every delivery's signature
//! and records what arrives and when, while agents' reports go through the real HTTP API, the
//! receiver goes down and comes back, and cmdb is killed and started again on the same database.
//! Every event arrives, in order per asset, duplicates only under the same id. The expiry case
//! disables an endpoint that never answers and shows it on the admins' dashboard.

mod common;
mod web_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::{Backend, TestDb, TestServer, test_config};
use serde_json::{Value, json};

const SECRET: &str = "receiver-secret-0123456789";

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Receipt {
    event_id: String,
    body: Value,
    /// Wall-clock time of arrival (Unix µs), comparable with the event's `occurred_at`.
    at_us: i64,
}

/// What the receiver checked and kept.
#[derive(Debug, Default)]
struct Received {
    receipts: Vec<Receipt>,
    bad_signatures: Vec<String>,
}

/// The endpoint id the receiver expects as the signature's key id (known once registered).
type Shared = Arc<(Mutex<Received>, Mutex<String>)>;

/// Verifies the `Authorization` header exactly as cmdb verifies agents: the same string to sign,
/// over POST, the path and query as received, the timestamp, the nonce and the body's SHA-256.
fn check_signature(headers: &HeaderMap, uri: &Uri, body: &[u8], key_id: &str) -> Result<String, String> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("no Authorization")?;
    let signed = cmdb_model::signing::parse_authorization(header).map_err(|e| e.to_string())?;
    let target = uri.path_and_query().map(|pq| pq.as_str().to_owned()).ok_or("no target")?;
    let expected = cmdb_model::signing::sign(SECRET, "POST", &target, signed.timestamp, &signed.nonce, body);
    if hex::encode(signed.signature) != expected {
        return Err(format!("signature does not verify over {target}"));
    }
    if signed.key_id != key_id {
        return Err(format!("key id {} is not endpoint {key_id}", signed.key_id));
    }
    let idempotency = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).ok_or("no Idempotency-Key")?;
    if idempotency != signed.nonce {
        return Err("Idempotency-Key is not the nonce".to_owned());
    }
    if (chrono::Utc::now().timestamp() - signed.timestamp).abs() > 300 {
        return Err("timestamp out of the window".to_owned());
    }
    Ok(signed.nonce)
}

async fn receive(
    axum::extract::State(shared): axum::extract::State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at_us = chrono::Utc::now().timestamp_micros();
    let key_id = shared.1.lock().expect("lock").clone();
    let mut received = shared.0.lock().expect("lock");
    match check_signature(&headers, &uri, &body, &key_id) {
        Ok(nonce) => {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if body["event_id"] != json!(nonce) {
                received.bad_signatures.push(format!("body event_id {} is not the nonce {nonce}", body["event_id"]));
                return StatusCode::BAD_REQUEST;
            }
            received.receipts.push(Receipt { event_id: nonce, body, at_us });
            StatusCode::NO_CONTENT
        }
        Err(why) => {
            received.bad_signatures.push(why);
            StatusCode::UNAUTHORIZED
        }
    }
}

/// The receiver: listening (and answering) or not listening at all.
struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    running: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Receiver {
    async fn new() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let mut receiver = Receiver { addr, shared: Arc::default(), running: None };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new().route("/hooks/in", axum::routing::post(receive)).with_state(self.shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        self.running = Some((stop, task));
    }

    /// Stops listening and closes every connection: deliveries now fail to connect.
    async fn down(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("receiver stops").expect("join");
        }
    }

    /// Listens again on the same port.
    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("rebind receiver");
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/in?tenant=a%20b&x=1", self.addr)
    }

    fn receipts(&self) -> Vec<Receipt> {
        self.shared.0.lock().expect("lock").receipts.clone()
    }

    fn bad(&self) -> Vec<String> {
        self.shared.0.lock().expect("lock").bad_signatures.clone()
    }
}

/// A cmdb instance: the HTTP server and its webhook dispatcher (killed together).
struct Instance {
    server: TestServer,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Instance {
    async fn start(db: &TestDb, config: &cmdb_server::config::ServerConfig) -> Instance {
        let server = TestServer::start_with(db, config.clone()).await;
        let dispatcher = cmdb_server::webhooks::spawn(
            server.state.db.clone(),
            config.webhooks.clone(),
            server.state.keys.secret_key().clone(),
        );
        Instance { server, dispatcher }
    }

    /// Kills the instance: in-flight deliveries are dropped where they stand (their claims stay
    /// until the lease runs out), as when a process is killed.
    fn kill(self) {
        self.dispatcher.abort();
        drop(self.server);
    }
}

fn webhook_config(db: &TestDb) -> cmdb_server::config::ServerConfig {
    let mut config = test_config(db);
    config.webhooks.timeout_secs = 2;
    config.webhooks.min_backoff_ms = 100;
    config.webhooks.max_backoff_secs = 1;
    config
}

const ASSETS: usize = 20;
const REPORTS_PER_ASSET: usize = 50;

/// Report `index` of host `asset`: a new kernel each time (one change record), and every tenth a
/// failed section (a collection error).
fn nth_report(asset: usize, index: usize) -> Value {
    let mut report = common::at(common::report(&format!("hook-host-{asset:02}")), 0);
    report["sections"]["basic"]["data"]["kernel"] = json!(format!("6.1.{index}"));
    if index % 10 == 9 {
        report["sections"]["raid"] =
            json!({"status": "error", "error": format!("megacli failed ({index})"), "data": null});
    }
    report
}

/// Sends reports `range` of every asset (assets in parallel, each asset's in order, `pace` apart);
/// returns the report ids sent, with (asset index, report index).
async fn send_reports(
    server: &TestServer,
    range: std::ops::Range<usize>,
    pace: Duration,
) -> Vec<(String, usize, usize)> {
    let mut tasks = Vec::new();
    for asset in 0..ASSETS {
        let range = range.clone();
        let base = server.base.clone();
        let (key_id, secret) = server.collector.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut sent = Vec::new();
            for index in range {
                let report = nth_report(asset, index);
                let body = serde_json::to_vec(&report).expect("json");
                let nonce = cmdb_server::auth::random_hex(16);
                let now = chrono::Utc::now().timestamp();
                let header =
                    cmdb_model::signing::authorization(&key_id, &secret, "POST", "/api/v1/reports", now, &nonce, &body);
                let response = http
                    .post(format!("{base}/api/v1/reports"))
                    .header("authorization", header)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("send report");
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                assert_eq!(status, 200, "report refused: {text}");
                sent.push((report["report_id"].as_str().expect("id").to_owned(), asset, index));
                tokio::time::sleep(pace).await;
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.expect("reports task"));
    }
    sent
}

/// Events still queued (not delivered) for any endpoint.
async fn undelivered(db: &cmdb_server::db::Db) -> i64 {
    let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhook_outbox WHERE state <> 'delivered'")
        .fetch_one(db.reader())
        .await
        .expect("count outbox");
    row.0
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn every_event_arrives_in_order_through_an_outage_and_a_restart(backend: Backend) {
    let started = Instant::now();
    let db = TestDb::new(backend).await;
    let config = webhook_config(&db);
    let mut receiver = Receiver::new().await;
    let first = Instance::start(&db, &config).await;

    let server = &first.server;
    let (status, created) = server
        .send_json(
            &server.admin,
            "POST",
            "/api/v1/webhooks",
            &json!({"url": receiver.url(), "secret": SECRET, "events": ["change", "collection_error", "asset", "stocktake_closed"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("secret").is_none(), "the secret is never shown: {created}");
    let endpoint_id = created["id"].as_i64().expect("id");
    *receiver.shared.1.lock().expect("lock") = endpoint_id.to_string();

    // The endpoint's secret is stored sealed, not in the clear.
    let sealed: (String,) = sqlx::query_as("SELECT secret_sealed FROM webhook_endpoints WHERE id = $1")
        .bind(endpoint_id)
        .fetch_one(server.db().reader())
        .await
        .expect("read endpoint");
    assert!(!sealed.0.contains(SECRET) && !sealed.0.is_empty(), "the secret is sealed at rest");
    if backend == Backend::Sqlite {
        for file in ["cmdb.db", "cmdb.db-wal"] {
            let bytes = std::fs::read(db.dir.path().join(file)).unwrap_or_default();
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "{file} holds the secret in the clear"
            );
        }
    }

    // Phase 1: the receiver is up, reports come steadily (20 hosts, each every 100 ms: about
    // 200 a second). Phase 2: it is down (nothing listens) and reports come in a burst. Phase 3:
    // it is back and the backlog drains while cmdb is killed and started again. Phase 4: bursts.
    let steady_pace = Duration::from_millis(100);
    let mut sent = send_reports(server, 0..10, steady_pace).await;
    let steady: BTreeSet<String> = sent.iter().map(|(id, _, _)| id.clone()).collect();
    receiver.down().await;
    sent.extend(send_reports(server, 10..25, Duration::ZERO).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.up().await;
    // Let the dispatcher take some of the backlog in hand, then kill it mid-way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill();
    let second = Instance::start(&db, &config).await;
    let server = &second.server;
    sent.extend(send_reports(server, 25..REPORTS_PER_ASSET, Duration::ZERO).await);
    assert_eq!(sent.len(), ASSETS * REPORTS_PER_ASSET, "1,000 reports, each one change");

    // Wait until nothing is left to deliver.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let left = undelivered(server.db()).await;
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} events still undelivered after 45 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(receiver.bad().is_empty(), "deliveries the receiver refused: {:?}", receiver.bad());
    let receipts = receiver.receipts();
    let report_index: HashMap<&str, (usize, usize)> =
        sent.iter().map(|(id, asset, index)| (id.as_str(), (*asset, *index))).collect();

    // Every event id arrives; a duplicate is the same event (same body) under the same id, and no
    // two ids carry the same content.
    let mut bodies: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut duplicates = 0;
    for receipt in &receipts {
        if let Some(earlier) = bodies.insert(&receipt.event_id, &receipt.body) {
            duplicates += 1;
            assert_eq!(earlier, &receipt.body, "a duplicate of {} differs", receipt.event_id);
        }
    }
    let mut content_ids: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (id, body) in &bodies {
        let content = match body["event"].as_str() {
            Some("change") => format!("change {}", body["changes"][0]["id"]),
            Some("asset") => format!("asset {} {}", body["action"], body["change_ids"]["first"]),
            Some("collection_error") => format!("errors {}", body["report_id"]),
            other => panic!("unexpected event kind {other:?}"),
        };
        content_ids.entry(content).or_default().insert(id);
    }
    for (content, ids) in &content_ids {
        assert_eq!(ids.len(), 1, "{content} arrived under several ids: {ids:?}");
    }
    let count = |kind: &str| bodies.values().filter(|b| b["event"] == json!(kind)).count();
    assert_eq!(count("change"), ASSETS * REPORTS_PER_ASSET, "one change event per report");
    assert_eq!(count("asset"), ASSETS, "one created event per asset");
    assert_eq!(count("collection_error"), ASSETS * REPORTS_PER_ASSET / 10, "one error event per failed report");
    assert!(bodies.values().filter(|b| b["event"] == json!("asset")).all(|b| b["action"] == json!("created")));

    // In order per asset: the events of report k (its change, the asset's creation, its errors)
    // before those of report k + 1.
    let mut last_seen: HashMap<i64, (usize, u8)> = HashMap::new();
    let mut changes_per_event = 0;
    for receipt in &receipts {
        let body = &receipt.body;
        let asset = body["asset_id"].as_i64().expect("asset id");
        let (report_id, rank) = match body["event"].as_str() {
            Some("change") => {
                changes_per_event = changes_per_event.max(body["changes"].as_array().map_or(0, Vec::len));
                (body["changes"][0]["report_id"].as_str().expect("report id").to_owned(), 0)
            }
            Some("asset") => (format!("{}", body["change_ids"]["first"]), 1),
            Some("collection_error") => (body["report_id"].as_str().expect("report id").to_owned(), 2),
            _ => unreachable!(),
        };
        let key = match report_index.get(report_id.as_str()) {
            Some((_, index)) => (*index, rank),
            // The creation event names change ids: it rides with report 0.
            None => (0, rank),
        };
        if let Some(previous) = last_seen.get(&asset) {
            assert!(
                *previous <= key,
                "asset {asset}: event {:?} of report {} arrived after report {}",
                body["event"],
                key.0,
                previous.0
            );
        }
        last_seen.insert(asset, key);
    }
    assert!(changes_per_event > 1, "the first report's event carries all its change records");

    // Lag from commit (the event's occurred_at, stamped in the writing transaction) to receipt.
    let mut steady_lag = Vec::new();
    let mut all_lag = Vec::new();
    let mut first_receipt: BTreeMap<&str, &Receipt> = BTreeMap::new();
    for receipt in &receipts {
        first_receipt.entry(receipt.event_id.as_str()).or_insert(receipt);
    }
    for receipt in first_receipt.values() {
        if receipt.body["event"] != json!("change") {
            continue;
        }
        let occurred = chrono::DateTime::parse_from_rfc3339(receipt.body["occurred_at"].as_str().expect("occurred_at"))
            .expect("rfc3339")
            .timestamp_micros();
        let lag = receipt.at_us - occurred;
        all_lag.push(lag);
        let report_id = receipt.body["changes"][0]["report_id"].as_str().unwrap_or("");
        if steady.contains(report_id) {
            steady_lag.push(lag);
        }
    }
    steady_lag.sort_unstable();
    all_lag.sort_unstable();
    println!(
        "webhooks {backend:?}: {} events delivered ({} receipts, {duplicates} duplicates) in {:.1} s; \
         delivery lag with reports steady (about 200/s) and the receiver up: p50 {:.1} ms, p99 {:.1} ms over {} events; \
         over every event (outage and restart included): p50 {:.1} ms, p99 {:.1} ms",
        bodies.len(),
        receipts.len(),
        started.elapsed().as_secs_f64(),
        percentile(&steady_lag, 50.0),
        percentile(&steady_lag, 99.0),
        steady_lag.len(),
        percentile(&all_lag, 50.0),
        percentile(&all_lag, 99.0),
    );

    // The delivery log holds every attempt: the failed ones of the outage too.
    let (status, _) = server.get_as(&server.viewer, "/api/v1/webhooks").await;
    assert_eq!(status, 403, "webhooks are for admins");
    let (status, listed) = server.get("/api/v1/webhooks").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["enabled"], json!(true));
    assert_eq!(listed["items"][0]["pending"], json!(0));
    assert!(!listed.to_string().contains(SECRET), "GET never shows the secret");
    let (status, log) = server.get(&format!("/api/v1/webhooks/{endpoint_id}/deliveries?limit=1000")).await;
    assert_eq!(status, 200, "{log}");
    let attempts = log["items"].as_array().expect("items");
    assert!(
        attempts.iter().any(|a| a["error"].is_string() && a["status"].is_null()),
        "the outage's failures are logged"
    );
    assert!(attempts.iter().any(|a| a["status"] == json!(204)), "and the deliveries");
    let (status, _) = server.get(&format!("/api/v1/webhooks/{}/deliveries", endpoint_id + 1)).await;
    assert_eq!(status, 404);
    second.kill();
}

async fn an_endpoint_that_never_answers_gives_up_and_shows_on_the_dashboard(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = webhook_config(&db);
    config.webhooks.give_up_after_secs = 3;
    let web = web_support::WebServer::start_with(&db, config.clone()).await;
    let dispatcher =
        cmdb_server::webhooks::spawn(web.db.clone(), config.webhooks.clone(), web.state.keys.secret_key().clone());
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/in", closed.local_addr().expect("addr"));
    drop(closed);

    // Registered through the admin page's form (CSRF-checked).
    let mut admin = web.login("admin").await;
    let page = admin.get("/admin/webhooks").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = web_support::hidden_value(&page.body, "csrf").expect("csrf");
    let refused = admin
        .post_form("/admin/webhooks", &[("url", &url), ("secret", "0123456789abcdef"), ("event_change", "1")])
        .await;
    assert_eq!(refused.status, 403, "no CSRF token, no endpoint: {}", refused.body);
    let short = admin
        .post_form("/admin/webhooks", &[("csrf", &csrf), ("url", &url), ("secret", "short"), ("event_change", "1")])
        .await;
    assert!((400..500).contains(&short.status), "a short secret is refused: {}", short.status);
    let created = admin
        .post_form("/admin/webhooks", &[("csrf", &csrf), ("url", &url), ("secret", SECRET), ("event_change", "1")])
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let mut viewer = web.login("viewer").await;
    assert_eq!(viewer.get("/admin/webhooks").await.status, 403);

    web.ingest(&common::report("expiring-host")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let endpoint = loop {
        let endpoints = cmdb_server::service::webhooks::list(&web.db).await.expect("list");
        if !endpoints[0].enabled {
            break endpoints[0].clone();
        }
        assert!(Instant::now() < deadline, "the endpoint never gave up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = endpoint.disabled_reason.clone().unwrap_or_default();
    assert!(reason.contains("gave up"), "{reason}");
    assert_eq!(endpoint.pending, 1, "the event stays undelivered");
    let log = cmdb_server::service::webhooks::deliveries(&web.db, Some(endpoint.id), 100).await.expect("log");
    assert!(log.len() >= 2 && log.iter().all(|d| d.error.is_some()), "retried, every attempt logged: {log:?}");

    // Shown to admins on the dashboard and the webhooks page; not to viewers.
    let dashboard = admin.get("/").await;
    assert!(
        dashboard.body.contains("webhooks-given-up") && dashboard.body.contains("gave up on event"),
        "{}",
        dashboard.body
    );
    assert!(!viewer.get("/").await.body.contains("webhooks-given-up"));
    assert!(admin.get("/admin/webhooks").await.body.contains("gave up"));

    // A disabled endpoint gets no new events.
    web.ingest(&common::at(common::report("another-host"), 1)).await;
    let queued: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM webhook_outbox").fetch_one(web.db.reader()).await.expect("count");
    assert_eq!(queued.0, 1, "nothing is queued for a disabled endpoint");

    // Deleted through the page: gone with its queue and log; audit-logged.
    let deleted = admin.post_form("/admin/webhooks/delete", &[("csrf", &csrf), ("id", &endpoint.id.to_string())]).await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert!(cmdb_server::service::webhooks::list(&web.db).await.expect("list").is_empty());
    let audit: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE action IN ('webhook.create', 'webhook.delete')")
            .fetch_one(web.db.reader())
            .await
            .expect("audit");
    assert_eq!(audit.0, 2);
    dispatcher.abort();
}

async fn registration_checks_its_input(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let post = |body: Value| {
        let server = &server;
        async move { server.send_json(&server.admin, "POST", "/api/v1/webhooks", &body).await }
    };
    let good = json!({"url": "https://hooks.example/cmdb", "secret": SECRET, "events": ["change"]});
    for (body, pointer) in [
        (json!({"url": "ftp://hooks.example/", "secret": SECRET, "events": ["change"]}), "/url"),
        (json!({"url": "https://", "secret": SECRET, "events": ["change"]}), "/url"),
        (json!({"url": "https://hooks.example/", "secret": "short", "events": ["change"]}), "/secret"),
        (json!({"url": "https://hooks.example/", "secret": SECRET, "events": []}), "/events"),
        (json!({"url": "https://hooks.example/", "secret": SECRET, "events": ["change", "reboot"]}), "/events/1"),
        (json!({"url": "https://hooks.example/", "events": ["change"]}), "/secret"),
    ] {
        let (status, answer) = post(body.clone()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert!(answer.to_string().contains(pointer), "{body} -> {answer} names {pointer}");
    }
    let (status, answer) =
        post(json!({"url": "https://hooks.example/", "secret": SECRET, "events": ["change"], "extra": 1})).await;
    assert!((400..500).contains(&status), "unknown fields are refused: {answer}");
    let (status, _) = server.send_json(&server.viewer, "POST", "/api/v1/webhooks", &good).await;
    assert_eq!(status, 403, "only admins register URLs");
    let (status, created) = post(good).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["events"], json!(["change"]));
    let id = created["id"].as_i64().expect("id");
    let (status, _) =
        server.send_json(&server.admin, "DELETE", &format!("/api/v1/webhooks/{}", id + 100), &json!(null)).await;
    assert_eq!(status, 404);
    let (status, _) = server.send_json(&server.admin, "DELETE", &format!("/api/v1/webhooks/{id}"), &json!(null)).await;
    assert_eq!(status, 204);
    let (_, listed) = server.get("/api/v1/webhooks").await;
    assert_eq!(listed["items"], json!([]));
}

async fn every_kind_of_event_is_delivered(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = webhook_config(&db);
    let receiver = Receiver::new().await;
    let instance = Instance::start(&db, &config).await;
    let server = &instance.server;
    let (status, created) = server
        .send_json(
            &server.admin,
            "POST",
            "/api/v1/webhooks",
            &json!({"url": receiver.url(), "secret": SECRET, "events": ["asset", "stocktake_closed", "collection_error"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    *receiver.shared.1.lock().expect("lock") = created["id"].as_i64().expect("id").to_string();

    let a = server.accept(&common::report("kinds-a")).await["asset_id"].as_i64().expect("a");
    let b = server.accept(&common::report("kinds-b")).await["asset_id"].as_i64().expect("b");
    let mut failing = common::at(common::report("kinds-a"), 1);
    failing["sections"]["raid"] = json!({"status": "error", "error": "megacli failed", "data": null});
    server.accept(&failing).await;
    let admin = &server.admin;
    let (status, body) = server.send_json(admin, "DELETE", &format!("/api/v1/assets/{b}"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.send_json(admin, "POST", &format!("/api/v1/assets/{b}/restore"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        server.send_json(admin, "POST", &format!("/api/v1/assets/{a}/merge"), &json!({"from": b})).await;
    assert_eq!(status, 200, "{body}");
    let (status, opened) =
        server.send_json(admin, "POST", "/api/v1/stocktakes", &json!({"name": "year end", "scope": {}})).await;
    assert_eq!(status, 201, "{opened}");
    let stocktake = opened["id"].as_i64().expect("stocktake id");
    let (status, body) =
        server.send_json(admin, "POST", &format!("/api/v1/stocktakes/{stocktake}/close"), &json!({})).await;
    assert_eq!(status, 200, "{body}");

    let expected = [
        ("asset", Some(a), Some("created")),
        ("asset", Some(b), Some("created")),
        ("collection_error", Some(a), None),
        ("asset", Some(b), Some("deleted")),
        ("asset", Some(b), Some("restored")),
        ("asset", Some(b), Some("merged")),
        ("stocktake_closed", None, None),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let mut got: Vec<(String, Option<i64>, Option<String>)> = receiver
            .receipts()
            .iter()
            .map(|r| {
                let b = &r.body;
                (
                    b["event"].as_str().unwrap_or("").to_owned(),
                    b["asset_id"].as_i64(),
                    b["action"].as_str().map(str::to_owned),
                )
            })
            .collect();
        got.dedup();
        if got.len() >= expected.len() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(receiver.bad().is_empty(), "{:?}", receiver.bad());
    // In order per asset (events about different assets may interleave).
    for subject in [Some(a), Some(b), None] {
        let of = |list: Vec<(String, Option<i64>, Option<String>)>| -> Vec<(String, Option<String>)> {
            list.into_iter().filter(|(_, asset, _)| *asset == subject).map(|(kind, _, action)| (kind, action)).collect()
        };
        let want = of(expected.iter().map(|(k, s, a)| ((*k).to_owned(), *s, a.map(str::to_owned))).collect());
        assert_eq!(of(got.clone()), want, "events of {subject:?}");
    }
    let closed =
        receiver.receipts().into_iter().find(|r| r.body["event"] == json!("stocktake_closed")).expect("closed");
    assert_eq!(closed.body["stocktake_id"], json!(stocktake));
    let errors =
        receiver.receipts().into_iter().find(|r| r.body["event"] == json!("collection_error")).expect("errors");
    assert_eq!(errors.body["errors"], json!([{"section": "raid", "message": "megacli failed"}]));
    instance.kill();
}

/// An endpoint deleted while a delivery to it is in flight: the attempt ends (a timeout here),
/// is logged, and the dispatcher goes on delivering to the others.
async fn an_endpoint_deleted_mid_delivery_does_not_stop_the_others(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = webhook_config(&db);
    // A receiver that accepts connections and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hanging_url = format!("http://{}/in", hanging.local_addr().expect("addr"));
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    let receiver = Receiver::new().await;
    let instance = Instance::start(&db, &config).await;
    let server = &instance.server;
    let register = |url: String| async move {
        let (status, created) = server
            .send_json(
                &server.admin,
                "POST",
                "/api/v1/webhooks",
                &json!({"url": url, "secret": SECRET, "events": ["change"]}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_i64().expect("id")
    };
    let stuck = register(hanging_url).await;
    server.accept(&common::report("mid-delivery-1")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leased: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhook_outbox WHERE lease_until IS NOT NULL")
            .fetch_one(server.db().reader())
            .await
            .expect("count");
        if leased.0 > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the delivery never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) =
        server.send_json(&server.admin, "DELETE", &format!("/api/v1/webhooks/{stuck}"), &json!(null)).await;
    assert_eq!(status, 204);
    let live = register(receiver.url()).await;
    *receiver.shared.1.lock().expect("lock") = live.to_string();
    // The stuck attempt times out (2 s) and is recorded; then a new event must still go out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.accept(&common::report("mid-delivery-2")).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while receiver.receipts().is_empty() {
        assert!(Instant::now() < deadline, "the dispatcher stopped after the deleted endpoint's attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.bad().is_empty(), "{:?}", receiver.bad());
    let logged: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1")
        .bind(stuck)
        .fetch_one(server.db().reader())
        .await
        .expect("count");
    assert_eq!(logged.0, 1, "the deleted endpoint's last attempt is logged");
    // An event a write queued for an endpoint deleted meanwhile is pruned; delivered ones stay
    // for `keep_days`.
    sqlx::query(
        "INSERT INTO webhook_outbox (endpoint_id, event_id, kind, asset_id, created_at, next_attempt_at) \
         VALUES ($1, 'orphan', 'change', 1, 0, 0)",
    )
    .bind(stuck)
    .execute(server.db().writer())
    .await
    .expect("orphan");
    cmdb_server::app::prune(server.db(), &config).await.expect("prune");
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT endpoint_id, state FROM webhook_outbox")
        .fetch_all(server.db().reader())
        .await
        .expect("outbox");
    assert_eq!(rows, vec![(live, "delivered".to_owned())]);
    holder.abort();
    instance.kill();
}

/// Two instances on one PostgreSQL database, both delivering: the claims (`FOR UPDATE SKIP
/// LOCKED`, one undelivered event per endpoint and asset in flight) keep every asset in order and
/// send nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_deliveries_on_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    let config = webhook_config(&db);
    let receiver = Receiver::new().await;
    let one = Instance::start(&db, &config).await;
    let two = Instance::start(&db, &config).await;
    let (status, created) = one
        .server
        .send_json(
            &one.server.admin,
            "POST",
            "/api/v1/webhooks",
            &json!({"url": receiver.url(), "secret": SECRET, "events": ["change"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    *receiver.shared.1.lock().expect("lock") = created["id"].as_i64().expect("id").to_string();
    // Each asset's reports alternate between the instances.
    let mut sent = 0;
    for round in 0..10 {
        let server = if round % 2 == 0 { &one.server } else { &two.server };
        sent += send_reports(server, round..round + 1, Duration::ZERO).await.len();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while undelivered(one.server.db()).await > 0 {
        assert!(Instant::now() < deadline, "events left undelivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.bad().is_empty(), "{:?}", receiver.bad());
    let receipts = receiver.receipts();
    let ids: BTreeSet<&str> = receipts.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(receipts.len(), sent, "every event once: no instance sent one the other had claimed");
    assert_eq!(ids.len(), sent);
    let mut last: HashMap<i64, i64> = HashMap::new();
    for receipt in &receipts {
        let asset = receipt.body["asset_id"].as_i64().expect("asset");
        let first = receipt.body["changes"][0]["id"].as_i64().expect("change id");
        if let Some(previous) = last.insert(asset, first) {
            assert!(previous < first, "asset {asset}: change {first} arrived after {previous}");
        }
    }
    one.kill();
    two.kill();
}

on_both_backends!(
    every_event_arrives_in_order_through_an_outage_and_a_restart,
    an_endpoint_that_never_answers_gives_up_and_shows_on_the_dashboard,
    registration_checks_its_input,
    every_kind_of_event_is_delivered,
    an_endpoint_deleted_mid_delivery_does_not_stop_the_others,
);
