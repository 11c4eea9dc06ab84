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
//! Requests are rate-limited per account and per client address (counters in the database,
//! shared by every node, like the sessions); repeated
//! failures lock the account and queue "Account locked" to the primary address. Secrets
//! (passwords, session cookies, reset links) are never logged: the request log has the path
//! only, and form fields are held in zeroised memory.

pub use crate::store::account;
mod admin;
mod pages;
mod reset;
mod signin;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::Config;
use crate::domain::{Service, fmt_time, now};
use crate::i18n::Lang;
use crate::mail::Mail;
use crate::store::account::Session;
use crate::store::{self, Store};

/// Marks a response as a web page, so the SCIM error middleware leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct WebPage;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "idservice_session";

/// The language cookie's name: set by the language switch (`?lang=`), read on every page.
pub const LANG_COOKIE: &str = "idservice_lang";

/// Who looks at a page: the language it is shown in and the page's address (path and query,
/// for the language switch's links). See [`crate::i18n`] for the order of choice.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub lang: Lang,
    pub uri: String,
}

impl Viewer {
    /// The rendering context of an end-user page.
    pub fn ctx<'a>(&'a self, st: &'a WebState) -> pages::Ctx<'a> {
        pages::Ctx {
            service: &st.cfg.service_name,
            lang: self.lang,
            uri: &self.uri,
        }
    }
}

/// The language a request's `lang` query parameter names.
fn query_lang(uri: &axum::http::Uri) -> Option<Lang> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("lang="))
        .and_then(Lang::from_tag)
}

/// The page language of a request: `?lang=`, the language cookie, `Accept-Language`, the
/// configured default — the first that names a language the service speaks.
pub fn page_lang(parts: &axum::http::request::Parts, default: Lang) -> Lang {
    query_lang(&parts.uri)
        .or_else(|| cookie(&parts.headers, LANG_COOKIE).and_then(|c| Lang::from_tag(&c)))
        .or_else(|| {
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or(default)
}

impl axum::extract::FromRequestParts<WebState> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &WebState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Viewer {
            lang: page_lang(parts, st.cfg.default_language),
            uri: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
        })
    }
}

/// Remembers the language a viewer picked with the switch (`?lang=`) in a cookie for a year.
async fn remember_language(
    axum::extract::State(st): axum::extract::State<WebState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let picked = query_lang(req.uri());
    let mut resp = next.run(req).await;
    if let Some(lang) = picked {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly{}",
            lang.tag(),
            if st.secure_cookies() { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// Shared state of the web pages.
#[derive(Clone)]
pub struct WebState {
    pub svc: Arc<Service>,
    pub cfg: Arc<Config>,
    pub mail: Arc<Mail>,
    /// Base of the links in emails, without a trailing slash.
    pub public_url: String,
    limits: Arc<Limits>,
    /// `--trusted-proxy`: peers whose `X-Forwarded-For` names the client.
    trusted_proxies: Arc<Vec<IpAddr>>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// Per-account and per-address rate limits of sign-in and reset requests: at most so many
/// requests in a minute from the first one, counted in the database (`rate_limits`) so that
/// every node behind a load balancer charges the same counters.
struct Limits {
    per_account: i64,
    per_address: i64,
}

/// The length of a rate-limit window.
const LIMIT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl Limits {
    fn new(cfg: &Config) -> Limits {
        Limits {
            per_account: i64::from(cfg.signin.per_account_per_minute.max(1)),
            per_address: i64::from(cfg.signin.per_address_per_minute.max(1)),
        }
    }

    /// Whether one more request for `account` (if any) from `addr` is allowed now (both are
    /// charged). A database failure refuses the request.
    async fn allow(&self, store: &Store, account: Option<&str>, addr: Option<IpAddr>) -> bool {
        let mut keys = Vec::new();
        if let Some(a) = addr {
            keys.push((format!("address:{a}"), self.per_address));
        }
        if let Some(name) = account {
            keys.push((format!("account:{}", name.to_lowercase()), self.per_account));
        }
        let mut ok = true;
        for (key, limit) in &keys {
            match charge(store, key).await {
                Ok(hits) => ok &= hits <= *limit,
                Err(e) => {
                    tracing::error!(error = %e, "rate limit not available");
                    return false;
                }
            }
        }
        ok
    }
}

/// Counts one request against `key`; returns the count in the current window.
pub(super) async fn charge(store: &Store, key: &str) -> Result<i64, sqlx::Error> {
    store::retry(store::is_retryable, move || async move {
        let now_t = chrono::Utc::now();
        let (at, floor) = (fmt_time(now_t), fmt_time(now_t - LIMIT_WINDOW));
        let mut tx = store.begin().await?;
        let hits = account::hit(&mut tx, key, &at, &floor).await?;
        if rand::random::<u8>() == 0 {
            account::sweep_hits(&mut tx, &floor).await?;
        }
        tx.commit().await?;
        Ok(hits)
    })
    .await
}

/// Signed-in sessions, in the database (`web_sessions`), so that a session opened through one
/// node is valid on every other. Keyed by the SHA-256 of the cookie value, so the table holds
/// no usable secret.
#[derive(Clone, Copy)]
struct Sessions;

impl Sessions {
    async fn insert(
        store: &Store,
        key: &str,
        s: &Session,
        valid_for: chrono::TimeDelta,
    ) -> Result<(), sqlx::Error> {
        store::retry(store::is_retryable, move || async move {
            let now_t = chrono::Utc::now();
            let mut tx = store.begin().await?;
            account::insert_session(
                &mut tx,
                key,
                s,
                &fmt_time(now_t),
                &fmt_time(now_t + valid_for),
            )
            .await?;
            tx.commit().await
        })
        .await
    }

    async fn get(store: &Store, key: &str) -> Option<Session> {
        let mut conn = store.read().await.ok()?;
        match account::session(&mut conn, key, &now()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                None
            }
        }
    }

    async fn remove(store: &Store, key: &str) {
        let r = store::retry(store::is_retryable, move || async move {
            let mut tx = store.begin().await?;
            account::remove_session(&mut tx, key).await?;
            tx.commit().await
        })
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "sign-out could not end the session");
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
            svc,
            cfg,
            mail,
            public_url,
            trusted_proxies: Arc::new(Vec::new()),
        }
    }

    /// Trusts the `X-Forwarded-For` header of requests from these peers (a load balancer).
    pub fn with_trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// The client a request comes from, for the rate limits: the socket's peer, unless that
    /// is a trusted proxy, whose `X-Forwarded-For` then names it (the nearest address that is
    /// not itself a trusted proxy; what a client wrote further left cannot be trusted).
    fn client_ip(
        &self,
        ci: Option<&ConnectInfo<SocketAddr>>,
        headers: &axum::http::HeaderMap,
    ) -> Option<IpAddr> {
        let peer = ci.map(|c| c.0.ip())?;
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|a| !self.trusted_proxies.contains(a))
                .unwrap_or(peer),
        )
    }

    fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// The pages' routes (state applied; merged into the main router).
pub fn router(state: WebState) -> Router {
    signin::prepare_dummy_hash();
    let origin_check = axum::middleware::from_fn_with_state(state.clone(), same_origin_only);
    Router::new()
        .route("/", get(|| async { see_other("/signin") }))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/account", get(signin::account))
        .route("/signout", post(signin::signout))
        .route(
            "/forgot",
            get(reset::forgot_form).post(reset::forgot_submit),
        )
        .route("/reset", get(reset::reset_form).post(reset::reset_submit))
        .merge(admin::routes())
        .layer(origin_check)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            remember_language,
        ))
        .with_state(state)
}

/// Refuses (403) a form submission a browser sent from another site: the `Origin` (or, without
/// it, the `Referer`) of a POST must be this service, as the request's `Host` or the public
/// URL names it. A request with neither header (not a browser) passes; the session cookie is
/// `SameSite=Strict` besides.
async fn same_origin_only(
    axum::extract::State(st): axum::extract::State<WebState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let h = req.headers();
    let claimed = h
        .get(header::ORIGIN)
        .or_else(|| h.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(claimed) = claimed else {
        return next.run(req).await;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    if same_origin(&claimed, host, &st.public_url) {
        return next.run(req).await;
    }
    tracing::warn!(target: "audit", event = "cross_site_form", origin = %claimed, path = %req.uri().path(),
        "form submission from another site refused");
    let (parts, _) = req.into_parts();
    let viewer = Viewer {
        lang: page_lang(&parts, st.cfg.default_language),
        uri: parts.uri.path().to_string(),
    };
    let cx = viewer.ctx(&st);
    html(
        StatusCode::FORBIDDEN,
        pages::notice(&cx, &cx.t("web-refused-title"), &cx.t("web-cross-site")),
    )
}

/// Whether `claimed` (an Origin or a Referer) is the service: its `scheme://host[:port]` is
/// the public URL's, or its authority is the request's `Host`.
fn same_origin(claimed: &str, host: Option<&str>, public_url: &str) -> bool {
    let authority = |url: &str| -> Option<(String, String)> {
        let (scheme, rest) = url.split_once("://")?;
        let auth = rest.split(['/', '?', '#']).next()?;
        Some((scheme.to_ascii_lowercase(), auth.to_ascii_lowercase()))
    };
    let Some((scheme, auth)) = authority(claimed) else {
        return false; // "null" and the like
    };
    if authority(public_url) == Some((scheme.clone(), auth.clone())) {
        return true;
    }
    (scheme == "http" || scheme == "https") && host.is_some_and(|h| h.eq_ignore_ascii_case(&auth))
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
    // same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with the
    // page's own form posts, and the same-origin check refuses them (found by the console's
    // browser tests). Other sites still get no Referer (the reset page's URL holds a secret).
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self'; form-action 'self'",
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

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn only_this_service_may_post_its_forms() {
        let public = "https://id.example.com";
        assert!(same_origin("https://id.example.com", None, public));
        assert!(same_origin("https://ID.example.com/signin?x", None, public));
        assert!(same_origin(
            "http://127.0.0.1:8080",
            Some("127.0.0.1:8080"),
            public
        ));
        assert!(!same_origin(
            "https://evil.example",
            Some("id.example.com"),
            public
        ));
        assert!(!same_origin("http://id.example.com", None, public));
        assert!(!same_origin("null", Some("id.example.com"), public));
        assert!(!same_origin(
            "https://id.example.com.evil.example",
            None,
            public
        ));
    }
}
