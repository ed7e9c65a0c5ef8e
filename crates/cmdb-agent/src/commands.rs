//! What each subcommand does. `main` parses the command line and calls [`execute`]; everything
//! else lives in the library modules so tests (and the server's end-to-end test) can drive it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use cmdb_collect::transport::HostFailure;
use cmdb_collect::transport::salt::check_minion_id;
use cmdb_collect::transport::ssh::{SshClient, SshTarget};
use cmdb_model::report::Mode;

use crate::cli::{Cli, Command, FanoutArgs, SpoolAction};
use crate::client::ServerClient;
use crate::collect::{announce_rename, collect_local, collect_replay, log_failed_sections};
use crate::config::{self, ConfigError, ConfigInputs, LoadedConfig};
use crate::delivery::{Deliverer, RetryPolicy};
use crate::fanout::{self, Handed, HostRecord, Job, Progress, RunContext, Sink, Summary};
use crate::inventory;
use crate::spool::Spool;
use crate::state::{HostnameState, LOCAL_TARGET};
use crate::{listing, local, terminal};

/// Exit status for configuration errors (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// Runs the parsed command line; the exit status says how it went.
pub fn execute(cli: Cli) -> ExitCode {
    let default_level = match cli.command {
        Command::Collect { .. } | Command::Collectors { .. } | Command::Config => "warn",
        _ => "info",
    };
    crate::logging::init(default_level, cli.verbose, cli.quiet);
    let fan_out = matches!(cli.command, Command::Ssh(_) | Command::Salt(_));
    let runtime = if fan_out {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    } else {
        // One host: a single thread starts faster, and `collect` is measured in milliseconds.
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    let result = runtime.context("cannot start the async runtime").and_then(|rt| rt.block_on(dispatch(cli)));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = if e.chain().any(|c| c.downcast_ref::<ConfigError>().is_some()) { EXIT_CONFIG } else { 1 };
            // The chain may quote the server or a host (a refused request, a bad answer).
            let _ = writeln!(std::io::stderr(), "cmdb-agent: {}", terminal::text(&format!("{e:#}")));
            ExitCode::from(code)
        }
    }
}

/// Loads the configuration from the process environment and the command line.
pub fn load_config(cli: &Cli) -> Result<LoadedConfig> {
    let inputs = ConfigInputs::from_process(cli.config.clone(), cli.flag_settings());
    Ok(config::load(&inputs)?)
}

async fn dispatch(cli: Cli) -> Result<u8> {
    let loaded = load_config(&cli)?;
    match &cli.command {
        Command::Collect { replay, .. } => collect(&loaded, replay.as_deref()).await,
        Command::Run { replay, .. } => {
            let summary = run(&loaded, replay.as_deref()).await?;
            eprint!("{}", summary.render());
            Ok(summary.exit_code())
        }
        Command::Ssh(args) => ssh(&loaded, args).await,
        Command::Salt(args) => salt(&loaded, args).await,
        Command::Collectors { sudo_user } => {
            // Unknown names in `collectors` are a startup error for every command that plans.
            loaded.plan()?;
            let plan_names = loaded.config.collectors.clone();
            let listed = listing::collectors(&plan_names, &loaded.externals());
            let user =
                sudo_user.clone().or_else(|| loaded.config.ssh.user.clone()).unwrap_or_else(|| "cmdb".to_owned());
            print!("{}", listing::render(&listed, &user, &local::probe_path()));
            Ok(0)
        }
        Command::Config => {
            print!("{}", render_config(&loaded));
            // Printed first, so the listing shows where the offending list came from.
            loaded.plan()?;
            Ok(0)
        }
        Command::Spool { action } => spool(&loaded, *action).await,
    }
}

/// The `config` listing: TOML-like lines, each with its source.
pub fn render_config(loaded: &LoadedConfig) -> String {
    let rows = loaded.describe();
    let width = rows.iter().map(|(k, v, _)| k.len() + v.len() + 3).max().unwrap_or(0).min(70);
    let mut out = String::from("# effective configuration; each value's source after '#'\n");
    for (key, value, origin) in rows {
        let line = format!("{key} = {value}");
        out.push_str(&format!("{line:width$}  # {origin}\n"));
    }
    out
}

async fn collect(loaded: &LoadedConfig, replay: Option<&Path>) -> Result<u8> {
    let plan = loaded.plan()?;
    let report = match replay {
        Some(dir) => collect_replay(&plan, dir, Mode::Agent)?.report,
        None => {
            let mut report = collect_local(&plan, loaded.config.become_root).await.report;
            // Show what `run` would send; a missing or unreadable state only loses the hint.
            announce_rename(&mut report, &HostnameState::peek(&loaded.config.state_dir), LOCAL_TARGET);
            report
        }
    };
    log_failed_sections("local", &report);
    let mut json = serde_json::to_string_pretty(&report).context("cannot serialize the report")?;
    json.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(json.as_bytes()).and_then(|()| stdout.flush()).context("cannot write to stdout")?;
    Ok(0)
}

/// The delivery machinery for a run: signed client, spool, host-name state.
pub fn deliverer(loaded: &LoadedConfig) -> Result<Deliverer> {
    let url = loaded.server_url()?;
    let credentials = loaded.credentials()?;
    tracing::debug!(key_id = %credentials.key_id, from = %credentials.origin, server = %url, "agent key loaded");
    if url.scheme() == "http" && !url.host_str().is_some_and(is_loopback) {
        tracing::warn!(server = %url, "server_url is plain http: reports are signed but travel unencrypted");
    }
    let client = ServerClient::new(url, credentials, loaded.config.delivery.timeout.get())?;
    // A state directory nobody chose is said once, so a report waiting in a spool is found.
    if let Some(notice) = loaded.default_state_notice() {
        tracing::info!("{notice}");
    }
    let spool = Spool::new(loaded.spool_dir(), loaded.rejected_dir(), loaded.config.spool.clone());
    let state = Arc::new(
        HostnameState::load(&loaded.config.state_dir)
            .with_context(|| format!("cannot read the state in {}", loaded.config.state_dir.display()))?,
    );
    Ok(Deliverer::new(client, spool, state, RetryPolicy::from(&loaded.config.delivery)))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `cmdb-agent run`: collect this machine (or a replay directory) and deliver the report, after
/// whatever waits in the spool.
pub async fn run(loaded: &LoadedConfig, replay: Option<&Path>) -> Result<Summary> {
    let started = std::time::Instant::now();
    let plan = loaded.plan()?;
    let deliverer = deliverer(loaded)?;
    let (target, host) = match replay {
        Some(dir) => {
            let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
            (format!("replay:{}", canonical.display()), collect_replay(&plan, dir, Mode::Agent)?)
        }
        None => (LOCAL_TARGET.to_owned(), collect_local(&plan, loaded.config.become_root).await),
    };
    let mut report = host.report;
    announce_rename(&mut report, deliverer.state(), &target);
    log_failed_sections(&target, &report);
    let handed = match deliverer.deliver(&target, &report).await {
        Ok(outcome) => Handed::Delivery(outcome),
        Err(e) => {
            tracing::error!(error = %e, "report lost: it could be neither delivered nor spooled");
            Handed::Lost(e.to_string())
        }
    };
    if let Err(e) = deliverer.finish() {
        tracing::warn!(error = %e, "cannot save the state");
    }
    Ok(Summary {
        records: vec![HostRecord { target: report.host.hostname.clone(), result: Ok((host.failed_sections, handed)) }],
        elapsed: started.elapsed(),
        not_started: 0,
    })
}

fn sink(loaded: &LoadedConfig, fanout: &FanoutArgs) -> Result<Sink> {
    if fanout.dry_run {
        return Ok(match &fanout.output {
            Some(dir) => {
                crate::atomic::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                Sink::Directory(dir.clone())
            }
            None => Sink::Stdout(Mutex::new(std::io::stdout())),
        });
    }
    Ok(Sink::Deliver(Arc::new(deliverer(loaded)?)))
}

fn finish_run(context: &RunContext, summary: &Summary) -> u8 {
    if let Sink::Deliver(deliverer) = &context.sink
        && let Err(e) = deliverer.finish()
    {
        tracing::warn!(error = %e, "cannot save the state");
    }
    eprint!("{}", summary.render());
    summary.exit_code()
}

/// Raises the soft open-files limit to the hard limit: each SSH connection is a socket, and the
/// usual soft limit of 1024 would cap a 1,000-host run.
fn raise_open_files_limit(concurrency: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!(limit, "open files limit");
            if limit < (concurrency as u64) * 2 + 64 {
                tracing::warn!(
                    limit,
                    concurrency,
                    "the open files limit is low for this concurrency; raise it (ulimit -Hn)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

async fn ssh(loaded: &LoadedConfig, args: &crate::cli::SshArgs) -> Result<u8> {
    let plan = loaded.plan()?;
    let ssh = &loaded.config.ssh;
    raise_open_files_limit(ssh.concurrency);
    // Targets from the server that cannot be collected as given; each is a failed host of the run.
    let mut refused: Vec<HostRecord> = Vec::new();
    let jobs: Vec<Job<SshTarget>> = match &args.source.inventory {
        Some(path) => inventory::load(path)?
            .into_iter()
            .map(|h| {
                let target =
                    SshTarget { name: h.name.clone(), host: h.address, port: h.port.unwrap_or(ssh.port), user: h.user };
                Job::new(h.name, target)
            })
            .collect(),
        None => {
            let client = deliverer_client(loaded)?;
            let answer = client.collect_targets(Some("ssh")).await.context("cannot get the hosts to collect")?;
            let mut jobs = Vec::with_capacity(answer.targets.len());
            for t in answer.targets {
                let key = format!("asset-{}", t.asset_id);
                let host = match t.ssh_address() {
                    Ok(host) => host,
                    Err(reason) => {
                        refuse(&mut refused, key, reason);
                        continue;
                    }
                };
                let port = match t.port() {
                    Ok(port) => port.unwrap_or(ssh.port),
                    Err(e) => {
                        tracing::warn!("{e}; using port {}", ssh.port);
                        ssh.port
                    }
                };
                jobs.push(Job {
                    key,
                    name: t.hostname.clone(),
                    server_hostname: Some(t.hostname.clone()),
                    collected_for: answer.accepts_collected_for.then_some(t.asset_id),
                    target: SshTarget { name: t.hostname, host, port, user: None },
                });
            }
            jobs
        }
    };
    if jobs.is_empty() && refused.is_empty() {
        // Every listed host reported today already: a normal outcome for a scheduled run.
        eprintln!("nothing to collect: the server lists no host that needs collecting");
        return Ok(0);
    }
    let options = loaded.ssh_options()?;
    let client = Arc::new(SshClient::new(options).map_err(|e| anyhow::anyhow!("cannot set up SSH: {e}"))?);
    let sink = sink(loaded, &args.fanout)?;
    let context = Arc::new(RunContext {
        plan,
        become_root: loaded.config.become_root,
        state: state_for(loaded, &sink)?,
        sink,
        mode: Mode::Ssh,
    });
    tracing::info!(hosts = jobs.len(), concurrency = ssh.concurrency, "collecting over SSH");
    let progress = Progress::new(jobs.len(), !args.fanout.no_progress);
    let mut summary = fanout::run_ssh(context.clone(), client, jobs, ssh.concurrency, &progress).await;
    progress.finish();
    summary.records.extend(refused);
    Ok(finish_run(&context, &summary))
}

/// The deliverer's state when delivering (it records what the server accepted), else a view of
/// the state file used only to fill in `previous_hostname`.
fn state_for(loaded: &LoadedConfig, sink: &Sink) -> Result<Arc<HostnameState>> {
    if let Sink::Deliver(deliverer) = sink {
        return Ok(deliverer.state().clone());
    }
    Ok(Arc::new(
        HostnameState::load(&loaded.config.state_dir)
            .with_context(|| format!("cannot read the state in {}", loaded.config.state_dir.display()))?,
    ))
}

fn deliverer_client(loaded: &LoadedConfig) -> Result<ServerClient> {
    Ok(ServerClient::new(loaded.server_url()?, loaded.credentials()?, loaded.config.delivery.timeout.get())?)
}

/// Records a target from the server that is not collected, with the reason, as a failed host.
fn refuse(refused: &mut Vec<HostRecord>, key: String, reason: String) {
    tracing::warn!(target = %key, "{reason}");
    refused.push(HostRecord { target: key, result: Err(HostFailure::Other(reason)) });
}

/// Minion ids from `--target`: a comma list, as `salt -L` takes it. Each id must pass
/// [`check_minion_id`], the rule the Salt transport applies to every id it is given.
pub fn parse_minion_list(expr: &str) -> Result<Vec<String>> {
    let mut minions: Vec<String> = Vec::new();
    for id in expr.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if id.contains(['*', '?', '[', ']']) {
            bail!(
                "--target takes minion ids separated by commas (a salt -L list); {:?} is a pattern: \
                 list the ids (salt-key -L) or use --from-server",
                terminal::line(id)
            );
        }
        if let Err(reason) = check_minion_id(id) {
            bail!("--target: {}", terminal::line(&reason));
        }
        if !minions.iter().any(|m| m == id) {
            minions.push(id.to_owned());
        }
    }
    if minions.is_empty() {
        bail!("--target names no minion");
    }
    Ok(minions)
}

async fn salt(loaded: &LoadedConfig, args: &crate::cli::SaltArgs) -> Result<u8> {
    let plan = loaded.plan()?;
    let mut refused: Vec<HostRecord> = Vec::new();
    let jobs: Vec<Job<String>> = match &args.source.target {
        Some(expr) => parse_minion_list(expr)?.into_iter().map(|m| Job::new(m.clone(), m)).collect(),
        None => {
            let client = deliverer_client(loaded)?;
            let answer = client.collect_targets(Some("salt")).await.context("cannot get the minions to collect")?;
            let mut jobs = Vec::new();
            for t in answer.targets {
                let key = format!("asset-{}", t.asset_id);
                match t.salt_minion_id {
                    // A comma would add minions to the `salt -L` list, a glob would match others;
                    // an empty id is a server-side mistake, reported rather than skipped quietly.
                    Some(minion) => match check_minion_id(&minion) {
                        Ok(()) => jobs.push(Job {
                            key,
                            name: t.hostname.clone(),
                            server_hostname: Some(t.hostname),
                            collected_for: answer.accepts_collected_for.then_some(t.asset_id),
                            target: minion,
                        }),
                        Err(reason) => refuse(&mut refused, key, format!("salt_minion_id refused: {reason}")),
                    },
                    None => tracing::debug!(hostname = %t.hostname, "target has no salt_minion_id; skipped"),
                }
            }
            jobs
        }
    };
    if jobs.is_empty() && refused.is_empty() {
        eprintln!("nothing to collect: the server lists no minion that needs collecting");
        return Ok(0);
    }
    let sink = sink(loaded, &args.fanout)?;
    let context = Arc::new(RunContext {
        plan,
        become_root: loaded.config.become_root,
        state: state_for(loaded, &sink)?,
        sink,
        mode: Mode::Salt,
    });
    tracing::info!(minions = jobs.len(), batch_size = loaded.config.salt.batch_size, "collecting through Salt");
    let progress = Progress::new(jobs.len(), !args.fanout.no_progress);
    let mut summary = fanout::run_salt(context.clone(), loaded.salt_options(), jobs, &progress).await;
    progress.finish();
    summary.records.extend(refused);
    Ok(finish_run(&context, &summary))
}

async fn spool(loaded: &LoadedConfig, action: SpoolAction) -> Result<u8> {
    match action {
        SpoolAction::List => {
            let spool = Spool::new(loaded.spool_dir(), loaded.rejected_dir(), loaded.config.spool.clone());
            let entries = spool.list().context("cannot read the spool")?;
            let mut out = String::new();
            for e in &entries {
                let r = &e.entry.report;
                // The host name came from the host, the reason from the server.
                out.push_str(&format!(
                    "{}  {}  {}  collected {}  spooled {}  ({})\n",
                    r.report_id,
                    terminal::line(&e.entry.target),
                    terminal::line(&r.host.hostname),
                    r.collected_at.format("%Y-%m-%d %H:%M:%S"),
                    e.entry.spooled_at.format("%Y-%m-%d %H:%M:%S"),
                    terminal::line(&e.entry.reason)
                ));
            }
            out.push_str(&format!("{} report(s) waiting in {}\n", entries.len(), spool.dir().display()));
            print!("{out}");
            Ok(0)
        }
        SpoolAction::Flush => {
            let deliverer = deliverer(loaded)?;
            let summary = deliverer.flush_spool().await?;
            if let Err(e) = deliverer.finish() {
                tracing::warn!(error = %e, "cannot save the state");
            }
            eprintln!(
                "spool: delivered {}, rejected {}, still waiting {}",
                summary.delivered, summary.rejected, summary.remaining
            );
            if let Some(reason) = &summary.stopped {
                eprintln!("stopped: {}", terminal::line(reason));
            }
            Ok(if summary.rejected > 0 {
                1
            } else if summary.remaining > 0 {
                fanout::EXIT_SPOOLED
            } else {
                0
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minion_lists() {
        assert_eq!(parse_minion_list("web-01, web-02,,web-01").expect("list"), vec!["web-01", "web-02"]);
        assert!(parse_minion_list("web-*").is_err());
        assert!(parse_minion_list(" , ").is_err());
        // The transport's rule applies to ids typed on the command line too.
        let long = "m".repeat(254);
        for hostile in ["web 01", "web\x1b[2J", "web/01", "web\\01", long.as_str()] {
            let err = parse_minion_list(&format!("m1,{hostile}")).expect_err(hostile);
            assert!(err.to_string().starts_with("--target"), "{err}");
            assert!(!err.to_string().contains('\x1b'), "the message shows the id, escaped: {err}");
        }
    }
}
