//! Ingestion over real HTTP against real SQLite and PostgreSQL: identity, diff, history,
//! idempotency, staleness, errored sections, scopes, feed, targets, search and business edits.

mod common;

use common::{Backend, TestDb, TestServer, at, report};
use serde_json::{Value, json};

fn asset_id(outcome: &Value) -> i64 {
    outcome["asset_id"].as_i64().expect("asset_id")
}

async fn first_report_creates_an_online_asset(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let used = |server: &TestServer| {
        let (db, key) = (server.state.db.clone(), server.collector.0.clone());
        async move {
            let row = sqlx::query("SELECT last_used_at FROM agent_keys WHERE key_id = $1")
                .bind(key)
                .fetch_one(db.reader())
                .await
                .expect("key row");
            sqlx::Row::try_get::<Option<i64>, _>(&row, 0).expect("last_used_at")
        }
    };
    assert_eq!(used(&server).await, None, "a key never used says so");
    let outcome = server.accept(&report("web-01")).await;
    assert!(used(&server).await.is_some(), "the signed report stamps its key as used");
    assert_eq!(outcome["created"], json!(true));
    assert_eq!(outcome["applied"], json!(true));
    assert_eq!(outcome["matched_by"], Value::Null);
    let id = asset_id(&outcome);
    let asset = server.asset(id).await;
    assert_eq!(asset["status"], "online", "assets first created by a report start online");
    assert_eq!(asset["hostname"], "web-01");
    assert_eq!(asset["sections"]["disk"]["disks"].as_array().map(Vec::len), Some(2));
    let changes = server.changes(id).await;
    assert_eq!(changes.len(), outcome["changes"].as_u64().expect("count") as usize);
    assert!(changes.iter().all(|c| c["source"] == "ssh" && c["report_id"] == outcome["report_id"]));
    assert!(changes.iter().any(|c| c["section"] == "disk" && c["component"] == "32:1" && c["action"] == "added"));
}

async fn unchanged_report_writes_no_change_but_updates_last_seen(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let base = report("web-01");
    let id = asset_id(&server.accept(&base).await);
    let before = server.changes(id).await.len();
    let seen_before = server.asset(id).await["last_seen_at"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let outcome = server.accept(&at(base, 1)).await;
    assert_eq!(outcome["changes"], json!(0));
    assert_eq!(outcome["matched_by"], json!("board_serial"));
    assert_eq!(server.changes(id).await.len(), before);
    assert_ne!(server.asset(id).await["last_seen_at"], seen_before, "last seen moves outside the history");
}

async fn changes_are_recorded_field_by_field(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let base = report("web-01");
    let id = asset_id(&server.accept(&base).await);
    let mut next = at(base, 1);
    next["sections"]["disk"]["data"]["disks"] = json!([
        {"slot": "32:0", "capacity_bytes": 600_000_000_000u64, "model": "ST600MM0006", "sn": "D0", "pd_type": "SAS", "media": "hdd", "vendor": "SEAGATE", "firmware": "LS08"},
        {"slot": "32:2", "capacity_bytes": 480_103_981_056u64, "model": "MZ7KM480", "sn": "S2", "pd_type": "SATA", "media": "ssd", "vendor": "ATA", "firmware": "GXM1"}
    ]);
    next["sections"]["cpu"]["data"]["cpu_count"] = json!(16);
    let outcome = server.accept(&next).await;
    assert_eq!(outcome["changes"], json!(5));
    let changes = server.changes(id).await;
    let new: Vec<&Value> = changes.iter().filter(|c| c["report_id"] == outcome["report_id"]).collect();
    let find = |section: &str, component: Option<&str>, path: &str| {
        new.iter()
            .find(|c| c["section"] == section && c["component"].as_str() == component && c["path"] == path)
            .copied()
            .unwrap_or_else(|| panic!("no change {section} {component:?} {path} in {new:?}"))
    };
    let capacity = find("disk", Some("32:0"), "/capacity_bytes");
    assert_eq!(
        (capacity["old"].clone(), capacity["new"].clone()),
        (json!(299_999_999_000u64), json!(600_000_000_000u64))
    );
    assert_eq!(capacity["action"], "changed");
    assert_eq!(capacity["summary"], "disk 32:0 capacity changed from 300 GB to 600 GB");
    assert_eq!(find("disk", Some("32:0"), "/model")["new"], "ST600MM0006");
    assert_eq!(find("disk", Some("32:1"), "")["action"], "removed");
    assert_eq!(find("disk", Some("32:2"), "")["action"], "added");
    assert_eq!(find("cpu", None, "/cpu_count")["old"], json!(8));
    assert!(new.iter().all(|c| c["collected_at"].is_string() && c["recorded_at"].is_string()));
}

async fn repeated_report_id_returns_the_first_outcome(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let base = report("web-01");
    let first = server.accept(&base).await;
    let id = asset_id(&first);
    let count = server.changes(id).await.len();
    // Same id, different content: still the first outcome, nothing written.
    let mut again = base.clone();
    again["sections"]["cpu"]["data"]["cpu_count"] = json!(99);
    let second = server.accept(&again).await;
    assert_eq!(first, second);
    assert_eq!(server.changes(id).await.len(), count);
    assert_eq!(server.asset(id).await["sections"]["cpu"]["cpu_count"], json!(8));
}

async fn stale_reports_are_acknowledged_not_applied(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let base = report("web-01");
    let id = asset_id(&server.accept(&base).await);
    let mut old = at(base, -3600);
    old["sections"]["cpu"]["data"]["cpu_count"] = json!(1);
    let outcome = server.accept(&old).await;
    assert_eq!(outcome["applied"], json!(false));
    assert_eq!(outcome["asset_id"], json!(id));
    assert_eq!(server.asset(id).await["sections"]["cpu"]["cpu_count"], json!(8));
}

async fn errored_and_missing_sections_leave_data_alone(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let base = report("web-01");
    let id = asset_id(&server.accept(&base).await);
    let mut failed = at(base.clone(), 1);
    failed["sections"]["disk"] = json!({"status": "error", "error": "MegaCli: command not found", "data": null});
    failed["sections"].as_object_mut().expect("sections").remove("memory");
    let outcome = server.accept(&failed).await;
    assert_eq!(outcome["changes"], json!(0), "a failed probe must not remove disks");
    let asset = server.asset(id).await;
    assert_eq!(asset["sections"]["disk"]["disks"].as_array().map(Vec::len), Some(2));
    assert_eq!(asset["sections"]["memory"]["modules"].as_array().map(Vec::len), Some(2));
    let (status, errors) = server.get(&format!("/api/v1/errors?asset_id={id}")).await;
    assert_eq!(status, 200);
    assert_eq!(errors["items"][0]["section"], "disk");
    assert_eq!(errors["items"][0]["message"], "MegaCli: command not found");

    let mut empty = at(base, 2);
    empty["sections"]["disk"]["data"]["disks"] = json!([]);
    let outcome = server.accept(&empty).await;
    assert_eq!(outcome["changes"], json!(2), "an ok section with an empty list removes the components");
    assert_eq!(server.asset(id).await["sections"]["disk"]["disks"], json!([]));
}

async fn renames_keep_the_asset(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let mut base = report("web-01");
    base["sections"]["board"]["data"]["sn"] = json!(null);
    base["host"]["machine_id"] = json!("0123456789abcdef0123456789abcdef");
    let id = asset_id(&server.accept(&base).await);
    let mut renamed = at(base.clone(), 1);
    renamed["host"]["hostname"] = json!("web-01-new");
    renamed["host"]["previous_hostname"] = json!("web-01");
    renamed["host"]["machine_id"] = json!(null);
    renamed["sections"]["basic"]["data"]["hostname"] = json!("web-01-new");
    let outcome = server.accept(&renamed).await;
    assert_eq!(outcome["asset_id"], json!(id));
    assert_eq!(outcome["matched_by"], json!("previous_hostname"));
    let changes = server.changes(id).await;
    assert!(
        changes.iter().any(|c| c["section"] == "host" && c["path"] == "/hostname" && c["new"] == "web-01-new"),
        "the rename is a change record"
    );
    assert_eq!(server.asset(id).await["hostname"], "web-01-new");
    // The machine id still identifies it after another rename without previous_hostname.
    let mut again = at(renamed, 2);
    again["host"]["hostname"] = json!("web-01-newer");
    again["host"]["previous_hostname"] = json!(null);
    again["host"]["machine_id"] = json!("0123456789abcdef0123456789abcdef");
    let outcome = server.accept(&again).await;
    assert_eq!((outcome["asset_id"].clone(), outcome["matched_by"].clone()), (json!(id), json!("machine_id")));
}

async fn identity_rules(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    // A host name reused on new hardware is a new asset.
    let mut old = report("db-01");
    old["sections"]["board"]["data"]["uuid"] = json!("4C4C4544-0057-4610-8038-B2C04F503832");
    let old_id = asset_id(&server.accept(&old).await);
    let mut new_hw = at(report("db-01"), 1);
    new_hw["sections"]["board"]["data"]["sn"] = json!("OTHER-SN");
    new_hw["sections"]["board"]["data"]["uuid"] = json!("5C4C4544-0057-4610-8038-B2C04F503832");
    let outcome = server.accept(&new_hw).await;
    assert_ne!(asset_id(&outcome), old_id);
    assert_eq!(outcome["created"], json!(true));
    // The same board under another name matches by UUID, case-insensitively.
    let mut same = at(old.clone(), 2);
    same["host"]["hostname"] = json!("db-01-moved");
    same["sections"]["board"]["data"]["uuid"] = json!("4c4c4544-0057-4610-8038-b2c04f503832");
    let outcome = server.accept(&same).await;
    assert_eq!((asset_id(&outcome), outcome["matched_by"].clone()), (old_id, json!("board_uuid")));
    // Placeholder serials and UUIDs never merge two hosts.
    let mut ids = Vec::new();
    for name in ["p-1", "p-2"] {
        let mut r = report(name);
        r["sections"]["board"]["data"]["sn"] = json!("To Be Filled By O.E.M.");
        r["sections"]["board"]["data"]["uuid"] = json!("00000000-0000-0000-0000-000000000000");
        ids.push(asset_id(&server.accept(&r).await));
    }
    assert_ne!(ids[0], ids[1]);
    // A retired asset is never matched again.
    let (status, _) = server
        .send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{}", ids[0]), &json!({"status": "retired"}))
        .await;
    assert_eq!(status, 200);
    let back = server.accept(&at(report("p-1"), 3)).await;
    assert_ne!(asset_id(&back), ids[0]);
    assert_eq!(back["created"], json!(true));
}

async fn host_keys_are_bound_to_their_asset(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (key_id, secret) = cmdb_server::auth::create_agent_key(
        server.state.db.writer(),
        server.state.keys.secret_key(),
        cmdb_server::auth::KeyScope::Host,
        "h",
        None,
    )
    .await
    .expect("key");
    let send = |r: Value| {
        let body = serde_json::to_vec(&r).expect("json");
        let (k, s) = (key_id.clone(), secret.clone());
        let server = &server;
        async move { server.signed_with(&k, &s, "POST", "/api/v1/reports", &body, "application/json").await }
    };
    let (status, first) = send(report("own-01")).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = send(at(report("own-01"), 1)).await;
    assert_eq!((status, again["asset_id"].clone()), (200, first["asset_id"].clone()));
    let before = server.get("/api/v1/assets").await.1["total"].clone();
    let (status, body) = send(at(report("someone-else"), 2)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert_eq!(server.get("/api/v1/assets").await.1["total"], before, "nothing was written");
}

async fn feed_and_targets_and_search(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let a = asset_id(&server.accept(&report("prod-web-01")).await);
    let b = asset_id(&server.accept(&report("prod-db-01")).await);
    // Feed: paging with small pages sees every change once, in order. On PostgreSQL the feed may
    // hold back changes while a write transaction of this database is still running (the
    // server's own background jobs included), so a consumer polls: delay is allowed, loss and
    // duplicates are not.
    let total = server.changes(a).await.len() + server.changes(b).await.len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/changes?limit=7&after={c}"),
            None => "/api/v1/changes?limit=7".to_owned(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            if seen.len() >= total || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        seen.extend(items.iter().map(|c| c["id"].as_i64().expect("id")));
        cursor = page["next"].as_str().map(str::to_owned);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!((seen.len(), sorted.len()), (total, total), "every change exactly once");

    // Search by host name, a part of it, IP, MAC, serial, model.
    for (q, expect) in [
        ("prod-web-01", vec![a]),
        ("web", vec![a]),
        ("prod", vec![a, b]),
        ("10.0.0.5", vec![a, b]),
        ("00:1C:42:A5:57:7A", vec![a, b]),
        ("SN-prod-db-01", vec![b]),
        ("st300mm", vec![a, b]),
        ("nothing-like-this", vec![]),
    ] {
        let (status, page) = server.get(&format!("/api/v1/assets?q={q}&sort=id")).await;
        assert_eq!(status, 200);
        let ids: Vec<i64> =
            page["items"].as_array().expect("items").iter().map(|i| i["id"].as_i64().expect("id")).collect();
        assert_eq!(ids, expect, "search {q:?}");
    }

    // Targets: a host registered by hand as online, never seen, is a target; reporting removes it.
    let (status, registered) = server
        .send_json(
            &server.admin,
            "POST",
            "/api/v1/assets",
            &json!({"hostname": "new-01", "status": "online", "manage_address": "10.9.9.9", "ssh_port": 2222}),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let (status, targets) = server.signed("GET", "/api/v1/collect-targets?mode=ssh", b"").await;
    assert_eq!(status, 200, "{targets}");
    let list = targets["targets"].as_array().expect("targets");
    assert_eq!(list.len(), 1, "{targets}");
    assert_eq!(list[0]["hostname"], "new-01");
    assert_eq!(list[0]["manage_address"], "10.9.9.9");
    assert_eq!(list[0]["ssh_port"], 2222);
    assert_eq!(list[0]["salt_minion_id"], "new-01");
    let outcome = server.accept(&report("new-01")).await;
    assert_eq!(outcome["asset_id"], registered["id"]);
    assert_eq!(outcome["matched_by"], json!("hostname"));
    let (_, targets) = server.signed("GET", "/api/v1/collect-targets", b"").await;
    assert_eq!(targets["targets"], json!([]));
    let since = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    let (_, targets) = server.signed("GET", &format!("/api/v1/collect-targets?since={since}"), b"").await;
    assert_eq!(targets["targets"].as_array().map(Vec::len), Some(3));
}

async fn business_edits_are_history(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let id = asset_id(&server.accept(&report("web-01")).await);
    let path = format!("/api/v1/assets/{id}");
    let (status, body) = server.send_json(&server.viewer, "PATCH", &path, &json!({"owner": "ops"})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .send_json(&server.admin, "PATCH", &path, &json!({"owner": "ops", "tags": ["db", "prod"], "idc": "SH-1"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["business"]["owner"], "ops");
    assert_eq!(body["idc"], "SH-1");
    let changes = server.changes(id).await;
    let edit = changes.iter().find(|c| c["path"] == "/owner").expect("owner change");
    assert_eq!(edit["source"], "user:test-admin");
    assert_eq!(edit["section"], "business");
    // Collection never overwrites business fields.
    server.accept(&at(report("web-01"), 5)).await;
    assert_eq!(server.asset(id).await["business"]["owner"], "ops");
    let (status, body) = server.send_json(&server.admin, "PATCH", &path, &json!({"status": "exploded"})).await;
    assert_eq!((status, body["pointer"].clone()), (422, json!("/status")));
    let (status, page) = server.get("/api/v1/assets?tag=prod").await;
    assert_eq!((status, page["total"].clone()), (200, json!(1)));
    // Once the IDC list is managed, the API refuses values outside it, as the UI and import do.
    let (status, body) = server.send_json(&server.admin, "POST", "/api/v1/lists/idc", &json!({"value": "SH-1"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.send_json(&server.admin, "PATCH", &path, &json!({"idc": "NOWHERE"})).await;
    assert_eq!((status, body["pointer"].clone()), (422, json!("/idc")), "{body}");
    let (status, _) = server.send_json(&server.admin, "PATCH", &path, &json!({"owner": "dba"})).await;
    assert_eq!(status, 200, "fields the lists do not govern stay editable");
    let (status, body) =
        server.send_json(&server.admin, "POST", "/api/v1/assets", &json!({"hostname": "x-01", "idc": "NOWHERE"})).await;
    assert_eq!((status, body["pointer"].clone()), (422, json!("/idc")), "{body}");
}

async fn health_and_auth_edges(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    for path in ["/healthz", "/readyz"] {
        let response = server.http.get(format!("{}{path}", server.base)).send().await.expect("get");
        assert_eq!(response.status(), 200);
    }
    let (status, body) = server.get_as("cmdb_nope", "/api/v1/assets").await;
    assert_eq!((status, body["error"].clone()), (401, json!("unauthorized")));
    let (status, _) = server.get("/api/v1/nothing").await;
    assert_eq!(status, 404);
    server.accept(&report("m-01")).await;
    let text =
        server.http.get(format!("{}/metrics", server.base)).send().await.expect("get").text().await.expect("text");
    assert!(text.contains("cmdb_reports_total"), "{text}");
    assert!(text.contains("cmdb_ingest_seconds_bucket"), "{text}");
}

/// Search terms are maintained by difference: after reports that change an address, a serial
/// and then only a figure, the stored terms are exactly the terms of the stored state, the old
/// address finds nothing and the new one finds the host.
async fn search_terms_follow_the_state(backend: Backend) {
    use sqlx::Row;
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let id = asset_id(&server.accept(&report("terms-01")).await);
    let mut moved = at(report("terms-01"), 1);
    moved["sections"]["nic"]["data"]["interfaces"][0]["ipv4"] = json!(["10.9.9.9/24"]);
    moved["sections"]["disk"]["data"]["disks"][1]["sn"] = json!("D1-REPLACED");
    server.accept(&moved).await;
    let mut figure = at(moved.clone(), 2);
    figure["sections"]["cpu"]["data"]["cpu_count"] = json!(16);
    server.accept(&figure).await;

    let search = |q: &str| format!("/api/v1/assets?q={q}");
    assert_eq!(server.get(&search("10.0.0.5")).await.1["total"], 0, "the old address is gone");
    assert_eq!(server.get(&search("10.9.9.9")).await.1["items"][0]["id"], id);
    assert_eq!(server.get(&search("D1-REPLACED")).await.1["items"][0]["id"], id);

    let mut conn = server.state.db.reader().acquire().await.expect("conn");
    let state = cmdb_server::store::load_state(&mut conn, id).await.expect("state");
    let stored: std::collections::BTreeSet<String> = sqlx::query("SELECT term FROM search_terms WHERE asset_id = $1")
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .expect("terms")
        .iter()
        .map(|r| r.try_get::<String, _>(0).expect("term"))
        .collect();
    assert_eq!(stored, cmdb_server::store::summary::search_terms(&state));
}

on_both_backends!(
    search_terms_follow_the_state,
    first_report_creates_an_online_asset,
    unchanged_report_writes_no_change_but_updates_last_seen,
    changes_are_recorded_field_by_field,
    repeated_report_id_returns_the_first_outcome,
    stale_reports_are_acknowledged_not_applied,
    errored_and_missing_sections_leave_data_alone,
    renames_keep_the_asset,
    identity_rules,
    host_keys_are_bound_to_their_asset,
    feed_and_targets_and_search,
    business_edits_are_history,
    health_and_auth_edges,
);
