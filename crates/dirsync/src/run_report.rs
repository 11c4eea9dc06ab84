//! Reports each run to the target, when the target takes reports: a target that advertises
//! dirsync's source extension (the ownership mark, in `/ResourceTypes`) is one that knows
//! dirsync, and takes a [`scim::run_report::RunReport`] at `POST {base}/DirsyncRuns`
//! (`idservice` shows them on its console's runs page). Any other target gets nothing.
//!
//! The report is made from the run's own report (counts, times, the refusal or stop reason,
//! the failed and skipped objects), which never holds a secret. A report that cannot be sent
//! is logged and changes nothing else: not the run's exit code, not the next run.

use std::time::Duration;

use scim::run_report::{self as wire, FailedObject, RunReport};

use crate::config::Config;
use crate::report::Report;

/// The agent's name in reports: `notify.email.instance`, else the host name; with the
/// directory's base DN, so that two instances on one host are told apart.
fn instance(config: &Config) -> String {
    let name = config
        .notify
        .email
        .as_ref()
        .and_then(|e| e.instance.clone())
        .or_else(|| hostname::get().ok().and_then(|n| n.into_string().ok()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "dirsync".into());
    format!("{name} ({})", config.ad.ldap.base_dn)
}

/// The wire form of a run's report.
pub fn to_wire(config: &Config, report: &Report, expected: Option<Duration>) -> RunReport {
    let counts = match serde_json::to_value(&report.counts) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let failed = report
        .failures
        .iter()
        .map(|f| (&f.object, &f.message))
        .chain(report.skipped.iter().map(|s| (&s.object, &s.message)));
    let failures: Vec<FailedObject> = failed
        .clone()
        .take(wire::MAX_FAILURES)
        .map(|(o, m)| FailedObject {
            object: wire::clip(o),
            message: wire::clip(m),
        })
        .collect();
    let ended = chrono::DateTime::parse_from_rfc3339(&report.started_at)
        .map(|t| {
            (t + chrono::Duration::milliseconds(
                i64::try_from(report.duration_ms).unwrap_or(i64::MAX),
            ))
            .to_rfc3339()
        })
        .unwrap_or_else(|_| chrono::Utc::now().to_rfc3339());
    RunReport {
        schemas: vec![wire::SCHEMA.into()],
        instance: wire::clip(&instance(config)),
        run_id: report.run_id.clone(),
        started: report.started_at.clone(),
        ended,
        mode: report.mode.clone(),
        dry_run: report.dry_run,
        exit_code: report.exit_code,
        reason: report
            .refused
            .as_deref()
            .or(report.stopped.as_deref())
            .map(wire::clip),
        counts,
        failures,
        failed_count: failed.count(),
        expected_interval_seconds: expected.map(|d| d.as_secs()),
    }
}

/// Sends the report of a run that ran (not one the run lock turned away), if the target takes
/// reports. `expected`: how often this agent runs, when it knows (`dirsync run`).
pub async fn after_run(config: &Config, report: &Report, expected: Option<Duration>) {
    if report.lock_busy {
        return;
    }
    let client = match crate::client::scim_client(config) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "run report not sent: no client for the target");
            return;
        }
    };
    let takes_reports = client
        .schema_extensions(scim_client::ResourceKind::Groups)
        .await
        .is_ok_and(|exts| exts.iter().any(|e| e == scim::urn::DIRSYNC_SOURCE));
    if !takes_reports {
        return;
    }
    let body = match serde_json::to_value(to_wire(config, report, expected)) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "run report not sent");
            return;
        }
    };
    match client.post_message(wire::ENDPOINT, &body).await {
        Ok(_) => tracing::debug!(run_id = %report.run_id, "run report sent to the target"),
        Err(e) => {
            tracing::warn!(run_id = %report.run_id, error = %e, "run report not sent to the target")
        }
    }
}
