//! `/admin/runs`: what the dirsync agents reported — per agent its newest run (and whether it
//! has been quiet for longer than it said it would be), then every run, newest first, 50 to
//! a page. A refused run (exit 2: a deletion threshold, …) and a run with failures or a stop
//! are marked; failed objects are listed under their run.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::pages::{self, layout};
use super::{Signed, page};
use crate::domain::runs::overdue;
use crate::store::console::{self as sc, RunRow};
use crate::web::WebState;

const PAGE: i64 = 50;

#[derive(Deserialize)]
pub struct ListParams {
    before: Option<i64>,
}

/// What a run's exit code means, as the agent documents it.
fn outcome(r: &RunRow) -> (&'static str, &'static str) {
    match r.exit_code {
        0 => ("Synced", ""),
        1 => ("Some objects failed", "warn-text"),
        2 => ("Refused", "warn-text"),
        3 => ("Stopped: unreachable", "warn-text"),
        5 => ("Stopped: local state unreadable", "warn-text"),
        _ => ("Failed", "warn-text"),
    }
}

/// The counts that are not zero, as "created 3, updated 1".
fn counts_text(r: &RunRow) -> String {
    let counts: serde_json::Map<String, Value> =
        serde_json::from_str(&r.counts).unwrap_or_default();
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
        .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
        .collect();
    if parts.is_empty() {
        "no changes".into()
    } else {
        parts.join(", ")
    }
}

fn failures(r: &RunRow) -> Markup {
    let list: Vec<scim::run_report::FailedObject> =
        serde_json::from_str(&r.failures).unwrap_or_default();
    html! {
        @if !list.is_empty() {
            details {
                summary { (r.failed_count) " object(s) failed or skipped" }
                ul { @for f in &list { li { code { (f.object) } ": " (f.message) } } }
            }
        }
    }
}

/// `GET /admin/runs`.
pub async fn list(
    State(st): State<WebState>,
    signed: Signed,
    Query(p): Query<ListParams>,
) -> Response {
    let loaded = async {
        let mut conn = st.svc.store.read().await?;
        let last = sc::last_runs(&mut conn).await?;
        let runs = sc::runs_page(&mut conn, p.before, PAGE).await?;
        Ok::<_, sqlx::Error>((last, runs))
    }
    .await;
    let (last, runs) = match loaded {
        Ok(x) => x,
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let now_t = chrono::Utc::now();
    let older = (runs.len() as i64 == PAGE)
        .then(|| runs.last().map(|r| r.seq))
        .flatten();
    let body = html! {
        p { "Agents report each run to this service (dirsync does so by itself where the service offers it)." }
        h2 { "Agents" }
        @if last.is_empty() { p { "No agent has reported a run yet." } } @else {
            table {
                thead { tr {
                    th scope="col" { "Agent" } th scope="col" { "Last run ended" }
                    th scope="col" { "Result" } th scope="col" { "Expected every" }
                } }
                tbody { @for r in &last { tr {
                    td { (r.instance) }
                    td {
                        (r.ended)
                        @if overdue(r, now_t) { " " strong.warn-text { "Not reported for longer than expected" } }
                    }
                    @let (text, class) = outcome(r);
                    td class=(class) { (text) }
                    td { (r.expected_interval_seconds.map_or("(not said)".to_string(), |s| format!("{s} s"))) }
                } } }
            }
        }
        h2 { "Runs" }
        @if runs.is_empty() { p { "None." } } @else {
            table {
                thead { tr {
                    th scope="col" { "Ended" } th scope="col" { "Agent" } th scope="col" { "Mode" }
                    th scope="col" { "Result" } th scope="col" { "Changes" } th scope="col" { "Details" }
                } }
                tbody { @for r in &runs { tr {
                    td { (r.ended) }
                    td { (r.instance) }
                    td { (r.mode) @if r.dry_run != 0 { " (dry run)" } }
                    @let (text, class) = outcome(r);
                    td class=(class) { (text) " (exit " (r.exit_code) ")" }
                    td { (counts_text(r)) }
                    td {
                        @if let Some(reason) = &r.reason { p { (reason) } }
                        (failures(r))
                    }
                } } }
            }
        }
        @if let Some(seq) = older { p { a href={ "/admin/runs?before=" (seq) } { "Older runs" } } }
    };
    page(StatusCode::OK, layout(&st, &signed, "Sync runs", body))
}
