//! `GET/POST /signin`, `GET /account`, `POST /signout`.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::{
    SESSION_COOKIE, Session, Sessions, Viewer, WebState, account, cookie, html, pages, see_other,
};
use crate::domain::users::STATE_ACTIVE;
use crate::domain::{fmt_time, now, password};
use crate::i18n::Lang;
use crate::mail::{Kind, recipients};
use crate::store::users as su;

#[derive(Deserialize)]
pub struct SigninForm {
    username: Option<String>,
    password: Option<SecretString>,
}

pub async fn form(State(st): State<WebState>, viewer: Viewer) -> Response {
    html(StatusCode::OK, pages::signin(&viewer.ctx(&st), None, ""))
}

/// A hash to verify against when there is no real one (unknown user, no password yet), so
/// that every failure costs the same argon2 time and timing does not reveal which it was.
static DUMMY_HASH: OnceLock<Option<String>> = OnceLock::new();

pub(in crate::web) fn dummy_hash() -> &'static Option<String> {
    DUMMY_HASH.get_or_init(|| password::hash("no such user: timing equaliser"))
}

/// Computes the dummy hash now (at start), so that the first unknown userName does not pay
/// for it and stand out.
pub fn prepare_dummy_hash() {
    let _ = dummy_hash();
}

/// argon2 verification on the blocking pool; the clear text is wiped when done.
async fn verify_blocking(password: zeroize::Zeroizing<String>, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let dummy = dummy_hash();
        match hash.as_deref().or(dummy.as_deref()) {
            Some(h) => {
                let ok = password::verify(&password, h);
                ok && hash.is_some()
            }
            None => false,
        }
    })
    .await
    .unwrap_or(false)
}

/// The outcome of a sign-in attempt.
enum Outcome {
    Ok { user_id: String, user_name: String },
    Expired,
    Failed,
}

fn failed(cx: &pages::Ctx<'_>, status: StatusCode, username: &str) -> Response {
    html(
        status,
        pages::signin(cx, Some(&cx.t("web-signin-failed")), username),
    )
}

/// The 429 page of a request over the rate limit, titled `title_key`.
pub(super) fn too_many(cx: &pages::Ctx<'_>, title_key: &str) -> Response {
    let page = pages::notice(cx, &cx.t(title_key), &cx.t("web-too-many"));
    let mut r = html(StatusCode::TOO_MANY_REQUESTS, page);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

pub async fn submit(
    State(st): State<WebState>,
    viewer: Viewer,
    ci: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    let cx = viewer.ctx(&st);
    let username = f.username.unwrap_or_default().trim().to_string();
    let password = zeroize::Zeroizing::new(
        f.password
            .as_ref()
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default(),
    );
    if !st
        .limits
        .allow(
            &st.svc.store,
            Some(&username),
            st.client_ip(ci.as_ref().map(|e| &e.0), &headers),
        )
        .await
    {
        tracing::info!("sign-in refused: too many attempts");
        return too_many(&cx, "web-signin-title");
    }
    match attempt(&st, &username, password).await {
        Ok(Outcome::Ok { user_id, user_name }) => {
            let secret = account::new_secret();
            let hours = u64::from(st.cfg.signin.session_hours);
            let session = Session {
                user_id: user_id.clone(),
                user_name,
            };
            let valid_for = chrono::TimeDelta::hours(i64::from(st.cfg.signin.session_hours));
            let key = account::token_hash(&secret);
            if let Err(e) = Sessions::insert(&st.svc.store, &key, &session, valid_for).await {
                tracing::error!(error = %e, "sign-in could not store the session");
                return unavailable(&cx);
            }
            tracing::info!(user_id = %user_id, "signed in");
            let mut resp = see_other("/account");
            let cookie = zeroize::Zeroizing::new(format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                secret.as_str(),
                hours * 3600,
                if st.secure_cookies() { "; Secure" } else { "" }
            ));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(Outcome::Expired) => html(
            StatusCode::FORBIDDEN,
            pages::notice(
                &cx,
                &cx.t("web-password-expired-title"),
                &cx.t("web-password-expired"),
            ),
        ),
        Ok(Outcome::Failed) => failed(&cx, StatusCode::UNAUTHORIZED, &username),
        Err(e) => {
            tracing::error!(error = %e, "sign-in failed on a database error");
            unavailable(&cx)
        }
    }
}

fn unavailable(cx: &pages::Ctx<'_>) -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::notice(
            cx,
            &cx.t("web-signin-title"),
            &cx.t("web-signin-unavailable"),
        ),
    )
}

/// Checks the credentials and updates the failure count / lockout.
async fn attempt(
    st: &WebState,
    username: &str,
    password: zeroize::Zeroizing<String>,
) -> Result<Outcome, sqlx::Error> {
    let (user, hash, state) = load_credentials(st, username).await?;
    let at = now();
    let locked = state
        .locked_until
        .as_deref()
        .is_some_and(|l| l > at.as_str());
    let matches = verify_blocking(password, hash.clone()).await;
    let Some(user) = user else {
        count_refusal(st, username).await?;
        return Ok(Outcome::Failed);
    };
    if user.state != STATE_ACTIVE || hash.is_none() {
        tracing::info!(user_id = %user.id, state = %user.state, has_password = hash.is_some(), "sign-in refused");
        count_refusal(st, username).await?;
        return Ok(Outcome::Failed);
    }
    if locked {
        tracing::info!(user_id = %user.id, "sign-in refused: account locked");
        count_refusal(st, username).await?;
        return Ok(Outcome::Failed);
    }
    if !matches {
        record_failure(st, &user, &at).await?;
        return Ok(Outcome::Failed);
    }
    if state.failures > 0 || state.locked_until.is_some() {
        let mut tx = st.svc.store.begin().await?;
        account::clear_failures(&mut tx, &user.id).await?;
        tx.commit().await?;
    }
    if password_expired(&state) {
        tracing::info!(user_id = %user.id, "sign-in refused: password expired");
        return Ok(Outcome::Expired);
    }
    Ok(Outcome::Ok {
        user_id: user.id,
        user_name: user.user_name,
    })
}

/// The user signing in (if any), their password hash and their failure/lockout state.
async fn load_credentials(
    st: &WebState,
    username: &str,
) -> Result<(Option<su::UserRow>, Option<String>, account::AccountState), sqlx::Error> {
    let mut conn = st.svc.store.read().await?;
    match su::by_user_name(&mut conn, &username.to_lowercase()).await? {
        Some(u) => {
            let hash = account::password_hash(&mut conn, &u.id).await?;
            let state = account::get(&mut conn, &u.id).await?;
            Ok((Some(u), hash, state))
        }
        None => Ok((None, None, account::AccountState::default())),
    }
}

/// A refusal that records no account failure (unknown userName, no password, disabled,
/// locked) still makes one write, like [`record_failure`]: a failure that writes and one that
/// does not would answer at different times whenever the database writer is busy, telling
/// which accounts exist.
async fn count_refusal(st: &WebState, username: &str) -> Result<(), sqlx::Error> {
    super::charge(
        &st.svc.store,
        &format!("refused:{}", username.to_lowercase()),
    )
    .await?;
    Ok(())
}

/// Counts a wrong password; on reaching the limit locks the account and mails the user.
async fn record_failure(st: &WebState, user: &su::UserRow, at: &str) -> Result<(), sqlx::Error> {
    let cfg = &st.cfg.signin;
    let until =
        fmt_time(chrono::Utc::now() + chrono::Duration::minutes(i64::from(cfg.lockout_minutes)));
    let mut tx = st.svc.store.begin().await?;
    let locked_now = account::record_failure(&mut tx, &user.id, cfg.max_failures, &until).await?;
    if locked_now {
        let resource: Value = serde_json::from_str(&user.resource).unwrap_or(Value::Null);
        let failures = cfg.max_failures.to_string();
        let signin_url = format!("{}/signin", st.public_url);
        st.mail
            .queue(
                &mut tx,
                Kind::AccountLocked,
                &recipients(Kind::AccountLocked, &resource),
                Lang::of_user(&resource, st.cfg.default_language),
                &[
                    ("user_name", &user.user_name),
                    ("time", at),
                    ("until", &until),
                    ("failures", &failures),
                    ("signin_url", &signin_url),
                ],
            )
            .await?;
    }
    tx.commit().await?;
    if locked_now {
        st.mail.wake();
        tracing::warn!(user_id = %user.id, until = %until, "account locked after repeated failed sign-ins");
    } else {
        tracing::info!(user_id = %user.id, "sign-in failed: wrong password");
    }
    Ok(())
}

/// Whether the password is older than the policy's maximum age (0: no maximum).
fn password_expired(state: &account::AccountState) -> bool {
    let max_age = password::policy().max_age_days;
    if max_age > 0
        && let Some(set_at) = &state.password_set_at
    {
        let cutoff = fmt_time(chrono::Utc::now() - chrono::Duration::days(i64::from(max_age)));
        return set_at.as_str() <= cutoff.as_str();
    }
    false
}

pub async fn account(State(st): State<WebState>, viewer: Viewer, headers: HeaderMap) -> Response {
    let session = match cookie(&headers, SESSION_COOKIE) {
        Some(c) => Sessions::get(&st.svc.store, &account::token_hash(&c)).await,
        None => None,
    };
    match session {
        Some(s) => html(
            StatusCode::OK,
            pages::account(&viewer.ctx(&st), &s.user_name),
        ),
        None => see_other("/signin"),
    }
}

pub async fn signout(State(st): State<WebState>, headers: HeaderMap) -> Response {
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        Sessions::remove(&st.svc.store, &account::token_hash(&c)).await;
    }
    let mut resp = see_other("/signin");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "idservice_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}
