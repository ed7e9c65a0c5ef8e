//! Collecting many hosts at once (SSH, Salt) and the end-of-run summary.
//!
//! The plan and its bundled script are built once per run. Each host's report is handed on
//! (delivered, or written for a dry run) as soon as that host is done, not at the end of the run,
//! so a crash or Ctrl-C half-way loses nothing already collected.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use cmdb_collect::plan::HostContext;
use cmdb_collect::transport::salt::{self, SaltOptions};
use cmdb_collect::transport::ssh::{SshClient, SshTarget};
use cmdb_collect::transport::{HostFailure, ScriptOutput};
use cmdb_collect::{Become, Exit, Plan};
use cmdb_model::report::{Mode, WireReport};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::collect::announce_rename;
use crate::delivery::{Deliverer, Outcome};
use crate::state::HostnameState;
use crate::{atomic, logging, terminal};

/// Where finished reports go.
pub enum Sink {
    /// To the server (the normal case).
    Deliver(Arc<Deliverer>),
    /// Dry run: one compact JSON report per line on stdout.
    Stdout(Mutex<std::io::Stdout>),
    /// Dry run: `DIR/<target>.json`, one file per host.
    Directory(PathBuf),
}

/// What became of a collected host's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handed {
    /// Delivered, spooled or rejected (see [`Outcome`]).
    Delivery(Outcome),
    /// Written for a dry run.
    Written,
    /// Neither delivered nor written (the disk is full, stdout closed, ...).
    Lost(String),
}

impl Sink {
    /// Hands one report on.
    pub async fn take(&self, target: &str, report: &WireReport) -> Handed {
        match self {
            Sink::Deliver(deliverer) => match deliverer.deliver(target, report).await {
                Ok(outcome) => Handed::Delivery(outcome),
                Err(e) => {
                    tracing::error!(target, error = %e, "report lost: it could be neither delivered nor spooled");
                    Handed::Lost(e.to_string())
                }
            },
            Sink::Stdout(stdout) => {
                let line = match serde_json::to_string(report) {
                    Ok(line) => line,
                    Err(e) => return Handed::Lost(e.to_string()),
                };
                let mut out = stdout.lock().unwrap_or_else(|p| p.into_inner());
                match writeln!(out, "{line}").and_then(|()| out.flush()) {
                    Ok(()) => Handed::Written,
                    Err(e) => Handed::Lost(format!("stdout: {e}")),
                }
            }
            Sink::Directory(dir) => {
                let path = dir.join(format!("{}.json", file_safe(target)));
                let result = serde_json::to_vec_pretty(report)
                    .map_err(std::io::Error::other)
                    .and_then(|bytes| atomic::write(&path, &bytes));
                match result {
                    Ok(()) => Handed::Written,
                    Err(e) => Handed::Lost(format!("{}: {e}", path.display())),
                }
            }
        }
    }
}

/// A target name made safe as a file name.
pub fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// One host's end result.
#[derive(Debug, Clone)]
pub struct HostRecord {
    /// The target as the inventory, server or Salt names it.
    pub target: String,
    /// The collected report's sections that failed, and what became of the report; or why the
    /// host could not be collected at all.
    pub result: Result<(Vec<String>, Handed), HostFailure>,
}

/// The end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Every host, in completion order.
    pub records: Vec<HostRecord>,
    /// How long the run took.
    pub elapsed: Duration,
    /// Hosts never started because the run was interrupted (Ctrl-C, SIGTERM).
    pub not_started: usize,
}

/// Exit status of an interrupted run (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Watches for Ctrl-C and SIGTERM: the first stops new hosts from starting (those in flight
/// finish and their reports are delivered or spooled); a second Ctrl-C exits at once.
pub fn interrupt_watch() -> tokio::sync::watch::Receiver<bool> {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            result = tokio::signal::ctrl_c() => if result.is_err() { return },
            () = terminate => {}
        }
        tracing::warn!("interrupted: no new host starts; waiting for those in flight (Ctrl-C again stops at once)");
        let _ = sender.send(true);
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    });
    receiver
}

/// Exit status when every host was collected but some reports wait in the spool (EX_TEMPFAIL).
pub const EXIT_SPOOLED: u8 = 75;

impl Summary {
    /// Hosts collected and handed on (delivered, spooled or written).
    pub fn ok(&self) -> usize {
        self.records.iter().filter(|r| !self.is_failed(r)).count()
    }

    fn is_failed(&self, record: &HostRecord) -> bool {
        matches!(record.result, Err(_) | Ok((_, Handed::Lost(_))) | Ok((_, Handed::Delivery(Outcome::Rejected { .. }))))
    }

    /// Failed hosts by bucket.
    pub fn failures(&self) -> BTreeMap<String, usize> {
        let mut buckets = BTreeMap::new();
        for record in &self.records {
            let bucket = match &record.result {
                Err(failure) => failure.kind().to_string(),
                Ok((_, Handed::Delivery(Outcome::Rejected { .. }))) => "rejected".to_owned(),
                Ok((_, Handed::Lost(_))) => "not saved".to_owned(),
                Ok(_) => continue,
            };
            *buckets.entry(bucket).or_insert(0) += 1;
        }
        buckets
    }

    fn count(&self, f: impl Fn(&Handed) -> bool) -> usize {
        self.records.iter().filter(|r| matches!(&r.result, Ok((_, h)) if f(h))).count()
    }

    /// Reports delivered.
    pub fn delivered(&self) -> usize {
        self.count(|h| matches!(h, Handed::Delivery(Outcome::Delivered(_))))
    }

    /// Reports spooled.
    pub fn spooled(&self) -> usize {
        self.count(|h| matches!(h, Handed::Delivery(Outcome::Spooled(_))))
    }

    /// The process exit status: 0 all good, 1 any host failed (or its report was refused),
    /// [`EXIT_SPOOLED`] when all were collected but some reports wait in the spool,
    /// [`EXIT_INTERRUPTED`] when hosts were left out because the run was interrupted.
    pub fn exit_code(&self) -> u8 {
        if self.not_started > 0 {
            EXIT_INTERRUPTED
        } else if self.records.iter().any(|r| self.is_failed(r)) {
            1
        } else if self.spooled() > 0 {
            EXIT_SPOOLED
        } else {
            0
        }
    }

    /// The human summary printed at the end of every run.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let failures = self.failures();
        let failed: usize = failures.values().sum();
        let _ = write!(out, "ok {}, failed {failed}", self.ok());
        if !failures.is_empty() {
            // The transport buckets always show, so a glance tells "all unreachable" from "auth".
            let mut parts: Vec<String> = ["unreachable", "auth", "host key", "timeout"]
                .iter()
                .map(|k| format!("{k} {}", failures.get(*k).copied().unwrap_or(0)))
                .collect();
            parts.extend(
                failures
                    .iter()
                    .filter(|(k, _)| !["unreachable", "auth", "host key", "timeout"].contains(&k.as_str()))
                    .map(|(k, n)| format!("{k} {n}")),
            );
            let _ = write!(out, " ({})", parts.join(", "));
        }
        if self.not_started > 0 {
            let _ = write!(out, ", not started {} (interrupted)", self.not_started);
        }
        let _ = writeln!(out, " in {:.1}s", self.elapsed.as_secs_f64());
        let rejected = self.count(|h| matches!(h, Handed::Delivery(Outcome::Rejected { .. })));
        let handed_to_server = self.delivered() + self.spooled() + rejected;
        if handed_to_server > 0 {
            let _ = writeln!(
                out,
                "reports: delivered {}, spooled {}, rejected {rejected}",
                self.delivered(),
                self.spooled()
            );
        }
        let mut section_failures: BTreeMap<&str, usize> = BTreeMap::new();
        for record in &self.records {
            if let Ok((sections, _)) = &record.result {
                for s in sections {
                    *section_failures.entry(s.as_str()).or_insert(0) += 1;
                }
            }
        }
        if !section_failures.is_empty() {
            let parts: Vec<String> = section_failures
                .iter()
                .map(|(s, n)| format!("{s} on {n} host{}", if *n == 1 { "" } else { "s" }))
                .collect();
            let _ = writeln!(out, "collector errors (reported in the sections): {}", parts.join(", "));
        }
        // Targets and reasons come from hosts, Salt and the server: shown, never obeyed
        // (terminal::line), one line each.
        let width = self.records.iter().map(|r| terminal::line(&r.target).chars().count()).max().unwrap_or(0).min(40);
        let mut failed_lines: Vec<String> = self
            .records
            .iter()
            .filter_map(|r| {
                let why = match &r.result {
                    Err(failure) => failure.to_string(),
                    Ok((_, Handed::Delivery(Outcome::Rejected { status, message }))) => {
                        format!("rejected by the server (HTTP {status}): {message}")
                    }
                    Ok((_, Handed::Lost(why))) => format!("report not saved: {why}"),
                    Ok(_) => return None,
                };
                let target = terminal::line(&r.target);
                Some(format!("  {target:width$}  {}", terminal::line(why.lines().next().unwrap_or_default())))
            })
            .collect();
        if !failed_lines.is_empty() {
            failed_lines.sort();
            let _ = writeln!(out, "failed hosts:");
            for line in failed_lines {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

/// Progress display: a bar on a terminal, nothing otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar for `total` hosts when stderr is a terminal and `enabled`.
    pub fn new(total: usize, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} hosts ({per_sec}, eta {eta}) {msg}",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        logging::set_progress_bar(&bar);
        Progress { bar: Some(bar) }
    }

    fn host_done(&self, failed: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if failed > 0 {
                bar.set_message(format!("{failed} failed"));
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            logging::clear_progress_bar();
        }
    }
}

/// What every host of a run shares.
pub struct RunContext {
    /// The collection plan.
    pub plan: Plan,
    /// `become`.
    pub become_root: Become,
    /// Where reports go.
    pub sink: Sink,
    /// Last delivered host names (for `previous_hostname`).
    pub state: Arc<HostnameState>,
    /// Transport mode written into reports.
    pub mode: Mode,
}

/// One host of a fan-out: the state key and how to reach it.
#[derive(Debug, Clone)]
pub struct Job<T> {
    /// State key and summary name.
    pub key: String,
    /// The fallback host name for the report.
    pub name: String,
    /// The host name the server has for this host (targets from `--from-server`). When the host
    /// now calls itself something else, the report carries this name as `previous_hostname`, so
    /// it lands on the asset the server listed, even one registered by hand with no hardware keys.
    pub server_hostname: Option<String>,
    /// The asset the server listed this host as, sent as the report's `collected_for`; set only
    /// for targets from collect-targets of a server that said it accepts the member.
    pub collected_for: Option<i64>,
    /// Transport-specific address.
    pub target: T,
}

impl<T> Job<T> {
    /// A job for `target`, known as `name` (also its state key).
    pub fn new(name: impl Into<String>, target: T) -> Self {
        let name = name.into();
        Job { key: name.clone(), name, server_hostname: None, collected_for: None, target }
    }
}

/// Turns one host's script output into a report and hands it on.
async fn finish_host<T>(
    context: &RunContext,
    job: &Job<T>,
    boundary: &str,
    collected_at: chrono::DateTime<Utc>,
    output: Result<ScriptOutput, HostFailure>,
) -> HostRecord {
    let (key, name) = (job.key.as_str(), job.name.as_str());
    let output = match output {
        Ok(output) => output,
        Err(failure) => return HostRecord { target: key.to_owned(), result: Err(failure) },
    };
    let outputs = context.plan.split(&output.stdout, boundary);
    if outputs.by_id.values().all(|o| o.exit == Exit::Lost) {
        // Not one probe frame came back: the script never ran (no sh, a login banner eating the
        // session, a forced command). That is a failed host, not a report full of errors.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
        let status = output.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".to_owned());
        return HostRecord {
            target: key.to_owned(),
            result: Err(HostFailure::Other(format!("the probe script did not run (exit status {status}): {first}"))),
        };
    }
    let host = context
        .plan
        .report(&outputs, &HostContext { mode: context.mode, collected_at, fallback_hostname: Some(name.to_owned()) });
    let mut report = host.report;
    match &job.server_hostname {
        Some(listed) if listed != &report.host.hostname => {
            tracing::info!(target = key, listed = %listed, now = %report.host.hostname, "host name differs from the server's");
            report.host.previous_hostname = Some(listed.clone());
        }
        Some(_) => {}
        None => announce_rename(&mut report, &context.state, key),
    }
    // Before the report is signed or spooled: the server then refuses it if it resolves to
    // another asset than the one it listed (a hostile target printing a neighbour's identity).
    report.collected_for = job.collected_for;
    let handed = context.sink.take(key, &report).await;
    HostRecord { target: key.to_owned(), result: Ok((host.failed_sections, handed)) }
}

/// Collects every SSH job, at most `concurrency` at once, one connection per host.
pub async fn run_ssh(
    context: Arc<RunContext>,
    client: Arc<SshClient>,
    jobs: Vec<Job<SshTarget>>,
    concurrency: usize,
    progress: &Progress,
) -> Summary {
    let started = Instant::now();
    let boundary: Arc<str> = cmdb_collect::bundle::new_boundary().into();
    let script: Arc<str> = context.plan.script(context.become_root, &boundary).into();
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut summary = Summary::default();
    let mut failed = 0;
    let mut interrupted = interrupt_watch();
    let total = jobs.len();
    for (index, job) in jobs.into_iter().enumerate() {
        // Waiting for a permit before spawning keeps at most `concurrency` hosts (and sockets) in flight.
        let permit = tokio::select! {
            permit = semaphore.clone().acquire_owned() => permit.ok(),
            _ = interrupted.wait_for(|stop| *stop) => None,
        };
        let Some(permit) = permit.filter(|_| !*interrupted.borrow()) else {
            summary.not_started = total - index;
            break;
        };
        let (context, client, boundary, script) = (context.clone(), client.clone(), boundary.clone(), script.clone());
        tasks.spawn(async move {
            let collected_at = Utc::now();
            let output = client.run(&job.target, &script).await;
            let record = finish_host(&context, &job, &boundary, collected_at, output).await;
            drop(permit);
            record
        });
        while let Some(done) = tasks.try_join_next() {
            record_done(&mut summary, done, progress, &mut failed);
        }
    }
    while let Some(done) = tasks.join_next().await {
        record_done(&mut summary, done, progress, &mut failed);
    }
    summary.elapsed = started.elapsed();
    summary
}

fn record_done(
    summary: &mut Summary,
    done: Result<HostRecord, tokio::task::JoinError>,
    progress: &Progress,
    failed: &mut usize,
) {
    let record = match done {
        Ok(record) => record,
        Err(e) => {
            HostRecord { target: "(unknown)".to_owned(), result: Err(HostFailure::Other(format!("task failed: {e}"))) }
        }
    };
    let is_failure = matches!(
        record.result,
        Err(_) | Ok((_, Handed::Lost(_))) | Ok((_, Handed::Delivery(Outcome::Rejected { .. })))
    );
    if is_failure {
        *failed += 1;
    }
    progress.host_done(*failed);
    summary.records.push(record);
}

/// Reports handled at the same time once Salt returned a batch (parsing and delivery).
const SALT_PARALLEL_REPORTS: usize = 16;

/// Collects minions through Salt, one `salt` call per batch; a batch's reports are delivered
/// while the next batch runs.
pub async fn run_salt(
    context: Arc<RunContext>,
    options: SaltOptions,
    jobs: Vec<Job<String>>,
    progress: &Progress,
) -> Summary {
    let started = Instant::now();
    let boundary: Arc<str> = cmdb_collect::bundle::new_boundary().into();
    let script = context.plan.script(context.become_root, &boundary);
    let semaphore = Arc::new(Semaphore::new(SALT_PARALLEL_REPORTS));
    let mut tasks = JoinSet::new();
    let mut summary = Summary::default();
    let mut failed = 0;
    let batch_size = options.batch_size.max(1);
    let interrupted = interrupt_watch();
    for (number, batch) in jobs.chunks(batch_size).enumerate() {
        if *interrupted.borrow() {
            summary.not_started = jobs.len() - number * batch_size;
            break;
        }
        let minions: Vec<String> = batch.iter().map(|j| j.target.clone()).collect();
        let collected_at = Utc::now();
        let results = salt::run(&options, &minions, &script).await;
        let mut by_minion: BTreeMap<String, Result<ScriptOutput, HostFailure>> = results.into_iter().collect();
        for job in batch {
            let output = by_minion
                .remove(&job.target)
                .unwrap_or_else(|| Err(HostFailure::Other("Salt returned nothing for this minion".to_owned())));
            let Ok(permit) = semaphore.clone().acquire_owned().await else { break };
            let (context, boundary, job) = (context.clone(), boundary.clone(), job.clone());
            tasks.spawn(async move {
                let record = finish_host(&context, &job, &boundary, collected_at, output).await;
                drop(permit);
                record
            });
            while let Some(done) = tasks.try_join_next() {
                record_done(&mut summary, done, progress, &mut failed);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        record_done(&mut summary, done, progress, &mut failed);
    }
    summary.elapsed = started.elapsed();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Receipt;
    use cmdb_collect::transport::FailureKind;

    fn record(target: &str, result: Result<(Vec<String>, Handed), HostFailure>) -> HostRecord {
        HostRecord { target: target.into(), result }
    }

    #[test]
    fn summary_buckets_lines_and_exit_codes() {
        let delivered = Handed::Delivery(Outcome::Delivered(Receipt::default()));
        let mut summary = Summary {
            records: vec![
                record("web-01", Ok((vec![], delivered.clone()))),
                record("web-02", Ok((vec!["disk".into()], delivered))),
                record("web-03", Err(HostFailure::Unreachable("connection refused".into()))),
                record("web-04", Err(HostFailure::Auth("publickey".into()))),
                record("web-05", Err(HostFailure::Unreachable("no route to host".into()))),
            ],
            elapsed: Duration::from_millis(1500),
            not_started: 0,
        };
        let text = summary.render();
        assert!(text.starts_with("ok 2, failed 3 (unreachable 2, auth 1, host key 0, timeout 0) in 1.5s\n"), "{text}");
        assert!(text.contains("disk on 1 host"), "{text}");
        assert!(text.contains("  web-03  unreachable: connection refused\n"), "{text}");
        assert!(text.contains("  web-04  authentication failed: publickey\n"), "{text}");
        assert_eq!(summary.exit_code(), 1);

        summary.records.retain(|r| r.result.is_ok());
        assert_eq!(summary.exit_code(), 0);
        summary.records.push(record("web-06", Ok((vec![], Handed::Delivery(Outcome::Spooled("down".into()))))));
        assert_eq!(summary.exit_code(), EXIT_SPOOLED);
        summary.records.push(record(
            "web-07",
            Ok((vec![], Handed::Delivery(Outcome::Rejected { status: 400, message: "bad".into() }))),
        ));
        assert_eq!(summary.exit_code(), 1);
        assert!(summary.render().contains("rejected by the server (HTTP 400): bad"));
        summary.not_started = 3;
        assert_eq!(summary.exit_code(), EXIT_INTERRUPTED);
        assert!(summary.render().contains(", not started 3 (interrupted) in "), "{}", summary.render());
        assert_eq!(FailureKind::HostKey.to_string(), "host key");
    }

    #[test]
    fn the_summary_shows_hostile_text_escaped() {
        let summary = Summary {
            records: vec![
                record("evil\x1b[2J", Err(HostFailure::Other("Salt answered: \x1b]0;pwned\x07\rok \u{9b}31m".into()))),
                record(
                    "web-01",
                    Ok((vec![], Handed::Delivery(Outcome::Rejected { status: 400, message: "bad\x1b[8m".into() }))),
                ),
            ],
            elapsed: Duration::from_millis(100),
            not_started: 0,
        };
        let text = summary.render();
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("  evil\\x1b[2J  Salt answered: \\x1b]0;pwned\\x07\\rok \\u{9b}31m\n"), "{text}");
        assert!(text.contains("rejected by the server (HTTP 400): bad\\x1b[8m"), "{text}");
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("[2001:db8::1]:22"), "_2001_db8__1__22");
        assert_eq!(file_safe("web-01.example.com"), "web-01.example.com");
        assert_eq!(file_safe("../etc/passwd"), ".._etc_passwd");
    }
}
