//! The as-of view on real databases: as of now it equals the live state, as of any past moment it
//! equals replaying the history recorded by then, and a snapshot in between changes nothing.

mod common;

use chrono::{DateTime, Duration, Utc};
use cmdb_model::diff::{Action, ChangeOp, replay};
use cmdb_server::service::asof;
use cmdb_server::service::assets::{self, AssetPage, ListQuery};
use cmdb_server::service::time::AsOf;
use common::{Backend, TestServer, at, report};
use serde_json::{Value, json};

/// Builds a small history: three hosts report, are edited, change hardware, one is retired, one
/// registered by hand. Returns the moments between the steps.
async fn history(server: &TestServer) -> Vec<DateTime<Utc>> {
    let mut moments = vec![Utc::now()];
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    pause().await;
    let mut ids = Vec::new();
    for host in ["web-01", "web-02", "db-01"] {
        ids.push(server.accept(&report(host)).await["asset_id"].as_i64().expect("asset id"));
    }
    pause().await;
    moments.push(Utc::now());
    pause().await;
    let (status, body) = server
        .send_json(
            &server.admin,
            "PATCH",
            &format!("/api/v1/assets/{}", ids[0]),
            &json!({"owner": "ops", "idc": "DC-1", "tags": ["web", "prod"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .send_json(
            &server.admin,
            "PATCH",
            &format!("/api/v1/assets/{}", ids[2]),
            &json!({"owner": "dba", "business_unit": "payments"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    pause().await;
    moments.push(Utc::now());
    pause().await;
    // web-01 gets more memory and loses a disk.
    let mut changed = at(report("web-01"), 60);
    changed["sections"]["memory"]["data"]["total_mb"] = json!(65536);
    changed["sections"]["memory"]["data"]["modules"][1]["capacity_mb"] = json!(49152);
    changed["sections"]["disk"]["data"]["disks"] = json!([changed["sections"]["disk"]["data"]["disks"][0].clone()]);
    assert!(server.accept(&changed).await["changes"].as_i64().unwrap_or(0) > 0);
    let (status, body) = server
        .send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{}", ids[1]), &json!({"status": "retired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .send_json(&server.admin, "POST", "/api/v1/assets", &json!({"hostname": "spare-01", "idc": "DC-2"}))
        .await;
    assert_eq!(status, 201, "{body}");
    pause().await;
    moments.push(Utc::now());
    pause().await;
    let (status, body) = server
        .send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{}", ids[0]), &json!({"owner": "web-team"}))
        .await;
    assert_eq!(status, 200, "{body}");
    pause().await;
    moments.push(Utc::now());
    moments
}

fn without_times(mut item: Value) -> Value {
    if let Some(map) = item.as_object_mut() {
        map.remove("last_seen_at");
        map.remove("last_collected_at");
    }
    item
}

fn queries() -> Vec<ListQuery> {
    vec![
        ListQuery::default(),
        ListQuery { owner: Some("ops".into()), ..ListQuery::default() },
        ListQuery { q: Some("WEB".into()), ..ListQuery::default() },
        ListQuery { q: Some("10.0.0.5".into()), sort: Some("-id".into()), ..ListQuery::default() },
        ListQuery { tag: Some("prod".into()), ..ListQuery::default() },
        ListQuery { status: Some("retired".into()), ..ListQuery::default() },
        ListQuery { sort: Some("-memory_mb".into()), per_page: Some(2), page: Some(2), ..ListQuery::default() },
        ListQuery { idc: Some("DC-2".into()), ..ListQuery::default() },
        ListQuery { q: Some("dc".into()), ..ListQuery::default() },
        ListQuery { q: Some("00-1c-42".into()), ..ListQuery::default() },
    ]
    .into_iter()
    // Every sortable column, both ways: the in-memory order must be the SQL order.
    .chain(cmdb_server::service::assets::LIST.iter().filter(|c| c.sortable).flat_map(|c| {
        [c.key.to_owned(), format!("-{}", c.key)].map(|sort| ListQuery { sort: Some(sort), ..ListQuery::default() })
    }))
    .collect()
}

/// The list as it stood at `moment` (read exactly then), through the server's snapshot rows.
async fn list_at(server: &TestServer, moment: DateTime<Utc>, query: &ListQuery) -> AssetPage {
    asof::list_as_of(&server.state.db, &server.state.snapshot_rows, AsOf::exact(moment), query)
        .await
        .expect("as-of list")
}

async fn as_of_now_equals_live(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    history(&server).await;
    let now = Utc::now();
    for query in queries() {
        let live = assets::list(&server.state.db, &query).await.expect("live list");
        let then = list_at(&server, now, &query).await;
        assert_eq!(then.total, live.total, "total for {query:?}");
        let live: Vec<Value> = live.items.into_iter().map(|i| without_times(json!(i))).collect();
        let then: Vec<Value> = then.items.into_iter().map(|i| without_times(json!(i))).collect();
        assert_eq!(then, live, "rows for {query:?}");
    }
    let all = assets::list(&server.state.db, &ListQuery::default()).await.expect("list");
    assert_eq!(all.total, 4);
    for item in all.items {
        let live = assets::detail(&server.state.db, item.id).await.expect("detail");
        let then =
            asof::asset_as_of(&server.state.db, item.id, AsOf::exact(now)).await.expect("as-of").expect("exists now");
        assert_eq!(then.sections, live.sections, "sections of {}", item.hostname);
        assert_eq!(then.business, live.business, "business fields of {}", item.hostname);
        // Every report in this history changed something, so the report that last changed the
        // asset is the last report: the times agree with the live row.
        assert_eq!(then.summary.last_collected_at, live.summary.last_collected_at, "{}", item.hostname);
        assert_eq!(then.summary.last_seen_at, live.summary.last_seen_at, "{}", item.hostname);
    }
}

/// The state of every asset replayed from its change records recorded by `moment`.
async fn replayed(server: &TestServer, asset_id: i64, moment: DateTime<Utc>) -> Option<Value> {
    let ops: Vec<ChangeOp> = server
        .changes(asset_id)
        .await
        .into_iter()
        .filter(|c| {
            c["recorded_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).is_some_and(|t| t <= moment)
        })
        .map(|c| ChangeOp {
            section: c["section"].as_str().unwrap_or_default().to_owned(),
            component: c["component"].as_str().map(str::to_owned),
            path: c["path"].as_str().unwrap_or_default().to_owned(),
            action: Action::parse(c["action"].as_str().unwrap_or_default()).expect("action"),
            old: c.get("old").cloned(),
            new: c.get("new").cloned(),
        })
        .collect();
    if ops.is_empty() {
        return None;
    }
    let state = replay(&ops).expect("history replays");
    let sections: serde_json::Map<String, Value> = state
        .sections
        .iter()
        .filter(|(name, _)| name.as_str() != "business")
        .map(|(name, s)| (name.clone(), s.to_data(name)))
        .collect();
    Some(
        json!({"sections": sections, "business": state.sections.get("business").map(|s| Value::Object(s.fields.clone()))}),
    )
}

async fn check_against_replay(server: &TestServer, moments: &[DateTime<Utc>]) {
    let ids: Vec<i64> =
        assets::list(&server.state.db, &ListQuery::default()).await.expect("list").items.iter().map(|i| i.id).collect();
    for moment in moments {
        let mut existing = 0;
        for id in &ids {
            let want = replayed(server, *id, *moment).await;
            let got = asof::asset_as_of(&server.state.db, *id, AsOf::exact(*moment)).await.expect("as-of");
            match (want, got) {
                (None, None) => {}
                (Some(want), Some(got)) => {
                    existing += 1;
                    assert_eq!(json!(got.sections), want["sections"], "asset {id} at {moment}");
                    let business = cmdb_model::business::BusinessFields::from_fields(
                        want["business"].as_object().expect("business section"),
                    );
                    assert_eq!(got.business, business, "business fields of asset {id} at {moment}");
                }
                (want, got) => panic!("asset {id} at {moment}: replay says {want:?}, as-of says {got:?}"),
            }
        }
        let page = list_at(server, *moment, &ListQuery::default()).await;
        assert_eq!(page.total, existing, "assets existing at {moment}");
    }
}

async fn as_of_past_matches_replay(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let moments = history(&server).await;
    check_against_replay(&server, &moments).await;
    // Spot checks of what the history says, so the test cannot pass on two equal wrong answers.
    let q = |owner: &str| ListQuery { owner: Some(owner.into()), ..ListQuery::default() };
    assert_eq!(list_at(&server, moments[1], &q("ops")).await.total, 0);
    assert_eq!(list_at(&server, moments[2], &q("ops")).await.total, 1);
    assert_eq!(list_at(&server, moments[4], &q("ops")).await.total, 0);
    assert_eq!(list_at(&server, moments[4], &q("web-team")).await.total, 1);
    let memory =
        |page: cmdb_server::service::assets::AssetPage| page.items.iter().map(|i| i.memory_mb).collect::<Vec<_>>();
    let web = ListQuery { q: Some("web-01".into()), ..ListQuery::default() };
    assert_eq!(memory(list_at(&server, moments[2], &web).await), vec![Some(32768)]);
    assert_eq!(memory(list_at(&server, moments[3], &web).await), vec![Some(65536)]);
    assert_eq!(list_at(&server, moments[0], &ListQuery::default()).await.total, 0);
    // The filters' counts as of a time count the assets as they stood then.
    let owners = |at: DateTime<Utc>| {
        let db = server.state.db.clone();
        let rows = &server.state.snapshot_rows;
        async move {
            let counts = asof::counts_as_of(&db, rows, at).await.expect("counts");
            counts.owner.iter().map(|c| (c.value.clone(), c.count)).collect::<Vec<_>>()
        }
    };
    assert!(!owners(moments[1]).await.iter().any(|(v, _)| v.as_deref() == Some("ops")), "no owner ops yet");
    assert!(owners(moments[2]).await.contains(&(Some("ops".to_owned()), 1)));
    assert!(owners(moments[0]).await.is_empty(), "nothing existed");
}

/// Moves the whole history back by `by`, so snapshots (which must be settled) can fall inside it.
async fn age_history(server: &TestServer, by: Duration) {
    let us = by.num_microseconds().expect("duration");
    sqlx::query("UPDATE changes SET recorded_at = recorded_at - $1, collected_at = collected_at - $1")
        .bind(us)
        .execute(server.state.db.writer())
        .await
        .expect("age history");
    sqlx::query("UPDATE assets SET created_at = created_at - $1, last_seen_at = last_seen_at - $1, last_collected_at = last_collected_at - $1")
        .bind(us)
        .execute(server.state.db.writer())
        .await
        .expect("age assets");
    common::rechain(&server.state.db).await;
}

async fn snapshots_change_nothing(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let moments = history(&server).await;
    let hour = Duration::hours(1);
    age_history(&server, hour).await;
    let moments: Vec<DateTime<Utc>> = moments.into_iter().map(|m| m - hour).collect();
    let mut probes = moments.clone();
    probes.push(Utc::now());
    let snapshot_of = |list: &cmdb_server::service::assets::AssetPage| json!(list.items);
    let mut before = Vec::new();
    for probe in &probes {
        before.push(snapshot_of(&list_at(&server, *probe, &ListQuery::default()).await));
    }
    // A snapshot in the middle of the history (after the edits, before the hardware change), one
    // at its start and one after everything: every view must stay exactly the same.
    let first = asof::snapshot(&server.state.db, moments[2], "test").await.expect("snapshot");
    assert!(first.created);
    assert_eq!(first.asset_count, 3, "three hosts existed then");
    assert_eq!(first.rebuilt, 3);
    let again = asof::snapshot(&server.state.db, moments[2], "test").await.expect("snapshot");
    assert!(!again.created, "a snapshot of the same moment is reused");
    asof::snapshot(&server.state.db, moments[0], "test").await.expect("empty snapshot");
    let last = asof::snapshot(&server.state.db, moments[4], "test").await.expect("snapshot");
    assert_eq!(last.asset_count, 4);
    assert!(last.rebuilt < 4 + 1, "only assets changed since the previous snapshot are rebuilt");
    for (probe, want) in probes.iter().zip(&before) {
        let got = snapshot_of(&list_at(&server, *probe, &ListQuery::default()).await);
        assert_eq!(&got, want, "as-of {probe} across snapshots");
        // The same through a cache warmed ahead of time (what the daily task does) and a cold one.
        for rows in [asof::SnapshotRows::default(), {
            let warm = asof::SnapshotRows::default();
            warm.warm(&server.state.db).await.expect("warm");
            warm
        }] {
            let page = asof::list_as_of(&server.state.db, &rows, AsOf::exact(*probe), &ListQuery::default())
                .await
                .expect("list");
            assert_eq!(&snapshot_of(&page), want, "as-of {probe}, cold and warmed caches");
        }
    }
    check_against_replay(&server, &moments).await;
    // New changes after the last snapshot are replayed on top of it.
    let web = assets::list(&server.state.db, &ListQuery { q: Some("web-01".into()), ..ListQuery::default() })
        .await
        .expect("list")
        .items[0]
        .id;
    let (status, body) =
        server.send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{web}"), &json!({"owner": "after"})).await;
    assert_eq!(status, 200, "{body}");
    let now = asof::asset_as_of(&server.state.db, web, AsOf::exact(Utc::now())).await.expect("as-of").expect("exists");
    assert_eq!(now.business.owner.as_deref(), Some("after"));
    let then = asof::asset_as_of(&server.state.db, web, AsOf::exact(moments[4])).await.expect("as-of").expect("exists");
    assert_eq!(then.business.owner.as_deref(), Some("web-team"));
    // The as-of list keeps the rows it rebuilt since the snapshot by the last change replayed: a
    // later change to the same asset is never hidden behind a kept row, and the past stays put.
    let owner = |o: &str| ListQuery { owner: Some(o.into()), ..ListQuery::default() };
    for _ in 0..2 {
        assert_eq!(list_at(&server, Utc::now(), &owner("after")).await.total, 1);
    }
    let (status, body) =
        server.send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{web}"), &json!({"owner": "later"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(list_at(&server, Utc::now(), &owner("after")).await.total, 0);
    assert_eq!(list_at(&server, Utc::now(), &owner("later")).await.total, 1);
    assert_eq!(list_at(&server, moments[4], &owner("web-team")).await.total, 1);
    // A snapshot of a time not yet settled is refused.
    assert!(asof::snapshot(&server.state.db, Utc::now(), "test").await.is_err());
}

async fn as_of_over_http(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let moments = history(&server).await;
    // As if written an hour ago: an as-of reads at the latest 120 s before now.
    common::age_history(&server.state.db, 3600).await;
    let moments: Vec<DateTime<Utc>> = moments.iter().map(|m| *m - Duration::hours(1)).collect();
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, body) =
        server.get_as(&server.viewer, &format!("/api/v1/audit/assets?as_of={}&owner=ops", stamp(moments[2]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    assert_eq!(body["items"][0]["hostname"], "web-01");
    assert_eq!(body["items"][0]["idc"], "DC-1");
    let id = body["items"][0]["id"].as_i64().expect("id");
    let (status, body) = server.get(&format!("/api/v1/audit/assets/{id}?as_of={}", stamp(moments[2]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["business"]["owner"], "ops");
    assert_eq!(body["sections"]["memory"]["total_mb"], 32768);
    assert!(body["last_collected_at"].is_string(), "collected_at is shown beside the state: {body}");
    let (status, body) = server.get(&format!("/api/v1/audit/assets/{id}?as_of={}", stamp(moments[0]))).await;
    assert_eq!(status, 404, "not there yet: {body}");
    let (status, body) = server.get("/api/v1/audit/assets?as_of=yesterday").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get("/api/v1/audit/assets").await;
    assert_eq!(status, 400, "as_of is required: {body}");
    // A date means the end of that day.
    let (status, body) = server.get(&format!("/api/v1/audit/assets?as_of={}", Utc::now().format("%Y-%m-%d"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 4);
    let (status, _) = server.get_as("cmdb_nope", "/api/v1/audit/assets?as_of=2025-12-31").await;
    assert_eq!(status, 401);
    // Before the first recorded change the list is empty and says when the history starts.
    let (status, body) = server.get("/api/v1/audit/assets?as_of=2025-12-31").await;
    assert_eq!((status, body["total"].as_i64()), (200, Some(0)), "{body}");
    let starts: DateTime<Utc> = body["history_starts_at"]["at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("history_starts_at is stated: {body}"));
    assert!((starts - moments[0]).num_seconds().abs() <= 1, "{starts} is the first change ({})", moments[0]);
    // An empty answer after the history starts is only "nothing matches".
    let (status, body) = server.get(&format!("/api/v1/audit/assets?as_of={}&owner=nobody", stamp(moments[2]))).await;
    assert_eq!((status, body["total"].as_i64()), (200, Some(0)), "{body}");
    assert!(body.get("history_starts_at").is_none(), "{body}");
    let (status, body) = server.send_json(&server.viewer, "POST", "/api/v1/audit/snapshots", &json!({})).await;
    assert_eq!(status, 403, "taking snapshots is for admins: {body}");
    let (status, body) =
        server.send_json(&server.admin, "POST", "/api/v1/audit/snapshots", &json!({"at": "2020-01-01"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["asset_count"], 0);
    let (status, body) = server.get("/api/v1/audit/snapshots").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1));
}

on_both_backends!(as_of_now_equals_live, as_of_past_matches_replay, snapshots_change_nothing, as_of_over_http);
