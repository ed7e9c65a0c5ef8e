//! Reading never writes domain data: every GET route of the router (taken from the router itself,
//! not from the OpenAPI document), called three times with a real asset id and `as_of` of today
//! and of a past date, leaves every domain table exactly as it was. Exports used to take a
//! snapshot for every distinct as-of, so a link from another site could make a logged-in browser
//! write.

mod common;
mod web_support;

use common::{Backend, TestDb, report, test_config};

use serde_json::json;
use sqlx::{Column, Row};
use web_support::WebServer;

/// Every table whose rows are inventory, history or derived from them, and the webhook endpoints
/// with their queued events and delivery log (bookkeeping such as the
/// audit log, sessions and nonces may change on a read).
const DOMAIN_TABLES: &[&str] = &[
    "assets",
    "asset_sections",
    "components",
    "changes",
    "search_terms",
    "snapshots",
    "snapshot_members",
    "asset_versions",
    "managed_values",
    "webhook_endpoints",
    "webhook_outbox",
    "webhook_deliveries",
];

/// (rows, checksum) of every domain table: each row rendered as text, sorted, hashed.
async fn fingerprint(db: &cmdb_server::db::Db) -> Vec<(String, usize, String)> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    for table in DOMAIN_TABLES {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(db.reader())
            .await
            .expect("read table");
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        let name = row.column(i).name().to_owned();
                        let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                            format!("{v:?}")
                        } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                            format!("{v:?}")
                        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                            format!("{v:?}")
                        } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
                            format!("{v:?}")
                        } else {
                            "?".to_owned()
                        };
                        format!("{name}={value}")
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        lines.sort();
        let digest = hex::encode(Sha256::digest(lines.join("\n").as_bytes()));
        out.push(((*table).to_owned(), lines.len(), digest));
    }
    out
}

async fn every_get_route_leaves_domain_tables_unchanged(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let mut config = test_config(&test_db);
    config.timezone = "Asia/Shanghai".to_owned();
    let server = WebServer::start_with(&test_db, config).await;
    let token = cmdb_server::auth::create_token(server.db.writer(), "reader-test", cmdb_server::auth::Role::Admin)
        .await
        .expect("token");
    // A webhook endpoint (no dispatcher runs here), so the writes below queue events.
    let endpoint = cmdb_server::service::webhooks::NewEndpoint {
        url: "http://127.0.0.1:9/hooks".to_owned(),
        secret: "reader-test-secret-0123".to_owned(),
        events: vec!["change".to_owned(), "asset".to_owned()],
    };
    cmdb_server::service::webhooks::create(&server.db, server.state.keys.secret_key(), &endpoint, "test")
        .await
        .expect("endpoint");
    let id = server.ingest(&report("web-01.example.com")).await;
    server.ingest(&report("db-01.example.com")).await;
    let mut admin = server.login("admin").await;
    let csrf = admin.csrf().await;
    let answer =
        admin.send_json("POST", "/api/v1/lists/idc", &json!({"value": "bj-1"}), &[("x-csrf-token", &csrf)]).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let answer = admin
        .send_json("PATCH", &format!("/api/v1/assets/{id}"), &json!({"idc": "bj-1"}), &[("x-csrf-token", &csrf)])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // As if all of it had been recorded five days ago, so as-of today and three days ago see it.
    common::age_history(&server.db, 5 * 86_400).await;
    // An admin's explicit snapshot, so the read paths start from one.
    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let answer =
        admin.send_json("POST", "/api/v1/audit/snapshots", &json!({"at": at}), &[("x-csrf-token", &csrf)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let tz = chrono_tz::Asia::Shanghai;
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let past = today - chrono::Duration::days(3);
    let before = fingerprint(&server.db).await;
    assert!(before.iter().any(|(t, n, _)| t == "snapshots" && *n == 1), "{before:?}");
    assert!(before.iter().any(|(t, n, _)| t == "webhook_outbox" && *n > 0), "{before:?}");

    let (_, paths) = cmdb_server::app::app_with_paths(server.state.clone());
    assert!(paths.len() >= 40, "the router lists its routes: {paths:?}");
    let mut answered = std::collections::BTreeMap::new();
    for template in &paths {
        let path = template
            .replace("{id}", &id.to_string())
            .replace("{list}", "idc")
            .replace("{value}", "bj-1")
            .replace("{name}", "app.css");
        // An API route refuses parameters it does not take (a 400 that reads nothing): give each
        // the ones it takes, so every reader is reached.
        let accepted = cmdb_server::api::strict_query::accepted("get", template);
        let takes = |name: &str| accepted.is_none_or(|names| names.iter().any(|n| n == name));
        let variants = [vec![], vec![("as_of", today)], vec![("as_of", past), ("from", past), ("to", today)]];
        for pairs in variants {
            let pairs: Vec<String> = pairs
                .into_iter()
                .filter(|(name, _)| takes(name))
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            let query = if pairs.is_empty() { String::new() } else { format!("?{}", pairs.join("&")) };
            for _ in 0..3 {
                let answer =
                    admin.get_with(&format!("{path}{query}"), &[("authorization", &format!("Bearer {token}"))]).await;
                assert!(answer.status < 500, "GET {path}{query}: {} {}", answer.status, answer.body);
                answered.insert(format!("{path}{query}"), answer.status);
            }
        }
    }
    let after = fingerprint(&server.db).await;
    assert_eq!(before, after, "a GET changed a domain table");
    // The calls did reach the readers (not only 405s and 401s): the exports and pages answered.
    for must in [
        format!("/assets?as_of={today}"),
        format!("/assets/{id}?as_of={past}&from={past}&to={today}"),
        format!("/assets/audit.xlsx?as_of={today}"),
        format!("/assets/export.csv?as_of={today}"),
        format!("/api/v1/audit/export.xlsx?as_of={today}"),
        format!("/api/v1/audit/assets.csv?as_of={past}"),
        format!("/api/v1/audit/changes.csv?as_of={past}&from={past}&to={today}"),
        format!("/api/v1/audit/components.csv?as_of={today}"),
        format!("/api/v1/export/assets.xlsx?as_of={today}"),
        format!("/api/v1/assets/{id}"),
    ] {
        assert_eq!(answered.get(&must), Some(&200), "GET {must}: {answered:?}");
    }
    let ok = answered.values().filter(|s| **s == 200).count();
    assert!(ok >= 60, "{ok} GETs answered 200: {answered:?}");
}

on_both_backends!(every_get_route_leaves_domain_tables_unchanged);
