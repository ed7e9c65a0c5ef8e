//! Stocktakes on both backends: the scope frozen when it opens, the matching order of a scanned
//! code, verified and moved, unexpected and unknown, already seen, who may close, 409 after close,
//! the collection evidence, and the report's sheets and counts.

mod common;

use cmdb_server::auth::{Role, create_token};
use common::{Backend, TestDb, TestServer, at, report};
use serde_json::{Value, json};

async fn patch(server: &TestServer, id: i64, body: Value) {
    let (status, answer) = server.send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{id}"), &body).await;
    assert_eq!(status, 200, "{answer}");
}

async fn sight(server: &TestServer, token: &str, stocktake: i64, body: Value) -> (u16, Value) {
    server.send_json(token, "POST", &format!("/api/v1/stocktakes/{stocktake}/sightings"), &body).await
}

async fn a_stocktake_from_open_to_report(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let editor = create_token(server.db().writer(), "editor-1", Role::Editor).await.expect("token");
    let other_editor = create_token(server.db().writer(), "editor-2", Role::Editor).await.expect("token");
    let id = |v: Value| v["asset_id"].as_i64().expect("id");
    // bj-1 holds a, b, c (c retired) and d; e is in another IDC.
    let a = id(server.accept(&report("st-a")).await);
    let b = id(server.accept(&report("st-b")).await);
    let c = id(server.accept(&report("st-c")).await);
    let d = id(server.accept(&report("st-d")).await);
    let e = id(server.accept(&report("st-e")).await);
    for (asset, tag, cabinet) in [(a, "T-A", "A01"), (b, "T-B", "A01"), (c, "T-C", "A02"), (d, "st-e", "A02")] {
        patch(&server, asset, json!({"idc": "bj-1", "cabinet": cabinet, "asset_tag": tag})).await;
    }
    patch(&server, c, json!({"status": "retired"})).await;
    patch(&server, e, json!({"idc": "sh-1", "asset_tag": "T-E"})).await;
    let (status, opened) =
        server.send_json(&server.viewer, "POST", "/api/v1/stocktakes", &json!({"name": "x", "scope": {}})).await;
    assert_eq!(status, 403, "{opened}");
    let (status, body) = server
        .send_json(&editor, "POST", "/api/v1/stocktakes", &json!({"name": "bj", "scope": {"colour": "red"}}))
        .await;
    assert_eq!(status, 422, "an unknown filter: {body}");
    let (status, opened) = server
        .send_json(&editor, "POST", "/api/v1/stocktakes", &json!({"name": "BJ-1 year end", "scope": {"idc": "bj-1"}}))
        .await;
    assert_eq!(status, 201, "{opened}");
    let st = opened["id"].as_i64().expect("id");
    assert_eq!(opened["counts"]["expected"], 3, "a, b, d (c is retired): {opened}");
    // The scope is frozen: an asset moved into bj-1 now is not expected.
    patch(&server, e, json!({"idc": "bj-1"})).await;
    // Matching order: "st-e" is d's tag and e's host name: the tag wins.
    let (status, seen) = sight(&server, &editor, st, json!({"code": "st-e", "idc": "bj-1", "cabinet": "A02"})).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!((seen["outcome"].clone(), seen["asset_id"].clone()), (json!("verified"), json!(d)), "{seen}");
    // A board serial finds b; seen in another cabinet: moved, with what differs.
    let (_, seen) = sight(&server, &editor, st, json!({"code": "SN-st-b", "cabinet": "A07"})).await;
    assert_eq!(seen["outcome"], "moved", "{seen}");
    assert_eq!(seen["differences"], json!(["cabinet: A01 (seen in A07)"]));
    // The same asset again: already seen, counted once.
    let (_, seen) = sight(&server, &editor, st, json!({"code": "T-B"})).await;
    assert_eq!(seen["outcome"], "already_seen");
    // An asset outside the frozen list, and a code that is no asset.
    let (_, seen) = sight(&server, &editor, st, json!({"code": "T-E"})).await;
    assert_eq!((seen["outcome"].clone(), seen["asset_id"].clone()), (json!("unexpected"), json!(e)));
    let (_, seen) =
        sight(&server, &editor, st, json!({"code": "NO-SUCH-TAG", "cabinet": "A09", "note": "in a box"})).await;
    assert_eq!(seen["outcome"], "unknown");
    assert_eq!(
        seen["counts"],
        json!({"expected": 3, "verified": 1, "moved": 1, "missing": 1, "unexpected": 2, "seen_by_collection_only": 0})
    );
    // a is not scanned, but its agent reports during the count: evidence, not verification.
    server.accept(&at(report("st-a"), 30)).await;
    // Who may close: the editor who opened it, or an admin; not another editor.
    let close = format!("/api/v1/stocktakes/{st}/close");
    let (status, _) = server.send_json(&other_editor, "POST", &close, &json!({})).await;
    assert_eq!(status, 403);
    let (status, closed) = server.send_json(&editor, "POST", &close, &json!({})).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["counts"]["seen_by_collection_only"], 1, "{closed}");
    assert_eq!(closed["counts"]["verified"], 1, "collection never verifies");
    assert_eq!(closed["counts"]["missing"], 1);
    let (status, listed) = server.get("/api/v1/stocktakes").await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"][0]["counts"], closed["counts"], "the list has the same counts: {listed}");
    assert_eq!(listed["items"][0]["items"], json!([]), "and leaves the items out");
    // Closed: every write is a 409.
    let (status, _) = sight(&server, &editor, st, json!({"code": "T-A"})).await;
    assert_eq!(status, 409);
    let (status, _) = server.send_json(&server.admin, "POST", &close, &json!({})).await;
    assert_eq!(status, 409);
    // The report: its sheets and counts, the same whenever it is read.
    let fetch = || async {
        server
            .http
            .get(format!("{}/api/v1/stocktakes/{st}/report.xlsx", server.base))
            .bearer_auth(&server.viewer)
            .send()
            .await
            .expect("report")
            .bytes()
            .await
            .expect("bytes")
    };
    let bytes = fetch().await;
    use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
    let mut book: Xlsx<_> = open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).expect("xlsx");
    assert_eq!(book.sheet_names(), ["Summary", "Verified", "Missing", "Moved", "Unexpected", "Collection only"]);
    let summary = book.worksheet_range("Summary").expect("summary");
    let value = |label: &str| summary.rows().find(|r| r[0] == Data::String(label.into())).map(|r| r[1].clone());
    assert_eq!(value("Expected"), Some(Data::Float(3.0)));
    assert_eq!(value("Unexpected"), Some(Data::Float(2.0)));
    assert_eq!(value("Seen by collection only"), Some(Data::Float(1.0)));
    let mut rows = |name: &str| book.worksheet_range(name).expect(name).rows().count() - 1;
    let counts = [rows("Verified"), rows("Moved"), rows("Missing"), rows("Unexpected"), rows("Collection only")];
    assert_eq!(counts, [1, 1, 1, 2, 1]);
    // Later edits change nothing in a closed report (the list and sightings are frozen).
    patch(&server, a, json!({"cabinet": "Z99", "asset_tag": "T-A2"})).await;
    let mut again: Xlsx<_> = open_workbook_from_rs(std::io::Cursor::new(fetch().await.to_vec())).expect("xlsx");
    let missing = again.worksheet_range("Missing").expect("missing");
    let row: Vec<String> = missing.rows().nth(1).expect("a").iter().map(|c| c.to_string()).collect();
    assert_eq!(row[2..6], ["T-A".to_owned(), "SN-st-a".to_owned(), "bj-1".to_owned(), "A01".to_owned()], "{row:?}");
}

/// A merged record's code finds the record it was merged into.
async fn codes_follow_merges(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let a = server.accept(&report("mg-a")).await["asset_id"].as_i64().expect("a");
    let b = server.accept(&report("mg-b")).await["asset_id"].as_i64().expect("b");
    patch(&server, b, json!({"asset_tag": "OLD-B"})).await;
    let (status, _) =
        server.send_json(&server.admin, "POST", &format!("/api/v1/assets/{a}/merge"), &json!({"from": b})).await;
    assert_eq!(status, 200);
    let (_, opened) = server.send_json(&server.admin, "POST", "/api/v1/stocktakes", &json!({"name": "all"})).await;
    let st = opened["id"].as_i64().expect("id");
    assert_eq!(opened["counts"]["expected"], 1, "the merged record is not expected: {opened}");
    let (_, seen) = sight(&server, &server.admin, st, json!({"code": "OLD-B"})).await;
    assert_eq!((seen["outcome"].clone(), seen["asset_id"].clone()), (json!("verified"), json!(a)), "{seen}");
}

on_both_backends!(a_stocktake_from_open_to_report, codes_follow_merges);
