//! The console's HTML (maud: every value is escaped by the template), and its one stylesheet.
//! Pure rendering: handlers pass what a page shows; nothing here reads the database.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Signed;
use crate::domain::admins::Role;
use crate::web::WebState;

const CSS: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fff;line-height:1.45}\
header{background:#1f3a5f;color:#fff;padding:.5em 1em;display:flex;flex-wrap:wrap;gap:1em;align-items:center}\
header a{color:#fff}header .who{margin-left:auto}header form{display:inline}\
nav a{margin-right:1em}main{padding:1em;max-width:70em}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ccc}\
th{background:#eef2f7}.msg{padding:.6em;border:1px solid #1f3a5f;background:#eef2f7}\
.warn{padding:.6em;border:1px solid #8a1c1c;background:#fbeaea}\
label{display:block;margin:.6em 0 .2em}input,select{padding:.35em;font-size:1em}\
button{padding:.4em 1em;font-size:1em;margin:.2em .4em .2em 0}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}\
.state-pendingDeletion,.state-disabled{color:#8a1c1c;font-weight:bold}\
form.search{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-end;margin-bottom:1em}\
form.search label{margin:0}.actions a{margin-right:1em}\
fieldset{border:1px solid #ccc;margin:.6em 0}label.inline{display:inline;margin-left:.3em}\
.warn-text{color:#8a1c1c}.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}\
";

/// `GET /admin/console.css`.
pub async fn stylesheet() -> Response {
    let mut resp = CSS.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp.extensions_mut().insert(crate::web::WebPage);
    resp
}

/// The hidden form token of a signed-in page's forms.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(signed.csrf); }
}

/// Every console page: the service's name in the title and the banner, the navigation and the
/// sign-out button when signed in.
pub fn layout(st: &WebState, signed: Option<&Signed>, title: &str, body: Markup) -> String {
    let service = &st.cfg.service_name;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (service) " console" }
                link rel="stylesheet" href="/admin/console.css";
            }
            body {
                header {
                    strong { (service) " console" }
                    @if let Some(s) = signed {
                        nav aria-label="Console" {
                            a href="/admin/users" { "Users" }
                            a href="/admin/pending" { "Pending deletion" }
                            a href="/admin/groups" { "Groups" }
                            a href="/admin/tokens" { "API tokens" }
                            a href="/admin/apps" { "Linked applications" }
                            a href="/admin/outbox" { "Email outbox" }
                            a href="/admin/runs" { "Sync runs" }
                            a href="/admin/audit" { "Audit log" }
                        }
                        span.who {
                            (s.name) " (" (s.role.as_str()) ") "
                            form method="post" action="/admin/signout" {
                                (csrf(s))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// A message box (`role=alert`).
pub fn message(msg: Option<&str>) -> Markup {
    html! { @if let Some(m) = msg { p.msg role="alert" { (m) } } }
}

/// An error page with the navigation when signed in.
pub fn error_page(
    st: &WebState,
    signed: Option<&Signed>,
    status: StatusCode,
    title: &str,
    msg: &str,
) -> Response {
    let body = html! {
        p.warn role="alert" { (msg) }
        p { a href="/admin/users" { "Back to the users" } }
    };
    super::page(status, layout(st, signed, title, body))
}

/// The page for a read or write the database refused (the error goes to the log only).
pub fn db_error(st: &WebState, signed: &Signed, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console page failed on a database error");
    error_page(
        st,
        Some(signed),
        StatusCode::INTERNAL_SERVER_ERROR,
        "Console unavailable",
        "The database could not be read. Try again later.",
    )
}

/// The confirmation step of an action: what it does, its button posting to `action`, and a
/// way back.
pub fn confirm_page(
    st: &WebState,
    signed: &Signed,
    title: &str,
    consequence: Markup,
    action: &str,
    button: &str,
    cancel: &str,
) -> Response {
    let body = html! {
        (consequence)
        form method="post" action=(action) {
            (csrf(signed))
            button type="submit" { (button) }
            a href=(cancel) { "Cancel" }
        }
    };
    super::page(StatusCode::OK, layout(st, Some(signed), title, body))
}

pub fn signin(st: &WebState, msg: Option<&str>, username: &str, token: &str) -> String {
    let body = html! {
        (message(msg))
        form method="post" action="/admin/signin" {
            input type="hidden" name="csrf_token" value=(token);
            label for="username" { "Administrator name" }
            input #username name="username" autocomplete="username" value=(username) required;
            label for="password" { "Password" }
            input #password name="password" type="password" autocomplete="current-password" required;
            div { button type="submit" { "Sign in" } }
        }
    };
    layout(st, None, "Console sign-in", body)
}

/// Whether `role` may offer `action` at all (the handlers check again on POST).
pub fn allowed(role: Role, action: &str) -> bool {
    role == Role::Admin || matches!(action, "unlock" | "send-reset")
}
