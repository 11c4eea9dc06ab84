//! The sign-in and password-reset pages: small server-rendered HTML forms at the server root,
//! outside `/scim/v2`.
//!
//! - `GET /signin`, `POST /signin` (`username`, `password`): 303 to `/account` with a session
//!   cookie, or 401 "Incorrect user name or password." for every failure (unknown user, wrong
//!   password, no password yet, disabled, pending deletion, locked);
//! - `GET /account`, `POST /signout`;
//! - `GET/POST /forgot` (`username`): always the same neutral answer; queues "Password reset
//!   requested" with a single-use link to every address of an active user;
//! - `GET/POST /reset` (`token`, `password`, `confirm`): sets the password, clears any
//!   lockout, queues "Password has been reset" to every address.
//!
//! Requests are rate-limited per account and per client address (governor); repeated
//! failures lock the account and queue "Account locked" to the primary address. Secrets
//! (passwords, session cookies, reset links) are never logged: the request log has the path
//! only, and form fields are held in zeroised memory.

pub mod account;
mod pages;
mod reset;
mod signin;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;
use crate::domain::Service;
use crate::mail::Mail;

/// Marks a response as a web page, so the SCIM error middleware leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct WebPage;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "idservice_session";

/// The generic sign-in failure: the same for every reason, so it tells an attacker nothing.
pub const SIGNIN_FAILED: &str = "Incorrect user name or password.";

/// The neutral answer to a reset request, whether or not the account exists.
pub const FORGOT_SENT: &str = "If an account with that user name exists and can sign in, a link to set a new password has been sent to its email addresses.";

/// Shared state of the web pages.
#[derive(Clone)]
pub struct WebState {
    pub svc: Arc<Service>,
    pub cfg: Arc<Config>,
    pub mail: Arc<Mail>,
    /// Base of the links in emails, without a trailing slash.
    pub public_url: String,
    limits: Arc<Limits>,
    sessions: Arc<Sessions>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// Per-account and per-address rate limits of sign-in and reset requests.
struct Limits {
    account: DefaultKeyedRateLimiter<String>,
    address: DefaultKeyedRateLimiter<IpAddr>,
}

impl Limits {
    fn new(cfg: &Config) -> Limits {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Limits {
            account: RateLimiter::keyed(quota(cfg.signin.per_account_per_minute)),
            address: RateLimiter::keyed(quota(cfg.signin.per_address_per_minute)),
        }
    }

    /// Whether one more request for `account` from `addr` is allowed now (both are charged).
    fn allow(&self, account: &str, addr: Option<IpAddr>) -> bool {
        let by_addr = addr.is_none_or(|a| self.address.check_key(&a).is_ok());
        let by_account = self.account.check_key(&account.to_lowercase()).is_ok();
        // Keep the maps from growing without bound on a long run.
        if self.account.len() > 10_000 {
            self.account.retain_recent();
        }
        if self.address.len() > 10_000 {
            self.address.retain_recent();
        }
        by_addr && by_account
    }

    /// Whether one more request from `addr` is allowed now (pages with no account name).
    fn allow_address(&self, addr: Option<IpAddr>) -> bool {
        addr.is_none_or(|a| self.address.check_key(&a).is_ok())
    }
}

/// Signed-in sessions, in memory: a restart signs everyone out. Keyed by the SHA-256 of the
/// cookie value, so the map holds no usable secret.
#[derive(Default)]
struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
struct Session {
    user_id: String,
    user_name: String,
    expires: Instant,
}

impl Sessions {
    fn insert(&self, key: String, s: Session) {
        if let Ok(mut m) = self.map.lock() {
            let now = Instant::now();
            m.retain(|_, v| v.expires > now);
            m.insert(key, s);
        }
    }

    fn get(&self, key: &str) -> Option<Session> {
        let m = self.map.lock().ok()?;
        m.get(key).filter(|s| s.expires > Instant::now()).cloned()
    }

    fn remove(&self, key: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(key);
        }
    }

    /// Ends every session of a user (after a password reset).
    fn remove_user(&self, user_id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, v| v.user_id != user_id);
        }
    }
}

impl WebState {
    /// `listen` is the bound address, the default base of links when `public_url` is unset.
    pub fn new(svc: Arc<Service>, cfg: Arc<Config>, mail: Arc<Mail>, listen: SocketAddr) -> Self {
        let public_url = cfg
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        WebState {
            limits: Arc::new(Limits::new(&cfg)),
            sessions: Arc::new(Sessions::default()),
            svc,
            cfg,
            mail,
            public_url,
        }
    }

    fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// The pages' routes (state applied; merged into the main router).
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/account", get(signin::account))
        .route("/signout", post(signin::signout))
        .route(
            "/forgot",
            get(reset::forgot_form).post(reset::forgot_submit),
        )
        .route("/reset", get(reset::reset_form).post(reset::reset_submit))
        .with_state(state)
}

/// The client address, when the server was started with connection info.
fn client_ip(ci: Option<&ConnectInfo<SocketAddr>>) -> Option<IpAddr> {
    ci.map(|c| c.0.ip())
}

/// An HTML response marked as a web page, never cached (it may carry a form token).
fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp.extensions_mut().insert(WebPage);
    resp
}

/// A 303 See Other to `to`, marked as a web page.
fn see_other(to: &'static str) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    resp.extensions_mut().insert(WebPage);
    resp
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}
