//! The asset record an audit needs: asset tags, custom fields (the finance set), soft delete and
//! restore, merge, and the one duplicate rule. Every operation is history: after each one,
//! replaying every asset's changes rebuilds its stored state.

mod common;

use chrono::Utc;
use cmdb_server::service::asof;
use cmdb_server::service::assets::ListQuery;
use cmdb_server::service::time::AsOf;
use common::{Backend, TestDb, TestServer, at, report};
use serde_json::{Value, json};

/// Replaying every asset's history rebuilds its stored state.
/// The text of a CSV export, fetched as the admin.
async fn export_csv(server: &TestServer, path: &str) -> String {
    let response = server.http.get(format!("{}{path}", server.base)).bearer_auth(&server.admin).send().await;
    response.expect("csv").text().await.expect("text")
}

async fn register(server: &TestServer, fields: Value) -> i64 {
    let (status, body) = server.send_json(&server.admin, "POST", "/api/v1/assets", &fields).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().expect("id")
}

async fn patch(server: &TestServer, id: i64, body: Value) -> (u16, Value) {
    server.send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{id}"), &body).await
}

fn ids(list: &Value) -> Vec<i64> {
    list["items"].as_array().expect("items").iter().filter_map(|i| i["id"].as_i64()).collect()
}

async fn asset_tags_are_unique_searchable_and_listed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let a = register(&server, json!({"hostname": "tag-a", "asset_tag": "IT-0001"})).await;
    let b = register(&server, json!({"hostname": "tag-b"})).await;
    // The same tag on another asset: 409 naming the holder, nothing written.
    let before = server.changes(b).await.len();
    let (status, body) = patch(&server, b, json!({"asset_tag": "IT-0001"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains(&format!("asset {a} (tag-a)")), "names the holder: {body}");
    assert_eq!(server.changes(b).await.len(), before, "a refused edit writes nothing");
    let (status, body) = server
        .send_json(&server.admin, "POST", "/api/v1/assets", &json!({"hostname": "tag-c", "asset_tag": "IT-0001"}))
        .await;
    assert_eq!(status, 409, "registration checks the tag too: {body}");
    // Not a barcode: 422 naming the field.
    let (status, body) = patch(&server, b, json!({"asset_tag": "IT 0002"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("asset_tag"), "{body}");
    let (status, body) = patch(&server, b, json!({"asset_tag": "IT-0002"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["asset_tag"], "IT-0002", "a list column of the asset");
    // Search, filter, sort.
    let (_, found) = server.get("/api/v1/assets?q=it-0002").await;
    assert_eq!(ids(&found), [b], "search finds the tag: {found}");
    let (_, found) = server.get("/api/v1/assets?asset_tag=IT-0001").await;
    assert_eq!(ids(&found), [a], "filter by tag: {found}");
    let (_, sorted) = server.get("/api/v1/assets?sort=-asset_tag").await;
    assert_eq!(ids(&sorted)[..2], [b, a], "sort by tag: {sorted}");
    // In the list export.
    let csv = export_csv(&server, "/api/v1/export/assets.csv").await;
    assert!(csv.lines().next().expect("header").contains("asset_tag"), "{csv}");
    assert!(csv.contains("IT-0002"), "{csv}");
    // The history says it.
    let changes = server.changes(b).await;
    assert!(changes.iter().any(|c| c["summary"] == "asset tag set to IT-0002"), "{changes:?}");
    common::assert_every_history_rebuilds_its_state(server.db()).await;
}

async fn custom_fields_and_the_finance_set(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (status, fields) = server.get("/api/v1/fields").await;
    assert_eq!(status, 200, "{fields}");
    let keys: Vec<&str> = fields["items"].as_array().expect("items").iter().filter_map(|f| f["key"].as_str()).collect();
    assert_eq!(
        keys,
        ["purchase_date", "purchase_cost", "currency", "supplier", "purchase_order", "warranty_end", "disposed_at"],
        "a new database starts with the finance set"
    );
    let id = register(&server, json!({"hostname": "fin-01"})).await;
    // Accepted forms, stored canonically (a decimal is a string, never a float).
    let (status, body) =
        patch(&server, id, json!({"custom": {"purchase_date": "2024/3/1", "purchase_cost": "012999.50"}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["business"]["custom"], json!({"purchase_date": "2024-03-01", "purchase_cost": "12999.5"}));
    // Values are filters, in any form the field accepts, on the live list, the as-of list and the
    // exports; an unknown field is refused, naming the parameter.
    let other = register(&server, json!({"hostname": "fin-02"})).await;
    for query in ["custom.purchase_date=2024/3/1", "custom.purchase_cost=12999.50&custom.purchase_date=2024-03-01"] {
        let (status, found) = server.get(&format!("/api/v1/assets?{query}")).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(ids(&found), [id], "{query}: {found}");
    }
    // Sortable, numbers by value (900 before 12999.5, though "9" > "1" as text), the same live
    // and as of a time; an unknown field is refused.
    let (status, _) = patch(&server, other, json!({"custom": {"purchase_cost": "900"}})).await;
    assert_eq!(status, 200);
    let (_, sorted) = server.get("/api/v1/assets?sort=custom.purchase_cost").await;
    let rows = &server.state.snapshot_rows;
    let query = ListQuery::from_query(Some("sort=custom.purchase_cost")).expect("query");
    let as_of = asof::list_as_of(server.db(), rows, AsOf::exact(Utc::now()), &query).await.expect("as-of");
    let as_of_ids: Vec<i64> = as_of.items.iter().map(|i| i.id).collect();
    let live_ids = ids(&sorted);
    assert_eq!(live_ids, as_of_ids, "the live and the as-of list sort alike");
    let (cheap, dear) = (live_ids.iter().position(|i| *i == other), live_ids.iter().position(|i| *i == id));
    assert!(cheap < dear, "900 before 12999.5: {sorted}");
    let (_, sorted) = server.get("/api/v1/assets?sort=-custom.purchase_cost").await;
    assert_eq!(ids(&sorted)[0], id, "descending: the dearest first: {sorted}");
    let (status, _) = server.get("/api/v1/assets?sort=custom.colour").await;
    assert_eq!(status, 422);
    let (status, _) = patch(&server, other, json!({"custom": {"purchase_cost": null}})).await;
    assert_eq!(status, 200);
    let (status, found) = server.get("/api/v1/assets?custom.purchase_date=2024-03-02").await;
    assert_eq!((status, ids(&found)), (200, vec![]), "{found}");
    let (status, body) = server.get("/api/v1/assets?custom.colour=red").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("custom.colour"), "{body}");
    let (status, body) = server.get("/api/v1/assets?custom.purchase_date=March").await;
    assert_eq!(status, 422, "{body}");
    let query = ListQuery::from_query(Some("custom.purchase_date=2024-03-01")).expect("query");
    let rows = &server.state.snapshot_rows;
    let as_of = asof::list_as_of(server.db(), rows, AsOf::exact(Utc::now()), &query).await.expect("as-of");
    assert_eq!(as_of.items.iter().map(|i| i.id).collect::<Vec<_>>(), [id], "as of now, the same filter");
    assert_ne!(id, other);
    let csv = export_csv(&server, "/api/v1/export/assets.csv?custom.purchase_date=2024-03-01").await;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let at = header.iter().position(|h| *h == "purchase_cost").expect("a column per custom field");
    let row: Vec<&str> = lines.next().expect("row").split(',').collect();
    assert_eq!(row[at], "12999.5", "{csv}");
    assert!(lines.next().is_none(), "only the filtered asset: {csv}");
    // Type errors: 422 naming the field and the accepted forms; nothing written.
    let before = server.changes(id).await.len();
    for (bad, field) in [
        (json!({"custom": {"purchase_cost": "12,999"}}), "purchase_cost"),
        (json!({"custom": {"purchase_date": "01/03/2024"}}), "purchase_date"),
        (json!({"custom": {"purchase_cost": 1.5e300}}), "purchase_cost"),
        (json!({"custom": {"no_such_field": "x"}}), "no_such_field"),
    ] {
        let (status, body) = patch(&server, id, bad.clone()).await;
        assert_eq!(status, 422, "{bad} -> {body}");
        assert!(body.to_string().contains(field), "{bad} names {field}: {body}");
    }
    assert_eq!(server.changes(id).await.len(), before, "refused edits write nothing");
    // Admins define fields; viewers cannot.
    let lease = json!({"key": "lease", "label": "Lease", "type": "enum", "choices": ["owned", "leased"]});
    let (status, _) = server.send_json(&server.viewer, "POST", "/api/v1/fields", &lease).await;
    assert_eq!(status, 403);
    let (status, body) = server.send_json(&server.admin, "POST", "/api/v1/fields", &lease).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.send_json(&server.admin, "POST", "/api/v1/fields", &lease).await;
    assert_eq!(status, 409, "a key is defined once: {body}");
    for bad in [
        json!({"key": "Lease2", "label": "x", "type": "text"}),
        json!({"key": "l2", "label": "x", "type": "enum"}),
        json!({"key": "l3", "label": "x", "type": "money"}),
    ] {
        let (status, body) = server.send_json(&server.admin, "POST", "/api/v1/fields", &bad).await;
        assert_eq!(status, 422, "{bad} -> {body}");
    }
    let (status, body) = patch(&server, id, json!({"custom": {"lease": "rented"}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("owned, leased"), "names the choices: {body}");
    let (status, _) = patch(&server, id, json!({"custom": {"lease": "leased"}})).await;
    assert_eq!(status, 200);
    // A type cannot change while values exist; choices cannot drop a value in use.
    let (status, body) =
        server.send_json(&server.admin, "PATCH", "/api/v1/fields/purchase_cost", &json!({"type": "integer"})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) =
        server.send_json(&server.admin, "PATCH", "/api/v1/fields/lease", &json!({"choices": ["owned"]})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = server
        .send_json(&server.admin, "PATCH", "/api/v1/fields/supplier", &json!({"type": "enum", "choices": ["Acme"]}))
        .await;
    assert_eq!(status, 200, "no values yet: {body}");
    // Delete hides the field, keeps its values and never reuses its key.
    let (status, _) = server.send_json(&server.admin, "DELETE", "/api/v1/fields/lease", &json!({})).await;
    assert_eq!(status, 204);
    let (_, listed) = server.get("/api/v1/fields").await;
    assert!(!listed.to_string().contains("\"lease\""), "hidden: {listed}");
    let (_, listed) = server.get("/api/v1/fields?deleted=true").await;
    assert!(listed.to_string().contains("\"lease\""), "listed when asked: {listed}");
    assert_eq!(server.asset(id).await["business"]["custom"]["lease"], "leased", "its values stay");
    let (status, body) = patch(&server, id, json!({"custom": {"lease": "owned"}})).await;
    assert_eq!(status, 422, "no new values: {body}");
    let (status, body) = server.send_json(&server.admin, "POST", "/api/v1/fields", &lease).await;
    assert_eq!(status, 409, "the key is never reused: {body}");
    assert!(body.to_string().contains("never reused"), "{body}");
    // Clearing one value leaves the others.
    let (status, body) = patch(&server, id, json!({"custom": {"purchase_cost": null}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["business"]["custom"], json!({"purchase_date": "2024-03-01", "lease": "leased"}));
    let summaries: Vec<String> =
        server.changes(id).await.iter().filter_map(|c| c["summary"].as_str().map(str::to_owned)).collect();
    assert!(summaries.iter().any(|s| s == "custom field purchase_cost removed (was 12999.5)"), "{summaries:?}");
    common::assert_every_history_rebuilds_its_state(server.db()).await;
}

async fn delete_and_restore_are_history(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let outcome = server.accept(&report("del-01")).await;
    let id = outcome["asset_id"].as_i64().expect("id");
    let (status, _) = patch(&server, id, json!({"asset_tag": "IT-DEL"})).await;
    assert_eq!(status, 200);
    let before_delete = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Only admins delete.
    let (status, _) = server.send_json(&server.viewer, "DELETE", &format!("/api/v1/assets/{id}"), &json!({})).await;
    assert_eq!(status, 403);
    let (status, body) = server.send_json(&server.admin, "DELETE", &format!("/api/v1/assets/{id}"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.send_json(&server.admin, "DELETE", &format!("/api/v1/assets/{id}"), &json!({})).await;
    assert_eq!(status, 409, "deleted already: {body}");
    // Gone from the list, its counts and collect targets; still readable, saying so.
    let (_, list) = server.get("/api/v1/assets").await;
    assert_eq!(list["total"], 0, "{list}");
    let detail = server.asset(id).await;
    assert!(detail["deleted_at"].is_string(), "{detail}");
    // As of before the delete it is there; as of now it is not.
    let rows = &server.state.snapshot_rows;
    let then =
        asof::list_as_of(server.db(), rows, AsOf::exact(before_delete), &ListQuery::default()).await.expect("as-of");
    assert_eq!(then.items.iter().map(|i| i.id).collect::<Vec<_>>(), [id], "present before the delete");
    let now = asof::list_as_of(server.db(), rows, AsOf::exact(Utc::now()), &ListQuery::default()).await.expect("as-of");
    assert!(now.items.is_empty(), "gone after it");
    // Its tag is free again; a report from its machine makes a new asset marked as its duplicate.
    let other = register(&server, json!({"hostname": "tag-taker", "asset_tag": "IT-DEL"})).await;
    let again = server.accept(&at(report("del-01"), 5)).await;
    let new_id = again["asset_id"].as_i64().expect("id");
    assert_ne!(new_id, id, "a deleted record is not matched by reports");
    assert_eq!(server.asset(new_id).await["possible_duplicate_of"], id);
    // Restore: refused while another asset has its host name or its tag, naming it.
    let restore = format!("/api/v1/assets/{id}/restore");
    let (status, body) = server.send_json(&server.admin, "POST", &restore, &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains(&format!("asset {new_id}")), "names the holder of the host name: {body}");
    let (status, _) = server.send_json(&server.admin, "DELETE", &format!("/api/v1/assets/{new_id}"), &json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = server.send_json(&server.admin, "POST", &restore, &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains(&format!("asset {other}")), "names the holder of the tag: {body}");
    let (status, _) = patch(&server, other, json!({"asset_tag": null})).await;
    assert_eq!(status, 200);
    let (status, body) = server.send_json(&server.admin, "POST", &restore, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = server.get("/api/v1/assets").await;
    assert_eq!(ids(&list), [id, other], "back on the list: {list}");
    let summaries: Vec<String> =
        server.changes(id).await.iter().filter_map(|c| c["summary"].as_str().map(str::to_owned)).collect();
    assert!(summaries.iter().any(|s| s.starts_with("record deleted at ")), "{summaries:?}");
    assert!(summaries.iter().any(|s| s == "record restored"), "{summaries:?}");
    common::assert_every_history_rebuilds_its_state(server.db()).await;
}

async fn merge_keeps_both_histories_and_routes_reports(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let a = server.accept(&report("merge-a")).await["asset_id"].as_i64().expect("a");
    let b = server.accept(&report("merge-b")).await["asset_id"].as_i64().expect("b");
    let before_merge = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let merge = format!("/api/v1/assets/{a}/merge");
    let (status, _) = server.send_json(&server.viewer, "POST", &merge, &json!({"from": b})).await;
    assert_eq!(status, 403, "admins merge");
    let (status, body) = server.send_json(&server.admin, "POST", &merge, &json!({"from": a})).await;
    assert_eq!(status, 422, "not into itself: {body}");
    let (status, body) = server.send_json(&server.admin, "POST", &merge, &json!({"from": b})).await;
    assert_eq!(status, 200, "{body}");
    // The merged record answers with the survivor; it is off the list.
    let merged = server.asset(b).await;
    assert_eq!(merged["merged_into"], a, "{merged}");
    let (_, list) = server.get("/api/v1/assets").await;
    assert_eq!(ids(&list), [a]);
    // No change row moved: each asset got its own.
    let on_a = server.changes(a).await;
    assert!(on_a.iter().any(|c| c["component"] == format!("alias:{b}")), "{on_a:?}");
    let sentence = format!("asset {b} (merge-b) merged into this one");
    assert!(on_a.iter().any(|c| c["summary"] == sentence.as_str()), "{on_a:?}");
    let on_b = server.changes(b).await;
    assert!(on_b.iter().any(|c| c["path"] == "/merged_into"), "{on_b:?}");
    let sentence = format!("merged into asset {a}");
    assert!(on_b.iter().any(|c| c["summary"] == sentence.as_str()), "{on_b:?}");
    // As of before the merge, both as they were.
    let rows = &server.state.snapshot_rows;
    let then =
        asof::list_as_of(server.db(), rows, AsOf::exact(before_merge), &ListQuery::default()).await.expect("as-of");
    assert_eq!(then.items.iter().map(|i| i.id).collect::<Vec<_>>(), [a, b]);
    // A later report from the merged record's machine lands on the survivor.
    let mut later = at(report("merge-b"), 5);
    later["sections"]["cpu"]["data"]["cpu_count"] = json!(16);
    let outcome = server.accept(&later).await;
    assert_eq!(outcome["asset_id"], a, "{outcome}");
    assert_eq!(server.asset(a).await["sections"]["cpu"]["cpu_count"], 16);
    common::assert_every_history_rebuilds_its_state(server.db()).await;
    // Refused: two machines that both reported this week with different board UUIDs.
    let mut c = report("merge-c");
    c["sections"]["board"]["data"]["uuid"] = json!("4c4c4544-0000-1000-8000-000000000001");
    let c = server.accept(&c).await["asset_id"].as_i64().expect("c");
    let mut d = report("merge-d");
    d["sections"]["board"]["data"]["uuid"] = json!("4c4c4544-0000-1000-8000-000000000002");
    let d = server.accept(&d).await["asset_id"].as_i64().expect("d");
    let (status, body) =
        server.send_json(&server.admin, "POST", &format!("/api/v1/assets/{c}/merge"), &json!({"from": d})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("board UUIDs"), "{body}");
    // A deleted record is neither merged nor merged into.
    let (status, body) =
        server.send_json(&server.admin, "POST", &format!("/api/v1/assets/{c}/merge"), &json!({"from": b})).await;
    assert_eq!(status, 409, "{body}");
}

async fn one_duplicate_rule(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let with = |host: &str, mac: &str, sn: &str| {
        let mut r = report(host);
        r["sections"]["nic"]["data"]["interfaces"][0]["hwaddr"] = json!(mac);
        r["sections"]["board"]["data"]["sn"] = json!(sn);
        r
    };
    // Shares a universally administered MAC.
    let a = server.accept(&with("dup-a", "00:1c:42:00:00:01", "SN-A")).await["asset_id"].as_i64().expect("a");
    let b = server.accept(&with("dup-b", "00:1C:42:00:00:01", "SN-B")).await["asset_id"].as_i64().expect("b");
    // Shares only a locally administered one: not a duplicate.
    let c = server.accept(&with("dup-c", "02:42:ac:11:00:02", "SN-C")).await["asset_id"].as_i64().expect("c");
    let d = server.accept(&with("dup-d", "02:42:ac:11:00:02", "SN-D")).await["asset_id"].as_i64().expect("d");
    // A host registered by hand shares nothing.
    let f = register(&server, json!({"hostname": "dup-f"})).await;
    let (status, list) = server.get("/api/v1/duplicates").await;
    assert_eq!(status, 200, "{list}");
    let pairs: Vec<(i64, i64, String)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| (p["asset_id"].as_i64().unwrap_or(0), p["other_id"].as_i64().unwrap_or(0), p["shares"].to_string()))
        .collect();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!((pairs[0].0, pairs[0].1), (a, b));
    assert!(pairs[0].2.contains("MAC address 00:1c:42:00:00:01"), "{pairs:?}");
    let detail = server.asset(b).await;
    assert_eq!(detail["possible_duplicates"][0]["asset_id"], a, "{detail}");
    assert_eq!(server.asset(c).await["possible_duplicates"], json!([]));
    assert_eq!(server.asset(d).await["possible_duplicates"], json!([]));
    assert_eq!(server.asset(f).await["possible_duplicates"], json!([]));
    // A record marked, when a report created it, as a possible duplicate of another is paired with it.
    sqlx::query("UPDATE assets SET possible_duplicate_of = $1 WHERE id = $2")
        .bind(c)
        .bind(f)
        .execute(server.db().writer())
        .await
        .expect("mark");
    let (_, list) = server.get("/api/v1/duplicates").await;
    let marked = list["items"].as_array().expect("items").iter().find(|p| p["asset_id"] == c).cloned();
    assert_eq!(
        marked.map(|p| (p["other_id"].clone(), p["shares"].clone())),
        Some((json!(f), json!(["marked when created"])))
    );
    sqlx::query("UPDATE assets SET possible_duplicate_of = NULL WHERE id = $1")
        .bind(f)
        .execute(server.db().writer())
        .await
        .expect("unmark");
    // A deleted record is nobody's duplicate.
    let (status, _) = server.send_json(&server.admin, "DELETE", &format!("/api/v1/assets/{b}"), &json!({})).await;
    assert_eq!(status, 200);
    let (_, list) = server.get("/api/v1/duplicates").await;
    assert_eq!(list["items"], json!([]), "{list}");
    assert_eq!(server.asset(a).await["possible_duplicates"], json!([]));
}

/// A deleted record frees its host name for registration, leaves the collection targets and the
/// counts; the dashboard lists warranties ending within 90 days; an editor imports but only an
/// admin imports a baseline.
async fn deleted_records_leave_every_list(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let fields = json!({"hostname": "gone-01", "status": "online", "manage_address": "10.9.9.9"});
    let first = register(&server, fields.clone()).await;
    let (_, targets) = server.signed("GET", "/api/v1/collect-targets", b"").await;
    assert_eq!(targets["targets"].as_array().map(Vec::len), Some(1), "{targets}");
    let (status, _) = server.send_json(&server.admin, "POST", "/api/v1/assets", &fields).await;
    assert_eq!(status, 409, "the host name is taken");
    let (status, _) = server.send_json(&server.admin, "DELETE", &format!("/api/v1/assets/{first}"), &json!({})).await;
    assert_eq!(status, 200);
    let (_, targets) = server.signed("GET", "/api/v1/collect-targets", b"").await;
    assert_eq!(targets["targets"], json!([]), "a deleted record is no collection target");
    let figures = cmdb_server::service::dashboard::counts(server.db()).await.expect("counts");
    assert!(figures.status.is_empty(), "nor counted: {:?}", figures.status);
    let second = register(&server, fields).await;
    assert_ne!(second, first, "registration skips deleted records");
    // Warranties ending within 90 days, soonest first; a past or later one is not listed.
    let today = Utc::now().date_naive();
    for (host, days) in [("w-soon", 10), ("w-later", 200), ("w-past", -3), ("w-sooner", 2)] {
        let end = (today + chrono::Duration::days(days)).format("%Y-%m-%d").to_string();
        register(&server, json!({"hostname": host, "custom": {"warranty_end": end}})).await;
    }
    let ending =
        cmdb_server::service::dashboard::warranties_ending(server.db(), today, 90, 10).await.expect("warranties");
    let hosts: Vec<&str> = ending.iter().map(|w| w.hostname.as_str()).collect();
    assert_eq!(hosts, ["w-sooner", "w-soon"]);
    // An editor imports; a baseline needs an admin.
    let editor = cmdb_server::auth::create_token(server.db().writer(), "test-editor", cmdb_server::auth::Role::Editor)
        .await
        .expect("token");
    let post = |query: &'static str| {
        server
            .http
            .post(format!("{}/api/v1/import{query}", server.base))
            .bearer_auth(&editor)
            .header("content-type", "text/csv")
            .body("hostname,owner\ngone-01,ops\n")
            .send()
    };
    assert_eq!(post("").await.expect("import").status().as_u16(), 200);
    assert_eq!(post("?as_of=2026-01-01").await.expect("baseline").status().as_u16(), 403);
}

on_both_backends!(
    deleted_records_leave_every_list,
    asset_tags_are_unique_searchable_and_listed,
    custom_fields_and_the_finance_set,
    delete_and_restore_are_history,
    merge_keeps_both_histories_and_routes_reports,
    one_duplicate_rule,
);
