//! The console's HTML (maud: every value is escaped by the template), its one stylesheet and
//! its one small script (times in the viewer's time zone).
//! Pure rendering: handlers pass what a page shows; nothing here reads the database.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Signed;
use crate::domain::admins::Role;
use crate::web::pages::language_switch;
use crate::web::{Viewer, WebState};

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
.warn-text{color:#8a1c1c}nav.lang{display:inline;margin-left:.6em}nav.lang a{color:#fff}.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}\
";

/// A static file of the console, cached for an hour.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp.extensions_mut().insert(crate::web::WebPage);
    resp
}

/// `GET /admin/console.css`.
pub async fn stylesheet() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

/// `GET /admin/console.js`: shows each `<time datetime>` of a page in the viewer's time zone,
/// with its offset. Without script the times stay in UTC, marked so.
pub async fn script() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

const JS: &str = "\
document.querySelectorAll('time[datetime]').forEach(function (el) {\n\
  var d = new Date(el.getAttribute('datetime'));\n\
  if (isNaN(d.getTime())) { return; }\n\
  function p(n) { return (n < 10 ? '0' : '') + n; }\n\
  var off = -d.getTimezoneOffset(), sign = off < 0 ? '-' : '+';\n\
  off = Math.abs(off);\n\
  el.textContent = d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' +\n\
    p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()) +\n\
    ' (UTC' + sign + p(Math.floor(off / 60)) + ':' + p(off % 60) + ')';\n\
  el.title = el.getAttribute('datetime');\n\
});\n";

/// A stored time (RFC 3339, UTC) as the page shows it: `<time datetime>` with the time in
/// UTC, which the page's script rewrites in the viewer's time zone. Text that is not a time is
/// shown as it is.
pub fn when(stored: &str) -> Markup {
    match chrono::DateTime::parse_from_rfc3339(stored) {
        Ok(t) => html! {
            time datetime=(stored) { (t.to_utc().format("%Y-%m-%d %H:%M:%S UTC")) }
        },
        Err(_) => html! { (stored) },
    }
}

/// Where a sentence's `<code>` part goes: the text of its argument, split out again by
/// [`with_code`], so that each language puts it where its word order wants it.
pub const MARK: &str = "\u{1}";

/// `text`, a sentence one of whose arguments was [`MARK`], with `code` as `<code>` there.
pub fn with_code(text: &str, code: &str) -> Markup {
    let (before, after) = text.split_once(MARK).unwrap_or((text, ""));
    html! { (before) code { (code) } (after) }
}

/// The hidden form token of a signed-in page's forms.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(signed.csrf); }
}

/// The console's navigation: (path, text key).
const NAV: [(&str, &str); 8] = [
    ("/admin/users", "console-nav-users"),
    ("/admin/pending", "console-nav-pending"),
    ("/admin/groups", "console-nav-groups"),
    ("/admin/tokens", "console-nav-tokens"),
    ("/admin/apps", "console-nav-apps"),
    ("/admin/outbox", "console-nav-outbox"),
    ("/admin/runs", "console-nav-runs"),
    ("/admin/audit", "console-nav-audit"),
];

/// Every console page: the service's name in the title and the banner, the language switch,
/// the navigation and the sign-out button when signed in. `v` is the viewer (the signed-in
/// administrator's, when there is one).
pub fn page_layout(
    st: &WebState,
    v: &Viewer,
    signed: Option<&Signed>,
    title: &str,
    body: Markup,
) -> String {
    let service = &st.cfg.service_name;
    let lang = v.lang;
    let console = lang.ta("console-name", &[("service", service.into())]);
    html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (console) }
                link rel="stylesheet" href="/admin/console.css";
                script src="/admin/console.js" defer {}
            }
            body {
                header {
                    strong { (console) }
                    @if signed.is_some() {
                        nav aria-label=(lang.t("console-nav-label")) {
                            @for (href, key) in NAV {
                                a href=(href) { (lang.t(key)) }
                            }
                        }
                    }
                    span.who {
                        @if let Some(s) = signed {
                            (s.name) " (" (lang.t(role_key(s.role))) ") "
                            form method="post" action="/admin/signout" {
                                (csrf(s))
                                button type="submit" { (lang.t("console-signout")) }
                            }
                        }
                        (language_switch(lang, &v.uri))
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

/// The text key of a role's name.
pub fn role_key(role: Role) -> &'static str {
    match role {
        Role::Admin => "console-role-admin",
        Role::Helpdesk => "console-role-helpdesk",
    }
}

/// A signed-in page.
pub fn layout(st: &WebState, signed: &Signed, title: &str, body: Markup) -> String {
    page_layout(st, &signed.viewer, Some(signed), title, body)
}

/// A message box (`role=alert`).
pub fn message(msg: Option<&str>) -> Markup {
    html! { @if let Some(m) = msg { p.msg role="alert" { (m) } } }
}

/// An error page with the navigation when signed in. `title` and `msg` are in the viewer's
/// language already.
pub fn error_page(
    st: &WebState,
    v: &Viewer,
    signed: Option<&Signed>,
    status: StatusCode,
    title: &str,
    msg: &str,
) -> Response {
    let body = html! {
        p.warn role="alert" { (msg) }
        p { a href="/admin/users" { (v.lang.t("console-back-to-users")) } }
    };
    super::page(status, page_layout(st, v, signed, title, body))
}

/// The page for a read or write the database refused (the error goes to the log only).
pub fn db_error(st: &WebState, signed: &Signed, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console page failed on a database error");
    let lang = signed.viewer.lang;
    error_page(
        st,
        &signed.viewer,
        Some(signed),
        StatusCode::INTERNAL_SERVER_ERROR,
        &lang.t("console-unavailable-title"),
        &lang.t("console-db-unreadable"),
    )
}

/// The confirmation step of an action: what it does, its button posting to `action`, and a
/// way back. `title` and `button` are in the viewer's language already.
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
            a href=(cancel) { (signed.viewer.lang.t("console-cancel")) }
        }
    };
    super::page(StatusCode::OK, layout(st, signed, title, body))
}

pub fn signin(st: &WebState, v: &Viewer, msg: Option<&str>, username: &str, token: &str) -> String {
    let lang = v.lang;
    let body = html! {
        (message(msg))
        form method="post" action="/admin/signin" {
            input type="hidden" name="csrf_token" value=(token);
            label for="username" { (lang.t("console-admin-name")) }
            input #username name="username" autocomplete="username" value=(username) required;
            label for="password" { (lang.t("web-password")) }
            input #password name="password" type="password" autocomplete="current-password" required;
            div { button type="submit" { (lang.t("web-signin-button")) } }
        }
    };
    page_layout(st, v, None, &lang.t("console-signin-title"), body)
}

/// Whether `role` may offer `action` at all (the handlers check again on POST).
pub fn allowed(role: Role, action: &str) -> bool {
    role == Role::Admin || matches!(action, "unlock" | "send-reset")
}
