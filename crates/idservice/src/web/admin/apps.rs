//! `/admin/apps`: the linked applications — URL, licence, scope, queue depth (backlog), and
//! the error holding a queue — and their failed links; a link refused because an old
//! downstream account holds the userName offers its fix, deleting that account
//! (`apps purge-account`), behind a confirmation page (admin role).

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{self, MARK, layout, message, with_code};
use super::{Signed, page, see_other_to};
use crate::domain::admins::Role;
use crate::i18n::Lang;
use crate::outbound::relink::account_to_purge;
use crate::outbound::{FAILED, apps};
use crate::store::apps::{AppRow, LinkRow};
use crate::web::WebState;

fn failure(st: &WebState, signed: &Signed, e: &crate::outbound::Error) -> Response {
    tracing::error!(error = %e, "console: linked applications");
    pages::error_page(
        st,
        &signed.viewer,
        Some(signed),
        StatusCode::INTERNAL_SERVER_ERROR,
        &signed.viewer.lang.t("console-nav-apps"),
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
    let lang = signed.viewer.lang;
    let done = (p.done.as_deref() == Some("purged")).then(|| lang.t("apps-purged-notice"));
    let body = html! {
        (message(done.as_deref()))
        @if listed.is_empty() {
            p { (with_code(&lang.ta("apps-none", &[("command", MARK.into())]), "idservice apps add")) }
        } @else {
            (apps_table(lang, &listed))
        }
        h2 { (lang.t("apps-failed-links")) }
        @if failed.is_empty() { p { (lang.t("apps-none-failed")) } } @else {
            (failed_table(lang, &failed, signed.role == Role::Admin))
        }
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &lang.t("console-nav-apps"), body),
    )
}

/// The applications, each with its queue depth (backlog).
fn apps_table(lang: Lang, listed: &[(AppRow, i64)]) -> Markup {
    let t = |key: &str| lang.t(key);
    html! {
        table {
            thead { tr {
                th scope="col" { (t("apps-application")) } th scope="col" { (t("apps-url")) }
                th scope="col" { (t("apps-licence")) } th scope="col" { (t("apps-users-linked")) }
                th scope="col" { (t("apps-queue")) } th scope="col" { (t("apps-status")) }
            } }
            tbody { @for (a, backlog) in listed { tr {
                td { (a.name) }
                td { (a.url) }
                td { (a.licence.as_deref().unwrap_or("")) }
                td { (a.groups.as_deref().map_or_else(
                    || t("apps-every-user"),
                    |g| lang.ta("apps-members-of", &[("group", g.into())]),
                )) }
                td { (backlog) }
                td {
                    @if let Some(e) = &a.last_error {
                        strong.warn-text { (t("apps-held")) } " " (e)
                        " (" (pages::when(a.last_error_at.as_deref().unwrap_or(""))) ")"
                    } @else { (t("apps-ok")) }
                }
            } } }
        }
    }
}

/// The failed links, with the fix of a refused one for the admin role.
fn failed_table(lang: Lang, failed: &[&LinkRow], admin: bool) -> Markup {
    let t = |key: &str| lang.t(key);
    html! {
        table {
            thead { tr {
                th scope="col" { (t("apps-application")) } th scope="col" { (t("apps-user")) }
                th scope="col" { (t("apps-error")) } th scope="col" { (t("apps-fix")) }
            } }
            tbody { @for l in failed { tr {
                td { (l.app) }
                td { a href={ "/admin/users/" (l.user_id) } { (l.user_name) } }
                td { (l.last_error.as_deref().unwrap_or("")) }
                td {
                    @if let Some(account) = l.last_error.as_deref().and_then(account_to_purge) {
                        @if admin {
                            a href={ "/admin/apps/" (l.app) "/accounts/" (account) "/purge" } {
                                (lang.ta("apps-delete-account", &[("account", account.into())]))
                            }
                        }
                    }
                }
            } } }
        }
    }
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
    let lang = signed.viewer.lang;
    let names = [("account", (&account).into()), ("app", (&app).into())];
    let consequence = lang.ta(
        "apps-purge-consequence",
        &[("account", MARK.into()), ("app", (&app).into())],
    );
    pages::confirm_page(
        &st,
        &signed,
        &lang.ta("apps-purge-title", &names),
        html! { p { (with_code(&consequence, &account)) } },
        &format!("/admin/apps/{app}/accounts/{account}/purge"),
        &lang.t("apps-purge-button"),
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
