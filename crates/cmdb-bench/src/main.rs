//! `cmdb-bench ingest`: report ingestion through real HTTP with signed requests.
//!
//! Starts the real `cmdb-server` binary (build it with `--release` first) on a fresh database per
//! backend, registers `--hosts` hosts with one report each, then drives `--concurrency` clients for
//! `--seconds` per phase: unchanged reports (same content, new report id and collected_at) and
//! changed reports (a CPU count, a DIMM and a disk change each time). Prints reports/s and
//! p50/p99 latency per backend and phase, with the durability settings in force. The load generator
//! shares the machine with the server, as the issue asks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

/// Report ingestion benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Which backends to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: BackendArg,
    /// Distinct hosts reporting.
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The server binary.
    #[arg(long, default_value = "target/release/cmdb-server")]
    server: PathBuf,
    /// PostgreSQL server to create the benchmark database on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
}

struct Server {
    child: Child,
    base: String,
    key_id: String,
    secret: String,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn start(args: &Args, backend: &str) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let url = match backend {
        "sqlite" => format!("sqlite://{}", dir.path().join("bench.db").display()),
        _ => {
            sqlx::any::install_default_drivers();
            let name = format!("cmdb_bench_{}", &random_hex()[..8]);
            let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{}/postgres", args.postgres))
                .await
                .context("connecting to PostgreSQL")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
            format!("{}/{name}", args.postgres)
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let key = Command::new(&args.server)
        .args(["--database-url", &url, "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["agent-key", "create", "--scope", "collector", "--name", "bench"])
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {} (build it with cargo build --release)", args.server.display()))?;
    let text = String::from_utf8_lossy(&key.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = \"")).and_then(|v| v.strip_suffix('"')).map(str::to_owned))
    };
    let (Some(key_id), Some(secret)) = (field("key_id"), field("secret")) else {
        bail!("no key from agent-key create: {text}")
    };
    let child = Command::new(&args.server)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--database-url", &url, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("CMDB_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(Server { child, base, key_id, secret, url, _dir: dir });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("cmdb-server did not become ready")
}

/// A realistic report: 2 sockets, 8 DIMMs, 6 disks, 4 NICs.
fn report(host: usize, variant: u64, seq: u64) -> Value {
    let hostname = format!("bench-{host:05}");
    let modules: Vec<Value> = (0..8)
        .map(|i| {
            json!({"slot": format!("DIMM_{i}"), "capacity_mb": if i == 0 { 16384 + (variant % 2) * 16384 } else { 16384 },
                   "type": "DDR4", "speed_mts": 2400, "manufacturer": "Samsung", "sn": format!("{host:05}{i:02}"), "part_number": "M393A2K40BB1-CRC"})
        })
        .collect();
    let disks: Vec<Value> = (0..6)
        .map(|i| {
            json!({"slot": format!("32:{i}"), "capacity_bytes": 600_127_266_816u64 + if i == 5 { variant % 3 } else { 0 },
                   "model": "ST600MM0006", "sn": format!("S0M{host:05}{i}"), "pd_type": "SAS", "media": "hdd", "vendor": "Seagate", "firmware": "LS0A"})
        })
        .collect();
    let interfaces: Vec<Value> = (0..4)
        .map(|i| {
            json!({"name": format!("eth{i}"), "hwaddr": format!("00:1c:42:{:02x}:{:02x}:{i:02x}", host / 256, host % 256),
                   "up": true, "carrier": i < 2, "mtu": 1500, "master": null,
                   "ipv4": [format!("10.{}.{}.{}/24", i, host / 256, host % 256)], "ipv6": [format!("fe80::{host:x}:{i}/64")]})
        })
        .collect();
    json!({
        "schema": 1,
        "report_id": uuid::Uuid::new_v4().to_string(),
        "collected_at": (chrono::Utc::now() + chrono::Duration::microseconds(seq as i64)).to_rfc3339(),
        "agent": {"version": "bench", "mode": "ssh"},
        "host": {"hostname": hostname, "previous_hostname": null, "machine_id": format!("{:032x}", host + 1)},
        "sections": {
            "basic": {"status": "ok", "data": {"hostname": hostname, "os_platform": "linux", "os_name": "CentOS Linux", "os_version": "7.9", "kernel": "3.10.0-1160", "arch": "x86_64"}},
            "cpu": {"status": "ok", "data": {"cpu_count": 32 + variant % 2 * 16, "cpu_physical_count": 2, "cpu_model": "Intel(R) Xeon(R) CPU E5-2620 v4 @ 2.10GHz"}},
            "board": {"status": "ok", "data": {"manufacturer": "Dell Inc.", "model": "PowerEdge R630", "sn": format!("SN{host:06}"), "uuid": format!("4c4c4544-0000-1000-8000-{host:012x}")}},
            "memory": {"status": "ok", "data": {"total_mb": 131072 + (variant % 2) * 16384, "slots_total": 24, "modules": modules}},
            "disk": {"status": "ok", "data": {"disks": disks}},
            "nic": {"status": "ok", "data": {"interfaces": interfaces}}
        }
    })
}

struct Stats {
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

async fn send(http: &reqwest::Client, server: &Server, body: Vec<u8>) -> Result<u16> {
    let header = cmdb_model::signing::authorization(
        &server.key_id,
        &server.secret,
        "POST",
        "/api/v1/reports",
        chrono::Utc::now().timestamp(),
        &random_hex(),
        &body,
    );
    let response = http
        .post(format!("{}/api/v1/reports", server.base))
        .header("content-type", "application/json")
        .header("authorization", header)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    Ok(status)
}

async fn phase(args: &Args, server: &Arc<Server>, changed: bool, seq_base: u64) -> Stats {
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build().unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, server, stop, next) = (http.clone(), server.clone(), stop.clone(), next.clone());
        let hosts = args.hosts as u64;
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut errors) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let host = (n % hosts) as usize;
                // Unchanged: variant stays 0. Changed: each round over the hosts flips the variant.
                let variant = if changed { n / hosts + 1 } else { 0 };
                let body = serde_json::to_vec(&report(host, variant, seq_base + n)).unwrap_or_default();
                let t = Instant::now();
                match send(&http, &server, body).await {
                    Ok(200) => ok += 1,
                    _ => errors += 1,
                }
                latencies.push(t.elapsed());
            }
            (ok, errors, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut stats = Stats { ok: 0, errors: 0, latencies: Vec::new(), elapsed: Duration::ZERO };
    for worker in workers {
        if let Ok((ok, errors, latencies)) = worker.await {
            stats.ok += ok;
            stats.errors += errors;
            stats.latencies.extend(latencies);
        }
    }
    stats.elapsed = started.elapsed();
    stats.latencies.sort_unstable();
    stats
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn run_backend(args: &Args, backend: &str) -> Result<()> {
    let server = Arc::new(start(args, backend).await?);
    let durability = {
        let db = cmdb_server::db::Db::open(&server.url, &cmdb_server::db::PoolSettings::default()).await?;
        let text = db.durability().await?;
        db.close().await;
        text
    };
    // Seed: one report per host creates the assets.
    let http = reqwest::Client::new();
    let seeding = Instant::now();
    let mut seeded = 0;
    for chunk in (0..args.hosts).collect::<Vec<_>>().chunks(args.concurrency) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|host| {
                let (http, server) = (http.clone(), server.clone());
                let body = serde_json::to_vec(&report(*host, 0, 0)).unwrap_or_default();
                tokio::spawn(async move { send(&http, &server, body).await })
            })
            .collect();
        for task in tasks {
            if matches!(task.await, Ok(Ok(200))) {
                seeded += 1;
            }
        }
    }
    println!(
        "{backend}: seeded {seeded}/{} hosts in {:.1} s ({durability})",
        args.hosts,
        seeding.elapsed().as_secs_f64()
    );
    for (name, changed, base) in [("unchanged", false, 1_000_000_000), ("changed", true, 2_000_000_000)] {
        let stats = phase(args, &server, changed, base).await;
        let rate = stats.ok as f64 / stats.elapsed.as_secs_f64();
        println!(
            "{backend:<8} {name:<9} {rate:>8.0} reports/s   p50 {:>6.1} ms   p99 {:>6.1} ms   ok {} errors {}   (concurrency {}, {} hosts, {} s)",
            percentile(&stats.latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&stats.latencies, 0.99).as_secs_f64() * 1000.0,
            stats.ok,
            stats.errors,
            args.concurrency,
            args.hosts,
            args.seconds
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "cmdb-bench ingest: {} hosts, concurrency {}, {} s per phase, {} CPUs",
        args.hosts,
        args.concurrency,
        args.seconds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if matches!(args.backend, BackendArg::Sqlite | BackendArg::Both) {
        run_backend(&args, "sqlite").await?;
    }
    if matches!(args.backend, BackendArg::Postgres | BackendArg::Both) {
        run_backend(&args, "postgres").await?;
    }
    Ok(())
}
