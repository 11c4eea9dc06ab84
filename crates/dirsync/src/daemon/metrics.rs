//! The daemon's Prometheus metrics and its health: what each finished run adds to the
//! counters (from the run's [`Report`]), the text exposition (OpenMetrics text through the
//! `prometheus-client` crate) and whether `/healthz` is healthy (a run succeeded within
//! `3 × sync.schedule`, or the daemon started less than that ago).
//!
//! It knows the report and the clock; it does not run anything, serve HTTP or read the
//! configuration file. Nothing it records is secret: counts, modes, exit codes, outcomes.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::report::{Outcome, Report};

type Labels = Vec<(&'static str, String)>;

/// The counters, gauges and histogram of one daemon, and its health clock.
pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    last_exit_code: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    duration: Histogram,
    operations: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    watch_connected: Gauge,
    /// Taken while a run is recorded (and its summary logged) and while the metrics are
    /// encoded: a scrape never sees half a run.
    health: Mutex<Health>,
}

struct Health {
    started: Instant,
    last_success: Option<Instant>,
    schedule: Duration,
}

impl Metrics {
    /// Empty metrics for a daemon whose schedule is `schedule`.
    pub fn new(schedule: Duration) -> Metrics {
        let mut registry = Registry::default();
        let runs = Family::<Labels, Counter>::default();
        registry.register(
            "dirsync_runs",
            "Runs finished, by mode and exit code",
            runs.clone(),
        );
        let last_exit_code = Gauge::default();
        registry.register(
            "dirsync_last_run_exit_code",
            "Exit code of the last finished run",
            last_exit_code.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "dirsync_last_success_timestamp_seconds",
            "When the last run with exit code 0 finished (Unix time)",
            last_success.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.05, 4.0, 9));
        registry.register(
            "dirsync_run_duration_seconds",
            "How long runs took",
            duration.clone(),
        );
        let operations = Family::<Labels, Counter>::default();
        registry.register(
            "dirsync_operations",
            "Target writes, by object kind, operation and result",
            operations.clone(),
        );
        let refused = Family::<Labels, Counter>::default();
        registry.register(
            "dirsync_refused_runs",
            "Runs that refused to write, by reason",
            refused.clone(),
        );
        let watch_connected = Gauge::default();
        registry.register(
            "dirsync_watch_connected",
            "1 while the watcher follows the directory's changes (sync.watch), else 0",
            watch_connected.clone(),
        );
        Metrics {
            registry,
            runs,
            last_exit_code,
            last_success,
            duration,
            operations,
            refused,
            watch_connected,
            health: Mutex::new(Health {
                started: Instant::now(),
                last_success: None,
                schedule,
            }),
        }
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new schedule (after a configuration reload): the health window follows it.
    pub fn set_schedule(&self, schedule: Duration) {
        self.health().schedule = schedule;
    }

    /// Whether the watcher is connected (`dirsync_watch_connected`).
    pub fn set_watch_connected(&self, connected: bool) {
        self.watch_connected.set(i64::from(connected));
    }

    /// Adds a finished run and logs its one-line summary, under the lock a scrape takes.
    pub fn record(&self, report: &Report) {
        let mut health = self.health();
        let code = report.exit_code;
        self.runs
            .get_or_create(&vec![
                ("mode", report.mode.clone()),
                ("exit_code", code.to_string()),
            ])
            .inc();
        self.last_exit_code.set(i64::from(code));
        self.duration.observe(report.duration_ms as f64 / 1000.0);
        if code == 0 {
            health.last_success = Some(Instant::now());
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_success.set(unix);
        }
        if let Some(reason) = refused_reason(report.outcome) {
            self.refused
                .get_or_create(&vec![("reason", reason.into())])
                .inc();
        }
        for (kind, op, n) in operation_counts(report) {
            self.count_operation(kind, op, "ok", n);
        }
        for failure in &report.failures {
            let (kind, op) = failure_labels(&failure.operation);
            self.count_operation(kind, op, "failed", 1);
        }
        tracing::info!(
            run_id = %report.run_id,
            mode = %report.mode,
            exit_code = code,
            duration_ms = report.duration_ms as u64,
            "run finished"
        );
    }

    fn count_operation(
        &self,
        kind: &'static str,
        op: &'static str,
        result: &'static str,
        n: usize,
    ) {
        if n == 0 {
            return;
        }
        let labels = vec![
            ("kind", kind.into()),
            ("op", op.into()),
            ("result", result.into()),
        ];
        self.operations.get_or_create(&labels).inc_by(n as u64);
    }

    /// The metrics in the text exposition format.
    pub fn encode(&self) -> String {
        let _health = self.health();
        let mut out = String::new();
        // Writing into a String cannot fail; an error would leave a partial text.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// True while a run succeeded within `3 × schedule` (or the daemon is younger than that).
    pub fn healthy(&self) -> bool {
        let health = self.health();
        let since = health.last_success.unwrap_or(health.started);
        since.elapsed() < health.schedule.saturating_mul(3)
    }
}

/// The `reason` label of a run that refused to write, or `None` for any other outcome.
fn refused_reason(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::SafetyStop => Some("deletion_threshold"),
        Outcome::Refused => Some("refused"),
        Outcome::ConfigError => Some("configuration"),
        Outcome::Synced | Outcome::Partial | Outcome::Unreachable | Outcome::StateUnreadable => {
            None
        }
    }
}

/// The report's counts as `(kind, op, count)`.
fn operation_counts(report: &Report) -> [(&'static str, &'static str, usize); 13] {
    let c = &report.counts;
    [
        ("user", "create", c.created),
        ("user", "update", c.updated),
        ("user", "enable", c.enabled),
        ("user", "disable", c.disabled),
        ("user", "pending_deletion", c.pending_deletion),
        ("user", "restore", c.restored),
        ("user", "delete", c.deleted),
        ("user", "adopt", c.adopted),
        ("group", "create", c.groups_created),
        ("group", "update", c.groups_updated),
        ("group", "delete", c.groups_deleted),
        ("member", "add", c.members_added),
        ("member", "remove", c.members_removed),
    ]
}

/// `(kind, op)` of a failed operation named as the apply step names it (`create_user`,
/// `add_members`, `bulk`).
fn failure_labels(operation: &str) -> (&'static str, &'static str) {
    match operation {
        "create_user" => ("user", "create"),
        "adopt_user" => ("user", "adopt"),
        "update_user" => ("user", "update"),
        "enable_user" => ("user", "enable"),
        "disable_user" => ("user", "disable"),
        "restore_user" => ("user", "restore"),
        "delete_user" | "purge_user" => ("user", "delete"),
        "pend_user" => ("user", "pending_deletion"),
        "create_group" => ("group", "create"),
        "adopt_group" => ("group", "adopt"),
        "update_group" => ("group", "update"),
        "delete_group" => ("group", "delete"),
        "add_members" => ("member", "add"),
        "remove_members" => ("member", "remove"),
        _ => ("other", "other"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_run_is_counted_by_mode_exit_code_and_operation() {
        let metrics = Metrics::new(Duration::from_secs(60));
        let mut report = Report {
            mode: "full".into(),
            duration_ms: 1500,
            ..Report::default()
        };
        report.counts.created = 2;
        report.failures.push(crate::apply::Failure {
            operation: "add_members".into(),
            object: "g".into(),
            message: "no".into(),
        });
        report.exit_code = 1;
        metrics.record(&report);
        let text = metrics.encode();
        assert!(
            text.contains("dirsync_runs_total{mode=\"full\",exit_code=\"1\"} 1"),
            "{text}"
        );
        assert!(text.contains("dirsync_last_run_exit_code 1"), "{text}");
        assert!(
            text.contains("dirsync_operations_total{kind=\"user\",op=\"create\",result=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "dirsync_operations_total{kind=\"member\",op=\"add\",result=\"failed\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("dirsync_run_duration_seconds_count 1"),
            "{text}"
        );
        assert!(metrics.healthy(), "young daemon is healthy");
    }

    #[test]
    fn unhealthy_after_three_schedules_without_success() {
        let metrics = Metrics::new(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(10));
        assert!(!metrics.healthy());
        metrics.record(&Report::default());
        metrics.set_schedule(Duration::from_secs(60));
        assert!(metrics.healthy());
    }
}
