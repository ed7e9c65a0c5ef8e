//! Scale benchmark of the list, search, as-of view and audit export.
//!
//! Seeds N assets (default 100,000) with realistic components (8 DIMMs, 6 disks, 4 interfaces)
//! and two years of history (registration, then owner moves, OS upgrades, disk swaps, address
//! changes: about 30 change records per asset), written straight into the tables in bulk with
//! the same change records the server writes (so replaying the history rebuilds the stored
//! state). Then prints server-side times, measured in-process around the functions the handlers
//! call:
//!
//! ```text
//! cargo run --release -p cmdb-server --example scale_bench                       # SQLite
//! cargo run --release -p cmdb-server --example scale_bench -- --assets 20000
//! cargo run --release -p cmdb-server --example scale_bench -- --postgres postgres://postgres@127.0.0.1:5432
//! cargo run --release -p cmdb-server --example scale_bench -- --db /tmp/seed.db --reuse  # seed once
//! cargo run --release -p cmdb-server --example scale_bench -- --db /tmp/seed.db --reuse --evidence
//! ```
//!
//! `--evidence` times the history's evidence instead: `verify`, a backup, its restore into a fresh
//! SQLite file and a fresh PostgreSQL database, and `verify` on each restored copy.
//!
//! Targets: list and search under 100 ms; as-of list first page <= 100 ms, as-of search <= 150 ms,
//! the whole as-of list <= 1.5 s; the audit workbook with 30 days of changes <= 5 s (its peak
//! memory printed beside it).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Parser;
use cmdb_model::diff::{ChangeOp, apply, diff_section};
use cmdb_model::state::{AssetState, SectionState};
use cmdb_server::db::{Db, PoolSettings, from_us};
use cmdb_server::service::assets::{self, ListQuery};
use cmdb_server::service::time::{AuditPeriod, Calendar};
use cmdb_server::service::{asof, export};
use cmdb_server::store::sql::Sql;
use cmdb_server::store::summary::{AssetSummary, search_terms};
use serde_json::{Map, Value, json};

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Assets to seed.
    #[arg(long, default_value_t = 100_000)]
    assets: usize,
    /// Run on a fresh database on this PostgreSQL server instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
    /// Timed repetitions of each query (the median is printed).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// The seeded database: a file (SQLite) or a database name (PostgreSQL). Every run measures a
    /// copy of it (`cp`, or `CREATE DATABASE ... TEMPLATE`), so the old and the new binary see the
    /// same data.
    #[arg(long)]
    db: Option<String>,
    /// Seed only when `--db` does not exist yet.
    #[arg(long)]
    reuse: bool,
    /// Time only the audit workbook (after the snapshots it starts from), e.g. under a profiler.
    #[arg(long)]
    workbook_only: bool,
    /// Time verify, backup and restore (into SQLite and PostgreSQL) instead of the reads.
    #[arg(long)]
    evidence: bool,
    /// The PostgreSQL server `--evidence` restores into (a database it creates and drops).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    restore_postgres: String,
}

const DAY: i64 = 86_400_000_000;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A change event: when, from where, and its operations.
struct Event {
    recorded_at: i64,
    report: bool,
    ops: Vec<ChangeOp>,
}

/// Deterministic pseudo-random numbers (SplitMix64), so every run seeds the same data.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn hostname(i: usize) -> String {
    let role = ["web", "db", "cache", "mq", "k8s", "batch"][i % 6];
    format!("{role}-{i:06}.dc{}.example", i % 4 + 1)
}

fn sections(i: usize, mix: &mut Mix, generation: u64) -> Vec<(String, SectionState)> {
    let mut out = Vec::new();
    let host = hostname(i);
    out.push((
        "host".into(),
        SectionState::from_fields(object(json!({"hostname": host, "machine_id": format!("{:032x}", i)}))),
    ));
    out.push((
        "basic".into(),
        SectionState::from_fields(object(json!({"hostname": host, "os_platform": "linux", "os_name": "Debian GNU/Linux", "os_version": format!("{}", 11 + generation % 2), "kernel": "6.1.0", "arch": "x86_64"}))),
    ));
    out.push((
        "cpu".into(),
        SectionState::from_fields(object(
            json!({"cpu_count": 32 + (i % 4) * 16, "cpu_physical_count": 2, "cpu_model": "Intel(R) Xeon(R) Gold 6338"}),
        )),
    ));
    out.push(("board".into(), SectionState::from_fields(object(json!({"manufacturer": "Dell Inc.", "model": "PowerEdge R750", "sn": format!("SN{i:08}"), "uuid": format!("4c4c4544-{:04x}-4610-8038-{:012x}", i % 65536, i)})))));
    let mut memory = SectionState::from_fields(object(json!({"total_mb": 8 * 32768, "slots_total": 16})));
    for slot in 0..8 {
        memory.components.insert(
            format!("A{slot}"),
            object(json!({"slot": format!("A{slot}"), "capacity_mb": 32768, "type": "DDR4", "speed_mts": 3200, "manufacturer": "Samsung", "sn": if slot == 0 { format!("M{i:07}{slot}g{generation}") } else { format!("M{i:07}{slot}") }, "part_number": "M393A4K40DB3-CWE"})),
        );
    }
    out.push(("memory".into(), memory));
    let mut disk = SectionState::default();
    for slot in 0..6 {
        let sn = if slot == 0 { format!("D{i:07}{slot}g{generation}") } else { format!("D{i:07}{slot}") };
        disk.components.insert(
            format!("32:{slot}"),
            object(json!({"slot": format!("32:{slot}"), "capacity_bytes": 1_920_383_410_176u64, "model": "MZ7LH1T9HMLT", "sn": sn, "pd_type": "SATA", "media": "ssd", "vendor": "SAMSUNG", "firmware": "HXT7904Q"})),
        );
    }
    out.push(("disk".into(), disk));
    let mut nic = SectionState::default();
    for port in 0..4 {
        let address =
            format!("10.{}.{}.{}/24", (i >> 16) & 255, (i >> 8) & 255, (i + port + generation as usize) & 255);
        nic.components.insert(
            format!("eno{port}"),
            object(json!({"name": format!("eno{port}"), "hwaddr": format!("00:1c:{:02x}:{:02x}:{:02x}:{:02x}", (i >> 16) & 255, (i >> 8) & 255, i & 255, port), "up": true, "carrier": port < 2, "mtu": 1500, "master": null, "ipv4": if port < 2 { json!([address]) } else { json!([]) }, "ipv6": []})),
        );
    }
    out.push(("nic".into(), nic));
    let _ = mix;
    out
}

fn business(i: usize, owner: u64) -> Map<String, Value> {
    let unit = ["payments", "search", "ads", "infra"][i % 4];
    let tags = [["web", "prod"], ["db", "prod"], ["cache", "staging"]][i % 3];
    object(json!({
        "idc": format!("DC-{}", i % 4 + 1), "cabinet": format!("R{:03}", i % 500), "cabinet_u": (i % 40) + 1,
        "business_unit": unit, "owner": format!("team-{owner}"),
        "status": if i.is_multiple_of(50) { "retired" } else { "online" }, "tags": tags,
        "manage_address": null, "ssh_port": null, "salt_minion_id": null, "notes": null,
    }))
}

/// The history of asset `i`: registered at `start`, then a few events until `end`.
fn asset_history(i: usize, start: i64, end: i64, mix: &mut Mix) -> (AssetState, Vec<Event>) {
    let mut state = AssetState::default();
    let mut events = Vec::new();
    let mut first = Vec::new();
    diff_section("business", None, &SectionState::from_fields(business(i, mix.below(40))), &mut first);
    for (name, section) in sections(i, mix, 0) {
        diff_section(&name, None, &section, &mut first);
    }
    for op in &first {
        let _ = apply(&mut state, op);
    }
    events.push(Event { recorded_at: start, report: true, ops: first });
    let updates = 3 + mix.below(3) as i64;
    // Each update falls at a random time in its share of the span, so the latest ones reach up to
    // `end` and every month (the audit's last 30 days included) has changes, as a real fleet does.
    let share = (end - start) / updates;
    for k in 1..=updates {
        let at = start + share * (k - 1) + 1 + mix.below(share as u64) as i64;
        let mut ops = Vec::new();
        let report = k % 3 != 0;
        if report {
            // A new generation of the hardware report: OS upgrade, a swapped disk and DIMM, new address.
            for (name, section) in sections(i, mix, k as u64) {
                diff_section(&name, state.sections.get(&name), &section, &mut ops);
            }
        } else {
            let next = business(i, mix.below(40));
            diff_section("business", state.sections.get("business"), &SectionState::from_fields(next), &mut ops);
        }
        // Each event diffs against the state the previous ones left, as the server does.
        for op in &ops {
            let _ = apply(&mut state, op);
        }
        events.push(Event { recorded_at: at, report, ops });
    }
    (state, events)
}

/// A change row to insert: asset, recorded_at, collected_at, report id, source, the change.
type ChangeRow = (i64, i64, Option<i64>, Option<String>, String, ChangeOp);

async fn seed(db: &Db, count: usize) -> Result<u64> {
    let now = Utc::now().timestamp_micros();
    let span_start = now - 730 * DAY;
    let mut mix = Mix(42);
    let mut changes = 0u64;
    let batch = 500;
    for first in (0..count).step_by(batch) {
        let mut tx = db.begin_write().await?;
        let mut asset_rows = Vec::new();
        let mut change_rows: Vec<ChangeRow> = Vec::new();
        let mut section_rows: Vec<(i64, String, String)> = Vec::new();
        let mut component_rows: Vec<(i64, String, String, String)> = Vec::new();
        let mut term_rows: Vec<(String, i64)> = Vec::new();
        for i in first..(first + batch).min(count) {
            let id = i as i64 + 1;
            let start = span_start + (i as i64 * 97 % 365) * DAY + (i as i64 % 86_400) * 1_000_000;
            let (state, events) = asset_history(i, start, now - DAY, &mut mix);
            let mut last_report = None;
            for event in events {
                let report_id = event.report.then(|| uuid::Uuid::new_v4().to_string());
                if event.report {
                    last_report = Some(event.recorded_at);
                }
                let collected = event.report.then_some(event.recorded_at - 30_000_000);
                let source = if event.report { "ssh".to_owned() } else { "user:bench".to_owned() };
                for op in event.ops {
                    change_rows.push((id, event.recorded_at, collected, report_id.clone(), source.clone(), op));
                }
            }
            for (name, section) in &state.sections {
                section_rows.push((id, name.clone(), serde_json::to_string(&section.fields)?));
                for (key, data) in &section.components {
                    component_rows.push((id, name.clone(), key.clone(), serde_json::to_string(data)?));
                }
            }
            for term in search_terms(&state) {
                term_rows.push((term, id));
            }
            asset_rows.push((id, start, last_report, AssetSummary::from_state(&state)));
        }
        for chunk in asset_rows.chunks(1000) {
            let mut q = Sql::new(
                "INSERT INTO assets (id, hostname, board_uuid, board_sn, board_manufacturer, machine_id, status, idc, cabinet, cabinet_u, business_unit, owner, tags, os_name, os_version, manufacturer, model, serial, cpu_model, cpu_count, memory_mb, disk_bytes, ip_addresses, created_at, updated_at, last_seen_at, last_collected_at)",
            );
            q.values(chunk, |row, (id, created, seen, s)| {
                let b = &s.business;
                row.bind(*id)
                    .bind(s.hostname.clone())
                    .bind(s.board_uuid.clone())
                    .bind(s.board_sn.clone())
                    .bind(s.board_manufacturer.clone())
                    .bind(s.machine_id.clone())
                    .bind(b.status.as_str())
                    .bind(b.idc.clone())
                    .bind(b.cabinet.clone())
                    .bind(b.cabinet_u.map(i64::from))
                    .bind(b.business_unit.clone())
                    .bind(b.owner.clone())
                    .bind(s.tags_column())
                    .bind(s.os_name.clone())
                    .bind(s.os_version.clone())
                    .bind(s.manufacturer.clone())
                    .bind(s.model.clone())
                    .bind(s.serial.clone())
                    .bind(s.cpu_model.clone())
                    .bind(s.cpu_count)
                    .bind(s.memory_mb)
                    .bind(s.disk_bytes)
                    .bind(s.ip_addresses.clone())
                    .bind(*created)
                    .bind(now)
                    .bind(*seen)
                    .bind(seen.map(|t| t - 30_000_000));
            });
            q.query().execute(&mut *tx).await?;
        }
        for chunk in change_rows.chunks(500) {
            let mut q = Sql::new(
                "INSERT INTO changes (asset_id, recorded_at, collected_at, report_id, source, section, component, path, action, old_value, new_value, summary)",
            );
            q.values(chunk, |row, (id, at, collected, report, source, op)| {
                row.bind(*id)
                    .bind(*at)
                    .bind(*collected)
                    .bind(report.clone())
                    .bind(source.clone())
                    .bind(op.section.clone())
                    .bind(op.component.clone())
                    .bind(op.path.clone())
                    .bind(op.action.as_str())
                    .bind(op.old.as_ref().map(Value::to_string))
                    .bind(op.new.as_ref().map(Value::to_string))
                    .bind(op.sentence());
            });
            q.query().execute(&mut *tx).await?;
        }
        changes += change_rows.len() as u64;
        for chunk in section_rows.chunks(1000) {
            let mut q = Sql::new("INSERT INTO asset_sections (asset_id, section, fields)");
            q.values(chunk, |row, (id, name, fields)| {
                row.bind(*id).bind(name.clone()).bind(fields.clone());
            });
            q.query().execute(&mut *tx).await?;
        }
        for chunk in component_rows.chunks(1000) {
            let mut q = Sql::new("INSERT INTO components (asset_id, section, ckey, data)");
            q.values(chunk, |row, (id, name, key, data)| {
                row.bind(*id).bind(name.clone()).bind(key.clone()).bind(data.clone());
            });
            q.query().execute(&mut *tx).await?;
        }
        for chunk in term_rows.chunks(2000) {
            let mut q = Sql::new("INSERT INTO search_terms (term, asset_id)");
            q.values(chunk, |row, (term, id)| {
                row.bind(term.clone()).bind(*id);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        if (first / batch) % 20 == 0 {
            eprintln!("  seeded {} assets, {changes} changes", (first + batch).min(count));
        }
    }
    if db.backend() == cmdb_server::db::Backend::Postgres {
        // Explicit ids were inserted: move the sequences past them, and refresh the planner's statistics.
        sqlx::query("SELECT setval('assets_id_seq', (SELECT MAX(id) FROM assets))").execute(db.writer()).await?;
        sqlx::query("ANALYZE").execute(db.writer()).await?;
    } else {
        sqlx::query("ANALYZE").execute(db.writer()).await?;
    }
    Ok(changes)
}

async fn time<T, F: std::future::Future<Output = Result<T, cmdb_server::service::ServiceError>>>(
    repeat: usize,
    mut run: impl FnMut() -> F,
) -> Result<(Duration, T)> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let value = run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(started.elapsed());
        last = Some(value);
    }
    times.sort();
    Ok((times[times.len() / 2], last.context("no run")?))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The same allocator as the server binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The peak resident memory of this process (VmHWM, KiB), after the peak was reset with
/// [`reset_peak`]; `None` where /proc does not tell.
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak resident memory to the current one (Linux: `5` to `/proc/self/clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The database to measure: a copy of the seeded one, so every run (and the old and the new
/// binary) starts from the same data. Returns the database and how to drop the copy.
async fn prepare(args: &Args, dir: &std::path::Path) -> Result<(Db, Option<(String, String)>)> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    match &args.postgres {
        Some(base) => {
            let seeded = args.db.clone().unwrap_or_else(|| format!("cmdb_bench_seed_{}", std::process::id()));
            let mut admin = sqlx::AnyConnection::connect(&format!("{base}/postgres")).await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1::bigint FROM pg_database WHERE datname = $1")
                .bind(seeded.clone())
                .fetch_optional(&mut admin)
                .await?;
            if !(args.reuse && exists.is_some()) {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {seeded} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {seeded}"))).execute(&mut admin).await?;
                let db = Db::open(&format!("{base}/{seeded}"), &PoolSettings::default()).await?;
                seed_and_report(&db, args.assets).await?;
                db.close().await;
            } else {
                println!("reusing the seeded database {seeded}");
            }
            let work = format!("cmdb_bench_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {work} TEMPLATE {seeded}")))
                .execute(&mut admin)
                .await?;
            let db = Db::open(&format!("{base}/{work}"), &PoolSettings::default()).await?;
            if args.db.is_none() {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {seeded} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await?;
            }
            Ok((db, Some((base.clone(), work))))
        }
        None => {
            let seeded = args.db.clone().map_or_else(|| dir.join("seed.db"), std::path::PathBuf::from);
            if !(args.reuse && seeded.exists()) {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", seeded.display()));
                }
                let db = Db::open(&format!("sqlite://{}", seeded.display()), &PoolSettings::default()).await?;
                seed_and_report(&db, args.assets).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(db.writer()).await?;
                db.close().await;
            } else {
                println!("reusing the seeded database {}", seeded.display());
            }
            let work = dir.join("bench.db");
            std::fs::copy(&seeded, &work).context("copy the seeded database")?;
            Ok((Db::open(&format!("sqlite://{}", work.display()), &PoolSettings::default()).await?, None))
        }
    }
}

async fn seed_and_report(db: &Db, assets: usize) -> Result<()> {
    let started = Instant::now();
    let changes = seed(db, assets).await?;
    println!("seeded {assets} assets and {changes} change records in {:.1} s", started.elapsed().as_secs_f64());
    // The seeder writes rows directly, as history from before chains: the migration step's work.
    let started = Instant::now();
    let hashed = db.complete_chains().await?;
    println!(
        "change chains computed for {hashed} records (the migrate step) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    // The server's own timing lines (the audit workbook's phases) go to standard error.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,cmdb_server::service::export=info".to_owned()),
        )
        .try_init();
    let dir = tempfile::tempdir()?;
    let (db, work) = prepare(&args, dir.path()).await?;
    println!("backend: {}", db.durability().await?);
    if args.evidence {
        evidence(&db, &args, dir.path()).await?;
    } else {
        measure(&db, &args).await?;
    }
    db.close().await;
    if let Some((base, name)) = work {
        use sqlx::Connection;
        let mut admin = sqlx::AnyConnection::connect(&format!("{base}/postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}

/// Times every read the issue targets, on `db`.
async fn measure(db: &Db, args: &Args) -> Result<()> {
    let db = db.clone();
    let r = args.repeat;
    let all = ListQuery::default();
    if !args.workbook_only {
        let (t, page) = time(r, || assets::list(&db, &all)).await?;
        println!("list, page 1 by hostname (total {}): {}", page.total, ms(t));
        let q = ListQuery { owner: Some("team-7".into()), sort: Some("-memory_mb".into()), ..ListQuery::default() };
        let (t, page) = time(r, || assets::list(&db, &q)).await?;
        println!("list, owner filter sorted by memory (total {}): {}", page.total, ms(t));
        let q = ListQuery { q: Some("web-0012".into()), ..ListQuery::default() };
        let (t, page) = time(r, || assets::list(&db, &q)).await?;
        println!("search \"web-0012\" (total {}): {}", page.total, ms(t));
        let q = ListQuery { q: Some("10.0.1".into()), ..ListQuery::default() };
        let (t, page) = time(r, || assets::list(&db, &q)).await?;
        println!("search \"10.0.1\" (total {}): {}", page.total, ms(t));
    }
    let now = Utc::now();
    let year_ago = now - chrono::Duration::days(365);
    let month_ago = now - chrono::Duration::days(30);
    let started = Instant::now();
    let first = asof::snapshot(&db, year_ago, "bench").await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "first snapshot (a year ago, {} assets, all replayed from history): {:.1} s",
        first.asset_count,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let second = asof::snapshot(&db, month_ago, "bench").await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "snapshot 11 months later ({} assets, {} rebuilt): {:.1} s",
        second.asset_count,
        second.rebuilt,
        started.elapsed().as_secs_f64()
    );
    let day = month_ago + chrono::Duration::days(1);
    let started = Instant::now();
    let daily = asof::snapshot(&db, day, "bench").await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "daily snapshot a day later ({} assets, {} rebuilt): {:.1} s",
        daily.asset_count,
        daily.rebuilt,
        started.elapsed().as_secs_f64()
    );
    let calendar = Calendar::new(chrono_tz::UTC, 300);
    // The worst case: 23 h of changes after the latest snapshot (as of today, late in the day).
    let at = calendar.settle(day + chrono::Duration::hours(23), Utc::now());
    if !args.workbook_only {
        // The server keeps the rows of recent snapshots in memory: the first as-of list after a
        // snapshot reads them (timed on its own), the next ones reuse them.
        let rows = asof::SnapshotRows::default();
        let started = Instant::now();
        let page = asof::list_as_of(&db, &rows, calendar.settle(day, Utc::now()), &all)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "as-of list, first page, at a daily snapshot, first request (reads the snapshot; total {}): {}",
            page.total,
            ms(started.elapsed())
        );
        // A date's as-of: a daily snapshot was taken at that very instant.
        let at_day = calendar.settle(day, Utc::now());
        let (t, page) = time(r, || asof::list_as_of(&db, &rows, at_day, &all)).await?;
        println!("as-of list, first page, at a daily snapshot (total {}): {}", page.total, ms(t));
        // The first request replays every asset changed in those 23 h; the next ones only what
        // changed since the previous request (none here).
        let started = Instant::now();
        let page = asof::list_as_of(&db, &rows, at, &all).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "as-of list, first page, 23 h after a snapshot, first request (replays the assets changed since; total {}): {}",
            page.total,
            ms(started.elapsed())
        );
        let (t, page) = time(r, || asof::list_as_of(&db, &rows, at, &all)).await?;
        println!("as-of list, first page, 23 h after a snapshot (total {}): {}", page.total, ms(t));
        let q = ListQuery { q: Some("web-0012".into()), ..ListQuery::default() };
        let (t, page) = time(r, || asof::list_as_of(&db, &rows, at, &q)).await?;
        println!("as-of search \"web-0012\", 23 h after a snapshot (total {}): {}", page.total, ms(t));
        let (t, items) = time(1, || asof::list_items_as_of(&db, &rows, at.effective, &all)).await?;
        println!("whole as-of list, 23 h after a snapshot ({} rows, every page): {}", items.len(), ms(t));

        let (t, csv) =
            time(1, || async { export::items_csv(&db, &export::list_items(&db, &all).await?, chrono_tz::UTC).await })
                .await?;
        println!("list export CSV ({} bytes): {}", csv.len(), ms(t));
        let (t, xlsx) =
            time(1, || async { export::items_xlsx(&db, &export::list_items(&db, &all).await?, chrono_tz::UTC).await })
                .await?;
        println!("list export XLSX ({} bytes): {}", xlsx.len(), ms(t));
    }
    let period = AuditPeriod { as_of: at, from: at.effective - chrono::Duration::days(30), to: at.effective };
    reset_peak();
    let before = peak_kib();
    let started = Instant::now();
    let file = export::audit_workbook(&db, &period).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let elapsed = started.elapsed();
    let bytes = file.as_file().metadata()?.len();
    println!(
        "audit workbook, 23 h after a snapshot, 30 days of changes ({bytes} bytes): {:.2} s, peak RSS {} MiB (was {} MiB before)",
        elapsed.as_secs_f64(),
        peak_kib().map_or("?".to_owned(), |k| (k / 1024).to_string()),
        before.map_or("?".to_owned(), |k| (k / 1024).to_string()),
    );
    let _ = from_us(0);
    Ok(())
}

/// Times `verify` on `db`, and prints what it found.
async fn timed_verify(db: &Db, label: &str) -> Result<()> {
    let started = Instant::now();
    let found =
        cmdb_server::service::verify::verify(db, None, &mut |_| {}).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "verify {label}: {} assets, {} change records, {} mismatches, in {:.1} s",
        found.assets,
        found.changes,
        found.mismatches.len(),
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(found.mismatches.is_empty(), "verify found mismatches: {:?}", &found.mismatches[..1]);
    Ok(())
}

/// Times the history's evidence: verify, backup, restore into both backends, verify again.
async fn evidence(db: &Db, args: &Args, dir: &std::path::Path) -> Result<()> {
    for (label, at) in [("now", Utc::now()), ("a year ago", Utc::now() - chrono::Duration::days(365))] {
        let started = Instant::now();
        let digest = cmdb_server::service::chains::digest(db, cmdb_server::service::AsOf::exact(at))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("history digest as of {label} ({} chains): {}", digest.chains, ms(started.elapsed()));
    }
    timed_verify(db, "the seeded database").await?;
    let file = dir.join("backup.tar");
    let done = cmdb_server::backup::backup(db, &file).await?;
    println!("backup: {} rows, {} bytes, in {:.1} s", done.manifest.rows(), done.bytes, done.seconds);
    let restored = dir.join("restored.db");
    let target = Db::open(&format!("sqlite://{}", restored.display()), &PoolSettings::default()).await?;
    let done = cmdb_server::backup::restore(&target, &file, false).await?;
    println!("restore into a fresh SQLite file: {:.1} s", done.seconds);
    timed_verify(&target, "the restored SQLite copy").await?;
    target.close().await;
    use sqlx::Connection;
    let name = format!("cmdb_bench_restore_{}", std::process::id());
    let mut admin = sqlx::AnyConnection::connect(&format!("{}/postgres", args.restore_postgres)).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    let target = Db::open(&format!("{}/{name}", args.restore_postgres), &PoolSettings::default()).await?;
    let done = cmdb_server::backup::restore(&target, &file, false).await?;
    println!("restore into a fresh PostgreSQL database: {:.1} s", done.seconds);
    timed_verify(&target, "the restored PostgreSQL copy").await?;
    target.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    Ok(())
}
