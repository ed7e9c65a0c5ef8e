//! The audit invariant, as a property over random report sequences on real databases: replaying
//! an asset's change records from nothing rebuilds exactly its stored state, and that state is
//! what the applied reports and edits said (renames, errored and missing sections, duplicate
//! report ids, stale reports and business edits included).

mod common;

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use cmdb_model::diff::replay;
use cmdb_model::report::parse_report;
use cmdb_server::service::assets;
use cmdb_server::{ingest, store};
use common::{Backend, TestDb};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    /// Host `host` reports; `sections` are the sections sent; `rename` renames the host first;
    /// `age` > 0 sends it with a collected_at before the last one (stale).
    Report { host: usize, sections: Value, rename: bool, age: i64 },
    /// Resend the last report sent (same report id).
    Duplicate,
    /// A person edits the owner of `host`.
    Edit { host: usize, owner: Option<String> },
}

fn arb_sections() -> impl Strategy<Value = Value> {
    let disk = prop::collection::btree_map("[0-3]", (0u64..3, prop::option::of("[xy]")), 0..4).prop_map(|m| {
        let disks: Vec<Value> = m
            .into_iter()
            .map(|(slot, (cap, sn))| json!({"slot": format!("32:{slot}"), "capacity_bytes": cap, "sn": sn}))
            .collect();
        json!({"status": "ok", "data": {"disks": disks}})
    });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u64..4).prop_map(|n| json!(n)),
        "[ab/~]{0,2}".prop_map(Value::String)
    ];
    let external = prop::collection::btree_map(
        "[a-c]{1,2}",
        prop_oneof![
            leaf.clone(),
            prop::collection::btree_map("[a-b]", leaf, 0..3).prop_map(|m| Value::Object(m.into_iter().collect()))
        ],
        0..4,
    )
    .prop_map(|m| json!({"status": "ok", "data": Value::Object(m.into_iter().collect())}));
    let cpu = prop::option::of(1u32..4)
        .prop_map(|count| json!({"status": "ok", "data": {"cpu_count": count, "cpu_model": "X"}}));
    let failed = Just(json!({"status": "error", "error": "probe failed"}));
    (
        prop::option::of(prop_oneof![3 => disk, 1 => failed.clone()]),
        prop::option::of(prop_oneof![3 => external, 1 => failed.clone()]),
        prop::option::of(prop_oneof![3 => cpu, 1 => failed]),
    )
        .prop_map(|(disk, ext, cpu)| {
            let mut sections = Map::new();
            for (name, section) in [("disk", disk), ("raid", ext), ("cpu", cpu)] {
                if let Some(section) = section {
                    sections.insert(name.to_owned(), section);
                }
            }
            Value::Object(sections)
        })
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..3, arb_sections(), prop::bool::weighted(0.15), prop_oneof![4 => Just(0i64), 1 => 1i64..100])
            .prop_map(|(host, sections, rename, age)| Step::Report { host, sections, rename, age }),
        1 => Just(Step::Duplicate),
        1 => (0usize..3, prop::option::of("[a-c]{1,3}")).prop_map(|(host, owner)| Step::Edit { host, owner }),
    ]
}

/// What the test expects of one logical host.
#[derive(Debug, Default)]
struct Expected {
    hostname: String,
    last_collected: Option<i64>,
    sections: BTreeMap<String, Value>,
    owner: Option<String>,
}

async fn run(backend: Backend, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let db = TestDb::new(backend).await;
    let database = db.open().await;
    let ingestor = ingest::Ingestor::start(database.clone());
    let uuids = [
        "4c4c4544-0057-4610-8038-b2c04f503831",
        "4c4c4544-0057-4610-8038-b2c04f503832",
        "4c4c4544-0057-4610-8038-b2c04f503833",
    ];
    let mut expected: Vec<Expected> =
        (0..3).map(|i| Expected { hostname: format!("h{i}"), ..Expected::default() }).collect();
    let mut asset_of: BTreeMap<usize, i64> = BTreeMap::new();
    let mut clock = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("date");
    let mut last_sent: Option<(usize, Value)> = None;
    let mut renames = 0;
    for step in steps {
        match step {
            Step::Report { host, sections, rename, age } => {
                let previous: Option<String> = if rename {
                    renames += 1;
                    let old = expected[host].hostname.clone();
                    expected[host].hostname = format!("h{host}-r{renames}");
                    Some(old)
                } else {
                    None
                };
                clock += Duration::seconds(10);
                let collected = clock - Duration::seconds(age * 10);
                let mut all = sections.as_object().cloned().unwrap_or_default();
                all.insert(
                    "board".into(),
                    json!({"status": "ok", "data": {"manufacturer": "Dell Inc.", "uuid": uuids[host]}}),
                );
                let doc = json!({
                    "schema": 1,
                    "report_id": uuid::Uuid::new_v4().to_string(),
                    "collected_at": collected.to_rfc3339(),
                    "agent": {"version": "t", "mode": "agent"},
                    "host": {"hostname": expected[host].hostname, "previous_hostname": previous.clone(), "machine_id": null},
                    "sections": Value::Object(all.clone()),
                });
                let report = parse_report(&serde_json::to_vec(&doc).expect("json")).expect("valid");
                let (outcome, _) = ingestor.ingest(&report, "agent", None, None).await.expect("ingest");
                let stale = expected[host].last_collected.is_some_and(|last| collected.timestamp_micros() < last);
                prop_assert_eq!(outcome.applied, !stale, "stale detection");
                if let Some(known) = asset_of.get(&host) {
                    prop_assert_eq!(outcome.asset_id, *known, "a host stays one asset (renames included)");
                }
                asset_of.insert(host, outcome.asset_id);
                if stale {
                    // A stale report is not applied: its rename is not applied either.
                    if let Some(old) = previous {
                        expected[host].hostname = old;
                    }
                } else {
                    expected[host].last_collected = Some(collected.timestamp_micros());
                    for (name, section) in all {
                        if section["status"] == "ok" {
                            let canonical = report.ok_section(&name).expect("ok").to_data(&name);
                            expected[host].sections.insert(name, canonical);
                        }
                    }
                }
                last_sent = Some((host, doc));
            }
            Step::Duplicate => {
                if let Some((host, doc)) = &last_sent {
                    let report = parse_report(&serde_json::to_vec(doc).expect("json")).expect("valid");
                    let (outcome, disposition) = ingestor.ingest(&report, "agent", None, None).await.expect("ingest");
                    prop_assert_eq!(disposition, ingest::Disposition::Duplicate);
                    prop_assert_eq!(Some(&outcome.asset_id), asset_of.get(host));
                }
            }
            Step::Edit { host, owner } => {
                if let Some(id) = asset_of.get(&host) {
                    let mut patch = Map::new();
                    patch.insert("owner".into(), owner.clone().map_or(Value::Null, Value::String));
                    assets::patch_business(&database, *id, "user:prop", &patch).await.expect("edit");
                    expected[host].owner = owner;
                }
            }
        }
    }
    let mut conn = database.reader().acquire().await.expect("conn");
    for (host, id) in &asset_of {
        let state = store::load_state(&mut conn, *id).await.expect("state");
        let history = store::asset_history(&mut conn, *id).await.expect("history");
        let ops: Vec<_> = history.iter().map(|c| c.op()).collect();
        let rebuilt = replay(&ops).expect("history replays");
        prop_assert_eq!(&rebuilt, &state, "replay(history) == stored state for asset {}", id);
        let want = &expected[*host];
        prop_assert_eq!(state.str_field("host", "hostname"), Some(want.hostname.as_str()));
        prop_assert_eq!(
            state.field("business", "owner").cloned().unwrap_or(Value::Null),
            want.owner.clone().map_or(Value::Null, Value::String)
        );
        for (name, data) in &want.sections {
            let stored = state.sections.get(name).map(|s| s.to_data(name));
            prop_assert_eq!(stored.as_ref(), Some(data), "section {} of host {}", name, host);
        }
        let stored_names: Vec<&String> =
            state.sections.keys().filter(|n| !["host", "business", "board"].contains(&n.as_str())).collect();
        let want_names: Vec<&String> = want.sections.keys().filter(|n| n.as_str() != "board").collect();
        prop_assert_eq!(stored_names, want_names, "no section appears or vanishes on its own");
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("CMDB_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

fn check(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let config = ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(steps in prop::collection::vec(arb_step(), 1..24))| {
        runtime.block_on(run(backend, steps))?;
    });
}

#[test]
fn replay_rebuilds_stored_state_sqlite() {
    check(Backend::Sqlite);
}

#[test]
fn replay_rebuilds_stored_state_postgres() {
    check(Backend::Postgres);
}
