//! `/admin/apps`: the linked applications — URL, licence, scope, queue depth (backlog), and
//! the error holding a queue — and their failed links; a link refused because an old
//! downstream account holds the userName offers its fix, deleting that account
//! (`apps purge-account`), behind a confirmation page (admin role).

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::pages::{self, layout, message};
use super::{Signed, page, see_other_to};
use crate::domain::admins::Role;
use crate::outbound::relink::account_to_purge;
use crate::outbound::{FAILED, apps};
use crate::web::WebState;

fn failure(st: &WebState, signed: &Signed, e: &crate::outbound::Error) -> Response {
    tracing::error!(error = %e, "console: linked applications");
    pages::error_page(
        st,
        &signed.viewer,
        Some(signed),
        StatusCode::INTERNAL_SERVER_ERROR,
        "Linked applications",
        &e.to_string(),
    )
}

#[derive(Deserialize)]
pub struct ListParams {
    done: Option<String>,
}

/// `GET /admin/apps`.
pub async fn list(
    State(st): State<WebState>,
    signed: Signed,
    axum::extract::Query(p): axum::extract::Query<ListParams>,
) -> Response {
    let listed = match apps::list(&st.svc).await {
        Ok(a) => a,
        Err(e) => return failure(&st, &signed, &e),
    };
    let links = match apps::links(&st.svc, None).await {
        Ok(l) => l,
        Err(e) => return failure(&st, &signed, &e),
    };
    let failed: Vec<_> = links.iter().filter(|l| l.state == FAILED).collect();
    let admin = signed.role == Role::Admin;
    let body = html! {
        (message((p.done.as_deref() == Some("purged")).then_some(
            "The account was deleted; the application's failed links are queued again.",
        )))
        @if listed.is_empty() {
            p { "No linked applications. Add one with " code { "idservice apps add" } "." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Application" } th scope="col" { "URL" }
                    th scope="col" { "Licence" } th scope="col" { "Users linked" }
                    th scope="col" { "Queue" } th scope="col" { "Status" }
                } }
                tbody { @for (a, backlog) in &listed { tr {
                    td { (a.name) }
                    td { (a.url) }
                    td { (a.licence.as_deref().unwrap_or("")) }
                    td { (a.groups.as_deref().map_or("every user".to_string(), |g| format!("members of {g}"))) }
                    td { (backlog) }
                    td {
                        @if let Some(e) = &a.last_error {
                            strong.warn-text { "Held: " } (e) " (" (a.last_error_at.as_deref().unwrap_or("")) ")"
                        } @else { "OK" }
                    }
                } } }
            }
        }
        h2 { "Failed links" }
        @if failed.is_empty() { p { "None." } } @else {
            table {
                thead { tr {
                    th scope="col" { "Application" } th scope="col" { "User" }
                    th scope="col" { "Error" } th scope="col" { "Fix" }
                } }
                tbody { @for l in &failed { tr {
                    td { (l.app) }
                    td { a href={ "/admin/users/" (l.user_id) } { (l.user_name) } }
                    td { (l.last_error.as_deref().unwrap_or("")) }
                    td {
                        @if let Some(account) = l.last_error.as_deref().and_then(account_to_purge) {
                            @if admin {
                                a href={ "/admin/apps/" (l.app) "/accounts/" (account) "/purge" } {
                                    "Delete account " (account)
                                }
                            }
                        }
                    }
                } } }
            }
        }
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, "Linked applications", body),
    )
}

/// `GET /admin/apps/{app}/accounts/{account}/purge`: the confirmation step.
pub async fn confirm_purge(
    State(st): State<WebState>,
    signed: Signed,
    Path((app, account)): Path<(String, String)>,
) -> Response {
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    pages::confirm_page(
        &st,
        &signed,
        &format!("Delete account {account} in {app}?"),
        html! { p { "The account " code { (account) } " is deleted in " (app)
        " for good, and the application's failed links are tried again." } },
        &format!("/admin/apps/{app}/accounts/{account}/purge"),
        "Delete the account",
        "/admin/apps",
    )
}

#[derive(Deserialize)]
pub struct PurgeForm {
    csrf_token: Option<String>,
}

/// `POST /admin/apps/{app}/accounts/{account}/purge`.
pub async fn purge(
    State(st): State<WebState>,
    signed: Signed,
    Path((app, account)): Path<(String, String)>,
    Form(f): Form<PurgeForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&st, f.csrf_token.as_deref()) {
        return *r;
    }
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    let outcome = apps::purge_account(&st.svc, &app, &account).await;
    let detail = match &outcome {
        Ok(n) => format!("deleted; {n} failed link(s) queued again"),
        Err(e) => e.to_string(),
    };
    let target = format!("{app}/{account}");
    if let Err(e) = signed
        .audit(&st, "app-purge-account", Some(&target), Some(&detail))
        .await
    {
        tracing::error!(error = %e, "the console's audit log could not record an account purge");
    }
    match outcome {
        Ok(_) => see_other_to("/admin/apps?done=purged".to_string()),
        Err(e) => failure(&st, &signed, &e),
    }
}
