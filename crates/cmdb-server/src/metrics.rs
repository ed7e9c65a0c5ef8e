//! Prometheus metrics, served at `/metrics`: reports by outcome, ingest latency, changes written,
//! database errors.
//!
//! One process-wide registry: metrics describe the process, and tests that start several apps in
//! one process simply share it.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

struct Metrics {
    registry: Registry,
    reports: Family<OutcomeLabel, Counter>,
    latency: Family<OutcomeLabel, Histogram>,
    changes: Counter,
    db_errors: Counter,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("cmdb");
        let reports = Family::<OutcomeLabel, Counter>::default();
        registry.register("reports", "Reports received, by outcome", reports.clone());
        let latency = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register("ingest_seconds", "Time to ingest one report, by outcome", latency.clone());
        let changes = Counter::default();
        registry.register("changes_written", "Change records written", changes.clone());
        let db_errors = Counter::default();
        registry.register("database_errors", "Database errors (including unavailability)", db_errors.clone());
        Metrics { registry, reports, latency, changes, db_errors }
    })
}

/// Counts one report with its outcome (changed, unchanged, stale, duplicate, invalid,
/// unauthorized, forbidden, unavailable, error) and how long it took.
pub fn report(outcome: &'static str, seconds: f64) {
    let m = metrics();
    let label = OutcomeLabel { outcome };
    m.reports.get_or_create(&label).inc();
    m.latency.get_or_create(&label).observe(seconds);
}

/// Counts change records written.
pub fn changes(count: usize) {
    metrics().changes.inc_by(count as u64);
}

/// Counts a database error.
pub fn db_error() {
    metrics().db_errors.inc();
}

/// The text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &metrics().registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_counters() {
        super::report("unchanged", 0.001);
        super::changes(3);
        let text = super::render();
        assert!(text.contains("cmdb_reports_total{outcome=\"unchanged\"}"), "{text}");
        assert!(text.contains("cmdb_ingest_seconds_bucket"), "{text}");
        assert!(text.contains("cmdb_changes_written_total"), "{text}");
    }
}
