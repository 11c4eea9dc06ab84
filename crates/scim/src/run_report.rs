//! dirsync's run report (`POST {base}/DirsyncRuns`): the summary of one run that the agent
//! sends to a target which advertises dirsync's source extension (the ownership mark, found
//! in `/ResourceTypes`), and that `idservice` keeps for its console. One type for both sides.
//!
//! It never holds a secret: counts, times, the refusal's reason and the failed objects' names
//! with the target's or the planner's message, as the agent's own report has them.

use serde::{Deserialize, Serialize};

/// The message schema of a run report.
pub const SCHEMA: &str = "urn:dirsync:params:scim:api:messages:1.0:RunReport";
/// Where a target takes run reports, under its SCIM base URL.
pub const ENDPOINT: &str = "/DirsyncRuns";
/// At most this many failed objects are reported (the rest are counted in `failedCount`).
pub const MAX_FAILURES: usize = 100;
/// Longest text of one field (a reason, a message, an object's name) a report carries.
pub const MAX_TEXT: usize = 2000;

/// One run, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub schemas: Vec<String>,
    /// Which agent: its name (`notify.email.instance`, else the host name) and directory.
    pub instance: String,
    pub run_id: String,
    /// RFC 3339.
    pub started: String,
    pub ended: String,
    /// `full` or `incremental`.
    pub mode: String,
    pub dry_run: bool,
    pub exit_code: i32,
    /// Why it wrote nothing (a deletion threshold, …) or stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub counts: serde_json::Map<String, serde_json::Value>,
    /// Failed and skipped objects (at most [`MAX_FAILURES`]).
    #[serde(default)]
    pub failures: Vec<FailedObject>,
    /// How many failed and skipped objects the run had in all.
    #[serde(default)]
    pub failed_count: usize,
    /// How often this agent runs, when it knows (its daemon schedule), in seconds: a target
    /// can tell an agent that stopped reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_interval_seconds: Option<u64>,
}

/// One object a run could not write or refused to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedObject {
    pub object: String,
    pub message: String,
}

/// Why a report body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("not a run report: {0}")]
    Malformed(String),
    #[error("a run report's schemas must be [\"{SCHEMA}\"]")]
    Schema,
    #[error("{0} is longer than {MAX_TEXT} characters")]
    TooLong(&'static str),
    #[error("a run report holds at most {MAX_FAILURES} failed objects")]
    TooManyFailures,
}

impl RunReport {
    /// Reads and checks a report body.
    pub fn parse(body: &serde_json::Value) -> Result<RunReport, ReportError> {
        let r: RunReport = serde_json::from_value(body.clone())
            .map_err(|e| ReportError::Malformed(e.to_string()))?;
        if r.schemas != [SCHEMA] {
            return Err(ReportError::Schema);
        }
        let long = |s: &str| s.chars().count() > MAX_TEXT;
        for (name, v) in [
            ("instance", r.instance.as_str()),
            ("runId", &r.run_id),
            ("started", &r.started),
            ("ended", &r.ended),
            ("mode", &r.mode),
            ("reason", r.reason.as_deref().unwrap_or("")),
        ] {
            if long(v) {
                return Err(ReportError::TooLong(name));
            }
        }
        if r.failures.len() > MAX_FAILURES {
            return Err(ReportError::TooManyFailures);
        }
        if r.failures
            .iter()
            .any(|f| long(&f.object) || long(&f.message))
        {
            return Err(ReportError::TooLong("a failed object"));
        }
        Ok(r)
    }

    /// Whether the run wrote nothing by its own decision (exit 2: refused).
    pub fn refused(&self) -> bool {
        self.exit_code == 2
    }
}

/// `s` cut to [`MAX_TEXT`] characters (what the agent sends).
pub fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({"schemas": [SCHEMA], "instance": "dc1 dc=example,dc=com", "runId": "r1",
               "started": "2026-12-07T10:00:00Z", "ended": "2026-12-07T10:00:02Z",
               "mode": "full", "dryRun": false, "exitCode": 2,
               "reason": "deletion threshold: 30 of 100", "counts": {"created": 0},
               "failures": [{"object": "uid=a", "message": "409"}], "failedCount": 1})
    }

    #[test]
    fn a_report_round_trips_and_is_checked() {
        let r = RunReport::parse(&sample()).unwrap();
        assert!(r.refused());
        assert_eq!(serde_json::to_value(&r).unwrap(), sample());
        let mut bad = sample();
        bad["schemas"] = json!(["urn:other"]);
        assert_eq!(RunReport::parse(&bad), Err(ReportError::Schema));
        let mut bad = sample();
        bad["reason"] = json!("x".repeat(MAX_TEXT + 1));
        assert_eq!(RunReport::parse(&bad), Err(ReportError::TooLong("reason")));
        let mut bad = sample();
        bad["failures"] = json!(vec![
            json!({"object": "o", "message": "m"});
            MAX_FAILURES + 1
        ]);
        assert_eq!(RunReport::parse(&bad), Err(ReportError::TooManyFailures));
        assert!(matches!(
            RunReport::parse(&json!({"schemas": [SCHEMA]})),
            Err(ReportError::Malformed(_))
        ));
    }
}
