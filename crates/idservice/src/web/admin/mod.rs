//! The administrator's console under `/admin/`: server-rendered pages (maud), one small
//! stylesheet, one small script (progressive: it shows times in the viewer's time zone),
//! in English and Japanese ([`crate::i18n`]). docs/console.md describes what an administrator sees and may do.
//!
//! - `GET/POST /admin/signin` (`username`, `password`, `csrf_token`), `POST /admin/signout`;
//! - `GET /admin/users` (search, state filter, pages), `GET /admin/users/{id}`, and per action
//!   `GET /admin/users/{id}/{action}` (the confirmation step) and `POST` (the action);
//! - `GET /admin/pending`, `POST /admin/pending/confirm` and `/purge`: users pending deletion
//!   and their bulk purge;
//! - `GET /admin/groups`, `GET /admin/groups/{id}`: groups and their members, paged;
//! - `GET/POST /admin/tokens`, `GET/POST /admin/tokens/{id}/revoke`: API tokens;
//! - `GET /admin/apps`, `GET/POST /admin/apps/{app}/accounts/{account}/purge`: linked
//!   applications, their failed links and the fix of a refused one;
//! - `GET /admin/outbox`, `POST /admin/outbox/{id}/retry`: the email outbox;
//! - `GET /admin/runs`: the dirsync agents' run reports;
//! - `GET /admin/audit`: every administrator action, newest first.
//!
//! Accounts are the console's own (`idservice admins`, [`crate::domain::admins`]), with roles:
//! `admin` may do everything, `helpdesk` may view, unlock and send a reset email. Sessions are
//! kept in the database (`admin_sessions`, every node sees them), under their own cookie
//! (`idservice_admin`: `HttpOnly`, `SameSite=Strict`, `Secure` behind an https public URL),
//! and end after `console.idle_minutes` without a request. Every form that changes something
//! carries the session's `csrf_token`, compared in constant time; the sign-in form carries one
//! bound to a cookie of its own (double submit). The same-origin check of the web pages runs
//! in front of all of it. Each action is written to `admin_audit` and to the service log.
//!
//! It does not know the end users' sessions: a user's cookie is never looked at here, so a
//! signed-in user is just a visitor to `/admin/`.

mod apps;
mod audit;
mod auth;
mod groups;
mod outbox;
mod pages;
mod pending;
mod runs;
mod tokens;
mod users;

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;

use super::{Viewer, WebState, cookie, html};
use crate::domain::admins::Role;
use crate::domain::{fmt_time, now};
use crate::store::console::{self as sc, AuditRow};

/// The console session's cookie.
pub const ADMIN_COOKIE: &str = "idservice_admin";
/// The sign-in form's own CSRF cookie (there is no session yet to bind the token to).
pub const SIGNIN_CSRF_COOKIE: &str = "idservice_admin_csrf";

/// The console's routes (merged into the web pages' router).
pub(super) fn routes() -> Router<WebState> {
    Router::new()
        .route("/admin", get(|| async { super::see_other("/admin/users") }))
        .route(
            "/admin/",
            get(|| async { super::see_other("/admin/users") }),
        )
        .route("/admin/console.css", get(pages::stylesheet))
        .route("/admin/console.js", get(pages::script))
        .route("/admin/signin", get(auth::form).post(auth::submit))
        .route("/admin/signout", axum::routing::post(auth::signout))
        .route("/admin/users", get(users::list))
        .route("/admin/users/{id}", get(users::show))
        .route(
            "/admin/users/{id}/{action}",
            get(users::confirm).post(users::act),
        )
        .route("/admin/pending", get(pending::list))
        .route(
            "/admin/pending/confirm",
            axum::routing::post(pending::confirm),
        )
        .route("/admin/pending/purge", axum::routing::post(pending::purge))
        .route("/admin/groups", get(groups::list))
        .route("/admin/groups/{id}", get(groups::show))
        .route("/admin/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/admin/tokens/{id}/revoke",
            get(tokens::confirm_revoke).post(tokens::revoke),
        )
        .route("/admin/apps", get(apps::list))
        .route(
            "/admin/apps/{app}/accounts/{account}/purge",
            get(apps::confirm_purge).post(apps::purge),
        )
        .route("/admin/outbox", get(outbox::list))
        .route(
            "/admin/outbox/{id}/retry",
            axum::routing::post(outbox::retry),
        )
        .route("/admin/runs", get(runs::list))
        .route("/admin/audit", get(audit::list))
}

/// The administrator a request is signed in as. Extracting it extends the session (idle
/// expiry); without a valid session a page request is sent to the sign-in form.
#[derive(Debug, Clone)]
pub struct Signed {
    pub name: String,
    pub role: Role,
    /// The session's form token.
    pub csrf: String,
    /// Where the request came from (for the audit log).
    pub address: Option<IpAddr>,
    /// The page's language and address.
    pub viewer: Viewer,
}

impl Signed {
    /// Refuses (403) what this administrator's role may not do.
    fn require(&self, st: &WebState, needed: Role) -> Result<(), Box<Response>> {
        if needed == Role::Admin && self.role != Role::Admin {
            tracing::warn!(target: "audit", event = "admin_forbidden", admin = %self.name,
                "console action refused: not allowed for the helpdesk role");
            let lang = self.viewer.lang;
            return Err(Box::new(pages::error_page(
                st,
                &self.viewer,
                Some(self),
                StatusCode::FORBIDDEN,
                &lang.t("console-not-allowed-title"),
                &lang.t("console-not-allowed"),
            )));
        }
        Ok(())
    }

    /// Refuses (403) a form whose `csrf_token` is not this session's.
    fn check_csrf(&self, st: &WebState, token: Option<&str>) -> Result<(), Box<Response>> {
        let given = token.unwrap_or("").as_bytes();
        if !given.is_empty() && bool::from(given.ct_eq(self.csrf.as_bytes())) {
            return Ok(());
        }
        tracing::warn!(target: "audit", event = "admin_csrf_refused", admin = %self.name,
            "console form refused: missing or wrong csrf_token");
        let lang = self.viewer.lang;
        Err(Box::new(pages::error_page(
            st,
            &self.viewer,
            Some(self),
            StatusCode::FORBIDDEN,
            &lang.t("web-refused-title"),
            &lang.t("console-csrf-refused"),
        )))
    }

    /// Records an action in the audit log and in the service log.
    async fn audit(
        &self,
        st: &WebState,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let row = AuditRow {
            seq: 0,
            at: now(),
            admin: self.name.clone(),
            action: action.to_string(),
            target: target.map(str::to_string),
            detail: detail.map(str::to_string),
            address: self.address.map(|a| a.to_string()),
        };
        crate::store::retry(crate::store::is_retryable, || async {
            let mut tx = st.svc.store.begin().await?;
            sc::audit(&mut tx, &row).await?;
            tx.commit().await
        })
        .await?;
        tracing::info!(target: "audit", event = "admin_action", admin = %self.name, action = %action,
            target = target.unwrap_or(""), detail = detail.unwrap_or(""),
            address = %row.address.as_deref().unwrap_or(""), "console action");
        Ok(())
    }
}

impl FromRequestParts<WebState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &WebState) -> Result<Self, Response> {
        let Ok(viewer) = Viewer::from_request_parts(parts, st).await;
        let Some(secret) = cookie(&parts.headers, ADMIN_COOKIE) else {
            return Err(to_signin());
        };
        let key = super::account::token_hash(&secret);
        let idle = chrono::TimeDelta::minutes(i64::from(st.cfg.console.idle_minutes.max(1)));
        let at = now();
        let until = fmt_time(chrono::Utc::now() + idle);
        let found = crate::store::retry(crate::store::is_retryable, || async {
            let mut tx = st.svc.store.begin().await?;
            let s = sc::touch_session(&mut tx, &key, &at, &until).await?;
            tx.commit().await?;
            Ok(s)
        })
        .await;
        match found {
            Ok(Some(s)) => {
                let ci = parts.extensions.get::<ConnectInfo<SocketAddr>>();
                Ok(Signed {
                    name: s.name,
                    role: Role::from_stored(&s.role),
                    csrf: s.csrf,
                    address: st.client_ip(ci, &parts.headers),
                    viewer,
                })
            }
            Ok(None) => Err(to_signin()),
            Err(e) => {
                tracing::error!(error = %e, "console session lookup failed");
                Err(pages::error_page(
                    st,
                    &viewer,
                    None,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &viewer.lang.t("console-unavailable-title"),
                    &viewer.lang.t("console-db-unreachable"),
                ))
            }
        }
    }
}

/// 303 to the sign-in form.
fn to_signin() -> Response {
    super::see_other("/admin/signin")
}

/// A 303 to a console page whose address is built at run time (a user's page).
fn see_other_to(to: String) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    resp.extensions_mut().insert(super::WebPage);
    resp
}

/// A page answer.
fn page(status: StatusCode, body: String) -> Response {
    html(status, body)
}
