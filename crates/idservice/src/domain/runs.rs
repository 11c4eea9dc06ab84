//! dirsync's run reports (`POST /scim/v2/DirsyncRuns`, wire form `scim::run_report`): checked,
//! stored for the console's runs page, and summarised per agent — including whether an agent
//! that said how often it runs has gone quiet for longer than that.

use scim::ScimError;
use scim::run_report::RunReport;

use super::{Service, db, now};
use crate::store::console::{self as sc, RunRow};

/// How long past its expected interval an agent may be quiet before the console says so:
/// twice the interval (one missed run is not yet news).
const QUIET_FACTOR: i64 = 2;

/// Stores a report; returns its number.
pub async fn record(svc: &Service, body: &serde_json::Value) -> Result<i64, ScimError> {
    let r = RunReport::parse(body).map_err(|e| ScimError::invalid_value(e.to_string()))?;
    let row = RunRow {
        seq: 0,
        received: now(),
        instance: r.instance.clone(),
        run_id: r.run_id.clone(),
        started: r.started.clone(),
        ended: r.ended.clone(),
        mode: r.mode.clone(),
        dry_run: i64::from(r.dry_run),
        exit_code: i64::from(r.exit_code),
        reason: r.reason.clone(),
        counts: serde_json::Value::Object(r.counts.clone()).to_string(),
        failures: serde_json::to_string(&r.failures).unwrap_or_else(|_| "[]".into()),
        failed_count: i64::try_from(r.failed_count).unwrap_or(i64::MAX),
        expected_interval_seconds: r
            .expected_interval_seconds
            .and_then(|s| i64::try_from(s).ok()),
    };
    let seq = super::with_retry(|| async {
        let mut tx = svc.store.begin().await.map_err(db)?;
        let seq = sc::insert_run(&mut tx, &row).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(seq)
    })
    .await?;
    tracing::info!(instance = %r.instance, run_id = %r.run_id, exit_code = r.exit_code, "run report received");
    Ok(seq)
}

/// Whether an agent whose newest report is `last` has been quiet for longer than it said it
/// would be, at `now_t`. Agents that did not say (one-shot runs from a timer) are never late.
pub fn overdue(last: &RunRow, now_t: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(interval) = last.expected_interval_seconds.filter(|s| *s > 0) else {
        return false;
    };
    let Ok(ended) = chrono::DateTime::parse_from_rfc3339(&last.ended) else {
        return false;
    };
    now_t - ended.to_utc() > chrono::Duration::seconds(interval.saturating_mul(QUIET_FACTOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ended: &str, interval: Option<i64>) -> RunRow {
        RunRow {
            seq: 1,
            received: ended.into(),
            instance: "a".into(),
            run_id: "r".into(),
            started: ended.into(),
            ended: ended.into(),
            mode: "full".into(),
            dry_run: 0,
            exit_code: 0,
            reason: None,
            counts: "{}".into(),
            failures: "[]".into(),
            failed_count: 0,
            expected_interval_seconds: interval,
        }
    }

    #[test]
    fn an_agent_is_late_after_twice_its_interval() {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.to_utc());
        let Ok(now_t) = t("2026-12-07T12:00:00Z") else {
            return;
        };
        assert!(!overdue(&row("2026-12-07T11:40:00Z", Some(600)), now_t));
        assert!(overdue(&row("2026-12-07T11:39:00Z", Some(600)), now_t));
        assert!(!overdue(&row("2026-12-01T00:00:00Z", None), now_t));
    }
}
