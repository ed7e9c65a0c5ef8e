//! Logging: tracing to stderr, filtered by `CMDB_LOG` (e.g. `CMDB_LOG=debug`) or -v/-q.
//!
//! While a progress bar is drawn, log lines are printed above it instead of tearing it; under
//! systemd (journald adds its own timestamps) lines carry no timestamp and no colour.
//!
//! Every field (the message included) is written through [`crate::terminal::line`]: log fields
//! carry host names, section errors and stderr from the collected hosts, and one line per field
//! keeps a hostile host from forging log lines or driving the terminal.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, OnceLock};

use indicatif::ProgressBar;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::MakeWriter;

/// The progress bar currently drawn, if any.
static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    ACTIVE_BAR.get_or_init(|| Mutex::new(None))
}

/// Makes log lines go around `bar` until [`clear_progress_bar`].
pub fn set_progress_bar(bar: &ProgressBar) {
    *active_bar().lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
}

/// Stops routing log lines around a progress bar.
pub fn clear_progress_bar() {
    *active_bar().lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// Writes one log line to stderr, suspending the progress bar while it does.
pub struct StderrAroundProgress;

impl Write for StderrAroundProgress {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = active_bar().lock().unwrap_or_else(|p| p.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf)).map(|()| buf.len()),
            None => io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for StderrAroundProgress {
    type Writer = StderrAroundProgress;

    fn make_writer(&'a self) -> Self::Writer {
        StderrAroundProgress
    }
}

/// Installs the subscriber. `default_level` applies when neither `CMDB_LOG` nor -v/-q says otherwise.
pub fn init(default_level: &str, verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => default_level,
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = match std::env::var("CMDB_LOG") {
        Ok(spec) if !spec.trim().is_empty() && verbose == 0 && !quiet => EnvFilter::new(spec),
        _ => EnvFilter::new(level),
    };
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let rendered = format!("{value:?}");
        let shown = crate::terminal::line(&rendered);
        match field.name() {
            "message" => write!(writer, "{shown}"),
            name => write!(writer, "{name}={shown}"),
        }
    })
    .delimited(" ");
    let builder = tracing_subscriber::fmt()
        .fmt_fields(fields)
        .with_env_filter(filter)
        .with_writer(StderrAroundProgress)
        .with_ansi(io::stderr().is_terminal() && !under_journald)
        .with_target(false);
    let result = if under_journald { builder.without_time().try_init() } else { builder.try_init() };
    // A second init (tests driving several commands in one process) keeps the first subscriber.
    let _ = result;
}
