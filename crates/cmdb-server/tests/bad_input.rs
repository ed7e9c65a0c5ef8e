//! A corpus of bad requests: each gets a 4xx with a JSON reason (never a 5xx or a panic), and the
//! database is byte-for-byte unchanged afterwards.

mod common;

use common::{Backend, TestDb, TestServer, report};
use serde_json::{Value, json};
use sqlx::Row;

/// Row counts and a fingerprint of every table a request could write.
async fn snapshot(server: &TestServer) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for table in [
        "assets",
        "asset_sections",
        "components",
        "changes",
        "reports",
        "nonces",
        "collection_errors",
        "search_terms",
        "agent_keys",
    ] {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(server.state.db.reader())
            .await
            .expect("count");
        out.push((table.to_owned(), row.try_get::<i64, _>(0).expect("count")));
    }
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT), CAST(COALESCE(MAX(last_seen_at), 0) AS BIGINT) FROM assets",
    )
    .fetch_one(server.state.db.reader())
    .await
    .expect("fingerprint");
    out.push(("assets.version".to_owned(), row.try_get::<i64, _>(0).expect("sum")));
    out.push(("assets.last_seen_at".to_owned(), row.try_get::<i64, _>(1).expect("max")));
    out
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// None: sign correctly with the collector key; Some(header): send this Authorization.
    authorization: Option<String>,
    /// Sign this instead of the body sent (tampering).
    signed_body: Option<Vec<u8>>,
    expect: u16,
    pointer: Option<&'static str>,
}

fn case(name: &'static str, body: Vec<u8>, expect: u16) -> Case {
    Case {
        name,
        method: "POST",
        path: "/api/v1/reports",
        content_type: "application/json",
        body,
        authorization: None,
        signed_body: None,
        expect,
        pointer: None,
    }
}

fn with(mutate: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut doc = report("bad-01");
    mutate(&mut doc);
    serde_json::to_vec(&doc).expect("json")
}

fn invalid(name: &'static str, pointer: &'static str, mutate: impl FnOnce(&mut Value)) -> Case {
    Case { pointer: Some(pointer), ..case(name, with(mutate), 422) }
}

fn nested(depth: usize) -> Vec<u8> {
    let mut doc = report("bad-01");
    let mut inner = json!(1);
    for _ in 0..depth {
        inner = json!({ "a": inner });
    }
    doc["sections"]["deep"] = json!({"status": "ok", "data": inner});
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn corpus(key_id: &str, secret: &str) -> Vec<Case> {
    let now = chrono::Utc::now().timestamp();
    let good = with(|_| {});
    let sign = |key: &str, secret: &str, ts: i64, method: &str, target: &str, body: &[u8]| {
        cmdb_model::signing::authorization(key, secret, method, target, ts, &cmdb_server::auth::random_hex(16), body)
    };
    let auth = |name, header: String| Case { authorization: Some(header), ..case(name, good.clone(), 401) };
    let mut cases = vec![
        auth("no authorization header", String::new()),
        auth("bearer token instead of a signature", "Bearer cmdb_0000".to_owned()),
        auth("wrong scheme", "AWS4-HMAC-SHA256 Credential=x".to_owned()),
        auth("parameters missing", format!("CMDB-HMAC-SHA256 KeyId={key_id}, Timestamp={now}")),
        auth(
            "signature not hex",
            format!(
                "CMDB-HMAC-SHA256 KeyId={key_id}, Timestamp={now}, Nonce=00112233445566778899aabbccddeeff, Signature=zz"
            ),
        ),
        auth("wrong secret", sign(key_id, "not-the-secret", now, "POST", "/api/v1/reports", &good)),
        auth("timestamp an hour old", sign(key_id, secret, now - 3600, "POST", "/api/v1/reports", &good)),
        auth("timestamp an hour ahead", sign(key_id, secret, now + 3600, "POST", "/api/v1/reports", &good)),
        auth("unknown key id", sign("ak_doesnotexist", secret, now, "POST", "/api/v1/reports", &good)),
        auth("signed for another path", sign(key_id, secret, now, "POST", "/api/v1/reports?x=1", &good)),
        auth("signed for another method", sign(key_id, secret, now, "PUT", "/api/v1/reports", &good)),
        Case {
            signed_body: Some(with(|d| d["host"]["hostname"] = json!("other"))),
            ..case("tampered body", good.clone(), 401)
        },
        case("empty body", Vec::new(), 400),
        case("truncated JSON", b"{".to_vec(), 400),
        case("not JSON at all", b"hostname=web-01".to_vec(), 400),
        case("trailing garbage", [good.clone(), b" {}".to_vec()].concat(), 400),
        case("invalid UTF-8", b"\xff\xfe\x00garbage".to_vec(), 400),
        case(
            "invalid UTF-8 inside a string",
            [b"{\"schema\": 1, \"x\": \"".to_vec(), vec![0xc3, 0x28], b"\"}".to_vec()].concat(),
            400,
        ),
        case("byte order mark", [b"\xef\xbb\xbf".to_vec(), good.clone()].concat(), 400),
        case("NaN literal", b"{\"schema\": NaN}".to_vec(), 400),
        case("deep array nesting", [vec![b'['; 100_000], vec![b']'; 100_000]].concat(), 400),
        case("deep object nesting in an external section", nested(300), 400),
        case("array instead of object", b"[]".to_vec(), 422),
        case("null document", b"null".to_vec(), 422),
        case("number document", b"42".to_vec(), 422),
        case("only schema", br#"{"schema":1}"#.to_vec(), 422),
        invalid("schema as string", "/schema", |d| d["schema"] = json!("one")),
        invalid("schema 2", "/schema", |d| d["schema"] = json!(2)),
        invalid("report_id as number", "/report_id", |d| d["report_id"] = json!(12)),
        invalid("report_id not a uuid", "/report_id", |d| d["report_id"] = json!("not-a-uuid")),
        invalid("collected_at not RFC 3339", "/collected_at", |d| d["collected_at"] = json!("yesterday")),
        invalid("unknown agent mode", "/agent/mode", |d| d["agent"]["mode"] = json!("telnet")),
        invalid("host without hostname", "/host", |d| {
            d["host"].as_object_mut().map(|h| h.remove("hostname"));
        }),
        invalid("empty hostname", "/host/hostname", |d| d["host"]["hostname"] = json!("")),
        invalid("hostname too long", "/host/hostname", |d| d["host"]["hostname"] = json!("h".repeat(300))),
        invalid("hostname with control characters", "/host/hostname", |d| d["host"]["hostname"] = json!("web\n01")),
        invalid("sections not an object", "/sections", |d| d["sections"] = json!([1, 2])),
        invalid("unknown section status", "/sections/cpu/status", |d| d["sections"]["cpu"]["status"] = json!("maybe")),
        invalid("ok section without data", "/sections/cpu/data", |d| d["sections"]["cpu"] = json!({"status": "ok"})),
        invalid("disks not a list", "/sections/disk/data/disks", |d| {
            d["sections"]["disk"]["data"]["disks"] = json!("sda")
        }),
        invalid("capacity as a string", "/sections/disk/data/disks/0/capacity_bytes", |d| {
            d["sections"]["disk"]["data"]["disks"][0]["capacity_bytes"] = json!("2 TB")
        }),
        invalid("negative capacity", "/sections/disk/data/disks/0/capacity_bytes", |d| {
            d["sections"]["disk"]["data"]["disks"][0]["capacity_bytes"] = json!(-1)
        }),
        invalid("fractional cpu count", "/sections/cpu/data/cpu_count", |d| {
            d["sections"]["cpu"]["data"]["cpu_count"] = json!(1.5)
        }),
        invalid("capacity beyond u64", "/sections/disk/data/disks/0/capacity_bytes", |d| {
            d["sections"]["disk"]["data"]["disks"][0]["capacity_bytes"] = json!(1e30)
        }),
        invalid("duplicate disk slots", "/sections/disk/data/disks/1/slot", |d| {
            d["sections"]["disk"]["data"]["disks"][1]["slot"] = json!("32:0")
        }),
        invalid("disk without slot", "/sections/disk/data/disks/0", |d| {
            d["sections"]["disk"]["data"]["disks"][0].as_object_mut().map(|o| o.remove("slot"));
        }),
        invalid("reserved section name", "/sections/host", |d| {
            d["sections"]["host"] = json!({"status": "ok", "data": {}})
        }),
        invalid("malformed section name", "/sections/Bad Name", |d| {
            d["sections"]["Bad Name"] = json!({"status": "ok", "data": {}})
        }),
        invalid("external data is a list", "/sections/raid/data", |d| {
            d["sections"]["raid"] = json!({"status": "ok", "data": [1]})
        }),
        invalid("unknown top-level field", "/colour", |d| d["colour"] = json!("red")),
        invalid("unknown field in cpu data", "/sections/cpu/data/cores", |d| {
            d["sections"]["cpu"]["data"]["cores"] = json!(8)
        }),
        invalid("ipv4 not a list", "/sections/nic/data/interfaces/0/ipv4", |d| {
            d["sections"]["nic"]["data"]["interfaces"][0]["ipv4"] = json!("10.0.0.5/24")
        }),
        Case { content_type: "text/plain", ..case("text/plain content type", good.clone(), 415) },
        Case { content_type: "", ..case("no content type", good.clone(), 415) },
        Case { content_type: "application/xml", ..case("XML content type", good.clone(), 415) },
        case("5 MiB body", [b"{\"a\":\"".to_vec(), vec![b'x'; 5 * 1024 * 1024], b"\"}".to_vec()].concat(), 413),
        Case {
            method: "GET",
            path: "/api/v1/collect-targets",
            authorization: Some(format!("CMDB-HMAC-SHA256 KeyId={key_id}")),
            ..case("targets with a broken signature", Vec::new(), 401)
        },
        Case { path: "/api/asset", ..case("legacy endpoint while disabled", good.clone(), 404) },
        Case { method: "DELETE", path: "/api/v1/reports", ..case("wrong method", good.clone(), 405) },
    ];
    for c in &mut cases {
        if c.name == "no authorization header" {
            c.authorization = Some(String::new());
        }
    }
    cases
}

async fn bad_requests_change_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    // Something stored, so "unchanged" is meaningful.
    server.accept(&report("stored-01")).await;
    let (key_id, secret) = server.collector.clone();
    let cases = corpus(&key_id, &secret);
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let before = snapshot(&server).await;
    // A fresh connection per case: after refusing an oversized body the server closes the
    // connection, and a pooled client could send the next case on it as it closes.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    for c in cases {
        let url = format!("{}{}", server.base, c.path);
        let mut request = http.request(c.method.parse().expect("method"), url).body(c.body.clone());
        if !c.content_type.is_empty() {
            request = request.header("content-type", c.content_type);
        }
        let authorization = match &c.authorization {
            Some(header) => header.clone(),
            None => cmdb_model::signing::authorization(
                &key_id,
                &secret,
                c.method,
                c.path,
                chrono::Utc::now().timestamp(),
                &cmdb_server::auth::random_hex(16),
                c.signed_body.as_deref().unwrap_or(&c.body),
            ),
        };
        if !authorization.is_empty() {
            request = request.header("authorization", authorization);
        }
        let (status, body) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            // A server may close the connection on an oversize body instead of answering.
            Err(e) if c.expect == 413 => (413, e.to_string()),
            Err(e) => panic!("{}: request failed: {e}", c.name),
        };
        assert_eq!(status, c.expect, "{}: {body}", c.name);
        if c.expect != 405 {
            let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            assert!(parsed["error"].is_string() && parsed["message"].is_string(), "{}: body {body}", c.name);
            if let Some(pointer) = c.pointer {
                assert_eq!(parsed["pointer"], json!(pointer), "{}: {body}", c.name);
            }
        }
        assert_eq!(snapshot(&server).await, before, "{} changed the database", c.name);
    }
    // A replayed request: the first one writes, the replay is refused and writes nothing.
    let body = serde_json::to_vec(&report("replay-01")).expect("json");
    let header = cmdb_model::signing::authorization(
        &key_id,
        &secret,
        "POST",
        "/api/v1/reports",
        chrono::Utc::now().timestamp(),
        &cmdb_server::auth::random_hex(16),
        &body,
    );
    let send = || {
        server
            .http
            .post(format!("{}/api/v1/reports", server.base))
            .header("content-type", "application/json")
            .header("authorization", header.clone())
            .body(body.clone())
            .send()
    };
    assert_eq!(send().await.expect("first").status(), 200);
    let after_first = snapshot(&server).await;
    assert_eq!(send().await.expect("replay").status(), 401);
    assert_eq!(snapshot(&server).await, after_first, "a replayed request wrote something");
    // A revoked key is refused.
    assert!(cmdb_server::admin::revoke_key(&server.state.db, &key_id).await.expect("revoke"));
    server.state.keys.clear();
    let (status, _) = server.report(&report("revoked-01")).await;
    assert_eq!(status, 401);
    assert_eq!(snapshot(&server).await, after_first);
}

/// A misspelt or unknown query parameter is a 400 that names it, never a 200 that ignores the
/// filter; the filters the API documents work: `asset_id`, `from`, `to` on the change feed and an
/// asset's changes, and a change CSV needs no `as_of` when `from`/`to` are given.
async fn unknown_query_parameters_are_refused(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let web = server.accept(&report("web-01")).await["asset_id"].as_i64().expect("id");
    let db01 = server.accept(&report("db-01")).await["asset_id"].as_i64().expect("id");
    // Recorded ten minutes ago: exports read up to 120 s before now.
    common::age_history(&server.state.db, 600).await;
    for path in [
        "/api/v1/assets?bogus=1".to_owned(),
        format!("/api/v1/changes?assetid={web}"),
        "/api/v1/audit/assets?as_of=2026-01-01&owner=x&colour=red".to_owned(),
        format!("/api/v1/assets/{web}?verbose=1"),
    ] {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let name = path.rsplit('&').next().and_then(|p| p.rsplit('?').next()).and_then(|p| p.split('=').next());
        let error = body["message"].as_str().unwrap_or_default();
        assert!(error.contains(&format!("`{}`", name.unwrap_or("?"))), "{path}: the error names it: {body}");
    }
    // The feed filtered by asset holds only that asset's changes; by a future day, none.
    let (status, body) = server.get(&format!("/api/v1/changes?asset_id={web}&limit=1000")).await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().expect("items");
    assert!(!items.is_empty() && items.iter().all(|c| c["asset_id"] == web), "{body}");
    let (_, all) = server.get("/api/v1/changes?limit=1000").await;
    assert!(all["items"].as_array().expect("items").iter().any(|c| c["asset_id"] == db01));
    let today = (chrono::Utc::now() - chrono::Duration::seconds(600)).date_naive();
    let tomorrow = today.succ_opt().expect("tomorrow");
    let (status, body) = server.get(&format!("/api/v1/changes?from={tomorrow}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(0), "nothing recorded tomorrow");
    let (status, body) = server.get(&format!("/api/v1/assets/{web}/changes?from={today}&to={today}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(items.len()), "today holds all of web-01's changes");
    let (status, body) = server.get(&format!("/api/v1/assets/{web}/changes?to={}", today.pred_opt().expect("y"))).await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    // The change log's other filters: section, several actions, source.
    let (status, body) = server.get(&format!("/api/v1/changes?asset_id={web}&section=disk&action=added,removed")).await;
    assert_eq!(status, 200, "{body}");
    let disk = body["items"].as_array().expect("items");
    assert!(!disk.is_empty() && disk.iter().all(|c| c["section"] == "disk" && c["action"] == "added"), "{body}");
    let (status, body) = server.get("/api/v1/changes?source=user").await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(0)), "no person edited anything: {body}");
    let (status, body) = server.get("/api/v1/changes?action=moved").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = server.get("/api/v1/changes?from=yesterday").await;
    assert_eq!(status, 400, "a date that does not parse: {body}");
    // The change CSV with only from/to, then one asset's changes only.
    let hour_ago = urlencoding_instant(chrono::Utc::now() - chrono::Duration::hours(1));
    let text = csv_text(&server, &format!("/api/v1/audit/changes.csv?from={hour_ago}")).await;
    assert!(text.lines().count() > items.len(), "header and every change of today: {text}");
    let text = csv_text(&server, &format!("/api/v1/audit/changes.csv?from={hour_ago}&asset_id={web}")).await;
    assert_eq!(text.lines().count(), items.len() + 1, "header and web-01's changes only: {text}");
    // The feed finds an asset by part of its name.
    let (status, body) = server.get("/api/v1/changes?asset=eb-0&limit=1000").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(items.len()), "web-01 by part of its name");
}

/// The body of a 200 answer to `path` (as the admin).
async fn csv_text(server: &TestServer, path: &str) -> String {
    let response =
        server.http.get(format!("{}{path}", server.base)).bearer_auth(&server.admin).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.text().await.expect("body")
}

/// An instant as a query value (`+` would read as a space).
fn urlencoding_instant(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

on_both_backends!(bad_requests_change_nothing, unknown_query_parameters_are_refused);
