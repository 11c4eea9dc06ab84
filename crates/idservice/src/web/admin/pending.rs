//! `/admin/pending`: the users pending deletion — who, since when, the day the retention
//! period purges them — 100 to a page, longest pending first; and a bulk purge of the ones
//! ticked, through a confirmation page that names each of them (admin role).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{self, csrf, layout, message};
use super::{Signed, page, see_other_to};
use crate::domain::admins::Role;
use crate::domain::fmt_time;
use crate::domain::users::{self as du, ConsoleAction, STATE_PENDING};
use crate::store::console as sc;
use crate::store::users::UserRow;
use crate::web::WebState;

const PAGE: i64 = 100;

/// The day the retention period purges a user pending since `since`.
fn purge_day(st: &WebState, since: Option<&str>) -> String {
    since
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| fmt_time(t.to_utc() + chrono::Duration::days(st.svc.retention_days)))
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub struct ListParams {
    since: Option<String>,
    id: Option<String>,
    purged: Option<usize>,
}

/// `GET /admin/pending`.
pub async fn list(
    State(st): State<WebState>,
    signed: Signed,
    Query(p): Query<ListParams>,
) -> Response {
    let after = match (&p.since, &p.id) {
        (Some(s), Some(i)) => Some((s.as_str(), i.as_str())),
        _ => None,
    };
    let rows = match st.svc.store.read().await {
        Ok(mut conn) => sc::pending_page(&mut conn, after, PAGE + 1).await,
        Err(e) => Err(e),
    };
    let mut rows = match rows {
        Ok(r) => r,
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let next = more
        .then(|| {
            rows.last().and_then(|r| {
                let qs = serde_urlencoded::to_string([
                    ("since", r.pending_since.as_deref().unwrap_or("")),
                    ("id", r.id.as_str()),
                ])
                .ok()?;
                Some(format!("/admin/pending?{qs}"))
            })
        })
        .flatten();
    let lang = signed.viewer.lang;
    let done = p
        .purged
        .map(|n| lang.ta("pending-purged", &[("n", n.into())]));
    let explain = lang.ta("pending-explain", &[("days", st.svc.retention_days.into())]);
    let body = html! {
        (message(done.as_deref()))
        p { (explain) }
        @if rows.is_empty() { p { (lang.t("pending-none")) } } @else {
            (pending_form(&st, &signed, &rows))
        }
        p.actions {
            @if after.is_some() { a href="/admin/pending" { (lang.t("pending-first-page")) } }
            @if let Some(n) = next { a href=(n) rel="next" { (lang.t("pending-next-page")) } }
        }
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &lang.t("pending-title"), body),
    )
}

/// The table of users pending deletion; for an administrator, with a box to tick on each
/// row and the button to the bulk purge's confirmation.
fn pending_form(st: &WebState, signed: &Signed, rows: &[UserRow]) -> Markup {
    let lang = signed.viewer.lang;
    let admin = signed.role == Role::Admin;
    html! {
        form method="post" action="/admin/pending/confirm" {
            (csrf(signed))
            table {
                thead { tr {
                    @if admin { th scope="col" { span.visually-hidden { (lang.t("pending-select")) } } }
                    th scope="col" { "userName" } th scope="col" { "externalId" }
                    th scope="col" { (lang.t("pending-since")) }
                    th scope="col" { (lang.t("pending-purged-on")) }
                } }
                tbody { @for r in rows { tr {
                    @if admin { td {
                        input type="checkbox" name="id" value=(r.id) id={ "pick-" (r.id) }
                            aria-label=(lang.ta("pending-select-user", &[("user", (&r.user_name).into())]));
                    } }
                    td { a href={ "/admin/users/" (r.id) } { (r.user_name) } }
                    td { (r.external_id.as_deref().unwrap_or("")) }
                    td { (pages::when(r.pending_since.as_deref().unwrap_or(""))) }
                    td { (pages::when(&purge_day(st, r.pending_since.as_deref()))) }
                } } }
            }
            @if admin { div { button type="submit" { (lang.t("pending-purge-selected")) } } }
        }
    }
}

/// The ids and form token of a bulk form (`id` repeats, one per ticked user).
fn parse_bulk(body: &str) -> (Vec<String>, Option<String>) {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap_or_default();
    let mut ids = Vec::new();
    let mut token = None;
    for (k, v) in pairs {
        match k.as_str() {
            "id" if ids.len() < PAGE as usize => ids.push(v),
            "csrf_token" => token = Some(v),
            _ => {}
        }
    }
    (ids, token)
}

/// `POST /admin/pending/confirm`: names every user the bulk purge would remove.
pub async fn confirm(State(st): State<WebState>, signed: Signed, body: String) -> Response {
    let (ids, token) = parse_bulk(&body);
    if let Err(r) = signed.check_csrf(&st, token.as_deref()) {
        return *r;
    }
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    let rows = match st.svc.store.read().await {
        Ok(mut conn) => sc::users_by_ids(&mut conn, &ids).await,
        Err(e) => Err(e),
    };
    let rows: Vec<_> = match rows {
        Ok(r) => r.into_iter().filter(|r| r.state == STATE_PENDING).collect(),
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    if rows.is_empty() {
        return see_other_to("/admin/pending".to_string());
    }
    let lang = signed.viewer.lang;
    let n = &[("n", rows.len().into())];
    let body = html! {
        p { (lang.t("pending-confirm-explain")) }
        ul { @for r in &rows { li { (r.user_name) } } }
        form method="post" action="/admin/pending/purge" {
            (csrf(&signed))
            @for r in &rows { input type="hidden" name="id" value=(r.id); }
            button type="submit" { (lang.ta("pending-purge-button", n)) }
            a href="/admin/pending" { (lang.t("console-cancel")) }
        }
    };
    let title = lang.ta("pending-confirm-title", n);
    page(StatusCode::OK, layout(&st, &signed, &title, body))
}

/// `POST /admin/pending/purge`: purges each named user still pending; each is audited.
pub async fn purge(State(st): State<WebState>, signed: Signed, body: String) -> Response {
    let (ids, token) = parse_bulk(&body);
    if let Err(r) = signed.check_csrf(&st, token.as_deref()) {
        return *r;
    }
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    let rows = match st.svc.store.read().await {
        Ok(mut conn) => sc::users_by_ids(&mut conn, &ids).await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let mut purged = 0;
    for r in rows.iter().filter(|r| r.state == STATE_PENDING) {
        if let Err(e) = du::console_action(&st.svc, &r.id, ConsoleAction::Purge).await {
            tracing::warn!(user = %r.user_name, error = %e.detail, "bulk purge skipped a user");
            continue;
        }
        purged += 1;
        if let Err(e) = signed
            .audit(&st, "purge", Some(&r.user_name), Some("bulk purge"))
            .await
        {
            return pages::db_error(&st, &signed, &e);
        }
    }
    see_other_to(format!("/admin/pending?purged={purged}"))
}
