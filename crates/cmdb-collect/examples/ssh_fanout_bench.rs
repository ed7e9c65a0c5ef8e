//! SSH fan-out benchmark: every built-in collector on 50 loopback SSH hosts, cold connections,
//! reports parsed and written to disk, against `xargs -P50 ssh` running the same bundled script
//! over the same hosts with the OpenSSH client.
//!
//! ```text
//! cargo run --release -p cmdb-collect --example ssh_fanout_bench [-- ROUNDS]
//! ```
//!
//! Needs root (it starts a private sshd with `scripts/loopback-sshd.sh`, DIR=/tmp/cmdb-ssh-bench,
//! port 2422, 127.0.0.2..51; apt-get installs openssh-server if it is missing). Each round runs
//! both sides once; the russh figure covers loading the key and known_hosts, connecting,
//! authenticating, running the script, splitting and parsing the outputs and writing one JSON
//! report per host. The xargs figure covers ssh connecting and running the script, its output
//! written to one file per host (no parsing). Target: russh <= 1.0 s on a 2-core machine.
//!
//! Also printed: the CPU time of the script itself run locally (times 50 hosts over the CPUs, a
//! floor that no transport can beat, since every host is this machine), the client-side CPU
//! time of each tool, and the russh run with an empty script (the transport's own cost: connect,
//! handshake, authentication, exec, close, most of it in sshd). On a machine shared with other
//! work, run it as `nice -n -20 cargo run ...`: the sshd it starts inherits the priority, so both
//! columns measure the SSH work rather than the neighbours.

#[path = "../tests/ssh_support/mod.rs"]
mod ssh_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmdb_collect::transport::ssh::SshClient;
use cmdb_collect::{Become, Plan};
use ssh_support::LoopbackHosts;

const HOSTS: usize = 50;

/// CPU seconds used so far by this process (user + system) and by its waited-for children,
/// from /proc/self/stat (fields 14-17, in clock ticks of 1/100 s on Linux).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0.0) / 100.0;
    (field(14) + field(15), field(16) + field(17))
}
const CONCURRENCY: usize = 64;

/// One russh round: returns the wall time and the number of hosts whose report was written.
async fn russh_round(
    hosts: &LoopbackHosts,
    plan: &Arc<Plan>,
    script: &Arc<String>,
    boundary: &Arc<String>,
    out: &Path,
) -> (Duration, usize) {
    let started = Instant::now();
    let client = SshClient::new(hosts.options()).expect("client");
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut runs = tokio::task::JoinSet::new();
    for address in &hosts.addresses {
        let (client, target, script, plan, boundary) =
            (client.clone(), hosts.target(address), Arc::clone(script), Arc::clone(plan), Arc::clone(boundary));
        let limit = Arc::clone(&limit);
        let path = out.join(format!("{address}.json"));
        let address = address.clone();
        runs.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore");
            let output = client.run(&target, &script).await.map_err(|e| format!("{address}: {e}"))?;
            // Parsing is CPU work: keep it off the I/O threads that drive the other connections.
            tokio::task::spawn_blocking(move || {
                let outputs = plan.split(&output.stdout, &boundary);
                let sections = plan.sections(&outputs);
                let json = serde_json::to_vec(&sections).map_err(|e| e.to_string())?;
                std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))
            })
            .await
            .map_err(|e| e.to_string())?
        });
    }
    let mut ok = 0;
    while let Some(joined) = runs.join_next().await {
        match joined.expect("task") {
            Ok(()) => ok += 1,
            Err(e) => eprintln!("russh: {e}"),
        }
    }
    (started.elapsed(), ok)
}

/// The transport alone: the same 50 cold connections running an empty script, so the figure
/// is connect, handshake, authentication, exec and close, without the probes' work.
async fn russh_empty_round(hosts: &LoopbackHosts) -> Duration {
    let started = Instant::now();
    let client = SshClient::new(hosts.options()).expect("client");
    let mut runs = tokio::task::JoinSet::new();
    for address in &hosts.addresses {
        let (client, target) = (client.clone(), hosts.target(address));
        runs.spawn(async move { client.run(&target, "exit 0\n").await });
    }
    while let Some(joined) = runs.join_next().await {
        joined.expect("task").expect("empty script runs");
    }
    started.elapsed()
}

/// One OpenSSH round: `xargs -P50 ssh -F ssh_config HOST sh -s < script > out/HOST.out`.
fn xargs_round(hosts: &LoopbackHosts, script_path: &Path, out: &Path) -> (Duration, usize) {
    let inventory = hosts.addresses.join("\n") + "\n";
    let command = format!(
        "ssh -F {} \"$1\" sh -s < {} > {}/\"$1\".out",
        hosts.dir.join("ssh_config").display(),
        script_path.display(),
        out.display()
    );
    let started = Instant::now();
    let mut child = Command::new("xargs")
        .args(["-P", &HOSTS.to_string(), "-n", "1", "sh", "-c", &command, "sh"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("xargs runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(inventory.as_bytes()).expect("inventory");
    }
    let status = child.wait().expect("xargs waits");
    let elapsed = started.elapsed();
    if !status.success() {
        eprintln!("xargs/ssh: some hosts failed ({status})");
    }
    let ok = hosts
        .addresses
        .iter()
        .filter(|a| std::fs::metadata(out.join(format!("{a}.out"))).is_ok_and(|m| m.len() > 0))
        .count();
    (elapsed, ok)
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let hosts = LoopbackHosts::up(Path::new("/tmp/cmdb-ssh-bench"), 2422, HOSTS);
    let plan = Arc::new(Plan::all_builtin());
    let boundary = Arc::new(cmdb_collect::bundle::new_boundary());
    let script = Arc::new(plan.script(Become::None, &boundary));
    let work = tempfile::tempdir().expect("tempdir");
    let script_path = work.path().join("probe.sh");
    std::fs::write(&script_path, script.as_bytes()).expect("script");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");

    println!(
        "{HOSTS} loopback hosts, {} probes ({} collectors), script {} bytes, {} CPUs",
        plan.probes().len(),
        plan.collector_names().len(),
        script.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    // What the script itself costs on a host, run here one at a time. Its CPU time, times 50
    // hosts, shared by the CPUs, is a floor for any transport: every host is this machine.
    let (_, children_before) = cpu_seconds();
    let mut local_times: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new("sh")
                .arg(&script_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("sh runs");
            assert!(status.success(), "the script runs locally");
            started.elapsed()
        })
        .collect();
    let (_, children_after) = cpu_seconds();
    local_times.sort();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let script_cpu = (children_after - children_before) / 5.0;
    println!(
        "the script alone, locally: {:.3} s wall, {script_cpu:.3} s CPU; {HOSTS} hosts on {cpus} CPUs need >= {:.3} s for the scripts alone",
        local_times[2].as_secs_f64(),
        script_cpu * HOSTS as f64 / cpus as f64
    );
    println!(
        "{:>5}  {:>14}  {:>20}  {:>22}  {:>20}",
        "round", "russh (s)", "xargs -P50 ssh (s)", "client CPU russh/ssh", "russh, empty script"
    );
    let (mut russh_times, mut ssh_times) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let russh_out = work.path().join(format!("russh-{round}"));
        let ssh_out = work.path().join(format!("ssh-{round}"));
        std::fs::create_dir_all(&russh_out).expect("mkdir");
        std::fs::create_dir_all(&ssh_out).expect("mkdir");
        let (self_before, children_before) = cpu_seconds();
        let (russh_time, russh_ok) = runtime.block_on(russh_round(&hosts, &plan, &script, &boundary, &russh_out));
        let (self_after, _) = cpu_seconds();
        let (ssh_time, ssh_ok) = xargs_round(&hosts, &script_path, &ssh_out);
        let (_, children_after) = cpu_seconds();
        let empty_time = runtime.block_on(russh_empty_round(&hosts));
        println!(
            "{round:>5}  {:>8.3} {:>5}  {:>14.3} {:>5}  {:>10.2} s / {:>5.2} s  {:>18.3} s",
            russh_time.as_secs_f64(),
            format!("{russh_ok}/{HOSTS}"),
            ssh_time.as_secs_f64(),
            format!("{ssh_ok}/{HOSTS}"),
            self_after - self_before,
            children_after - children_before,
            empty_time.as_secs_f64()
        );
        assert_eq!(russh_ok, HOSTS, "every russh host must succeed");
        russh_times.push(russh_time);
        ssh_times.push(ssh_time);
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (russh_median, ssh_median) = (median(&mut russh_times), median(&mut ssh_times));
    println!(
        "median: russh {:.3} s, xargs -P50 ssh {:.3} s (target: russh <= 1.000 s) -> {}",
        russh_median.as_secs_f64(),
        ssh_median.as_secs_f64(),
        if russh_median <= Duration::from_secs(1) { "met" } else { "MISSED" }
    );
}
