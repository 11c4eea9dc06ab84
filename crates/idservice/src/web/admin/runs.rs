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
use crate::i18n::Lang;
use crate::store::console::{self as sc, RunRow};
use crate::web::WebState;

const PAGE: i64 = 50;

#[derive(Deserialize)]
pub struct ListParams {
    before: Option<i64>,
}

/// What a run's exit code means, as the agent documents it: (text key, CSS class).
fn outcome(r: &RunRow) -> (&'static str, &'static str) {
    match r.exit_code {
        0 => ("runs-synced", ""),
        1 => ("runs-some-failed", "warn-text"),
        2 => ("runs-refused", "warn-text"),
        3 => ("runs-stopped-unreachable", "warn-text"),
        5 => ("runs-stopped-state", "warn-text"),
        _ => ("runs-failed", "warn-text"),
    }
}

/// The counts the agent reports (dirsync's names), with the key of their text.
const COUNTS: [(&str, &str); 14] = [
    ("created", "runs-count-created"),
    ("updated", "runs-count-updated"),
    ("enabled", "runs-count-enabled"),
    ("disabled", "runs-count-disabled"),
    ("pending_deletion", "runs-count-pending-deletion"),
    ("restored", "runs-count-restored"),
    ("deleted", "runs-count-deleted"),
    ("adopted", "runs-count-adopted"),
    ("groups_created", "runs-count-groups-created"),
    ("groups_updated", "runs-count-groups-updated"),
    ("groups_deleted", "runs-count-groups-deleted"),
    ("members_added", "runs-count-members-added"),
    ("members_removed", "runs-count-members-removed"),
    ("failed", "runs-count-failed"),
];

/// The counts that are not zero, as "created 3, updated 1" (a count this version does not
/// know by its reported name).
fn counts_text(lang: Lang, r: &RunRow) -> String {
    let counts: serde_json::Map<String, Value> =
        serde_json::from_str(&r.counts).unwrap_or_default();
    let parts: Vec<String> = counts
        .iter()
        .filter_map(|(k, v)| Some((k, v.as_u64().filter(|n| *n > 0)?)))
        .map(|(k, n)| match COUNTS.iter().find(|(name, _)| name == k) {
            Some((_, key)) => lang.ta(key, &[("n", i64::try_from(n).unwrap_or(i64::MAX).into())]),
            None => format!("{} {n}", k.replace('_', " ")),
        })
        .collect();
    if parts.is_empty() {
        lang.t("runs-no-changes")
    } else {
        parts.join(lang.t("runs-count-separator").as_str())
    }
}

/// A run's mode: `full` and `incremental` in the viewer's language, another as reported.
fn mode_text(lang: Lang, r: &RunRow) -> String {
    match r.mode.as_str() {
        "full" => lang.t("runs-mode-full"),
        "incremental" => lang.t("runs-mode-incremental"),
        other => other.to_string(),
    }
}

fn failures(lang: Lang, r: &RunRow) -> Markup {
    let list: Vec<scim::run_report::FailedObject> =
        serde_json::from_str(&r.failures).unwrap_or_default();
    html! {
        @if !list.is_empty() {
            details {
                summary { (lang.ta("runs-failed-objects", &[("n", r.failed_count.into())])) }
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
    let older = (runs.len() as i64 == PAGE)
        .then(|| runs.last().map(|r| r.seq))
        .flatten();
    let lang = signed.viewer.lang;
    let t = |key: &str| lang.t(key);
    let body = html! {
        p { (t("runs-intro")) }
        h2 { (t("runs-agents")) }
        @if last.is_empty() { p { (t("runs-no-agent")) } } @else { (agents_table(lang, &last)) }
        h2 { (t("runs-runs")) }
        @if runs.is_empty() { p { (t("runs-none")) } } @else { (runs_table(lang, &runs)) }
        @if let Some(seq) = older { p { a href={ "/admin/runs?before=" (seq) } { (t("runs-older")) } } }
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &t("console-nav-runs"), body),
    )
}

/// Per agent its newest run, marked when the agent has been quiet for longer than it said.
fn agents_table(lang: Lang, last: &[RunRow]) -> Markup {
    let t = |key: &str| lang.t(key);
    let now_t = chrono::Utc::now();
    html! {
        table {
            thead { tr {
                th scope="col" { (t("runs-agent")) } th scope="col" { (t("runs-last-ended")) }
                th scope="col" { (t("runs-result")) } th scope="col" { (t("runs-expected-every")) }
            } }
            tbody { @for r in last { tr {
                td { (r.instance) }
                td {
                    (pages::when(&r.ended))
                    @if overdue(r, now_t) { " " strong.warn-text { (t("runs-quiet")) } }
                }
                @let (key, class) = outcome(r);
                td class=(class) { (t(key)) }
                td { (r.expected_interval_seconds.map_or_else(
                    || t("runs-not-said"),
                    |s| lang.ta("runs-seconds", &[("seconds", s.into())]),
                )) }
            } } }
        }
    }
}

/// Every run of a page, newest first.
fn runs_table(lang: Lang, runs: &[RunRow]) -> Markup {
    let t = |key: &str| lang.t(key);
    html! {
        table {
            thead { tr {
                th scope="col" { (t("runs-ended")) } th scope="col" { (t("runs-agent")) }
                th scope="col" { (t("runs-mode")) } th scope="col" { (t("runs-result")) }
                th scope="col" { (t("runs-changes")) } th scope="col" { (t("runs-details")) }
            } }
            tbody { @for r in runs { tr {
                td { (pages::when(&r.ended)) }
                td { (r.instance) }
                td { (mode_text(lang, r)) @if r.dry_run != 0 { " " (t("runs-dry-run")) } }
                @let (key, class) = outcome(r);
                td class=(class) {
                    (lang.ta("runs-exit", &[("result", (&t(key)).into()), ("code", r.exit_code.into())]))
                }
                td { (counts_text(lang, r)) }
                td {
                    @if let Some(reason) = &r.reason { p { (reason) } }
                    (failures(lang, r))
                }
            } } }
        }
    }
}
