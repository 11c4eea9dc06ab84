//! `GET/POST /admin/signin`, `POST /admin/signout`: the console's own sign-in, with the
//! users' limits (per-account and per-address rate limits, lockout after
//! `signin.max_failures` for `signin.lockout_minutes`) and one answer for every failure.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{ADMIN_COOKIE, SIGNIN_CSRF_COOKIE, Signed, pages};
use crate::domain::admins;
use crate::domain::{fmt_time, now};
use crate::store::console as sc;
use crate::web::{Viewer, WebState, account, cookie, see_other};

#[derive(Deserialize)]
pub struct SigninForm {
    username: Option<String>,
    password: Option<SecretString>,
    csrf_token: Option<String>,
}

#[derive(Deserialize)]
pub struct SignoutForm {
    csrf_token: Option<String>,
}

/// The sign-in form, with a fresh form token in the form and in its cookie.
pub async fn form(State(st): State<WebState>, viewer: Viewer) -> Response {
    signin_page(&st, &viewer, StatusCode::OK, None, "")
}

/// The sign-in form with the message `msg_key` (a text key), if any.
fn signin_page(
    st: &WebState,
    v: &Viewer,
    status: StatusCode,
    msg_key: Option<&str>,
    username: &str,
) -> Response {
    let token = account::new_secret();
    let msg = msg_key.map(|k| v.lang.t(k));
    let page = pages::signin(st, v, msg.as_deref(), username, token.as_str());
    let mut resp = super::page(status, page);
    let c = format!(
        "{SIGNIN_CSRF_COOKIE}={}; Path=/admin/signin; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        token.as_str(),
        if st.secure_cookies() { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn submit(
    State(st): State<WebState>,
    viewer: Viewer,
    ci: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    let username = f.username.unwrap_or_default().trim().to_string();
    let expected = cookie(&headers, SIGNIN_CSRF_COOKIE).unwrap_or_default();
    let given = f.csrf_token.unwrap_or_default();
    if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        tracing::warn!(target: "audit", event = "admin_csrf_refused", "console sign-in refused: missing or wrong csrf_token");
        return signin_page(
            &st,
            &viewer,
            StatusCode::FORBIDDEN,
            Some("console-form-expired"),
            &username,
        );
    }
    let address = st.client_ip(ci.as_ref().map(|e| &e.0), &headers);
    let account_key = format!("admin:{username}");
    if !st
        .limits
        .allow(&st.svc.store, Some(&account_key), address)
        .await
    {
        tracing::info!("console sign-in refused: too many attempts");
        let mut r = signin_page(
            &st,
            &viewer,
            StatusCode::TOO_MANY_REQUESTS,
            Some("web-too-many"),
            &username,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let password = Zeroizing::new(
        f.password
            .as_ref()
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default(),
    );
    match attempt(&st, &username, password).await {
        Ok(Some(admin)) => start_session(&st, viewer, &admin, address).await,
        Ok(None) => signin_page(
            &st,
            &viewer,
            StatusCode::UNAUTHORIZED,
            Some("web-signin-failed"),
            &username,
        ),
        Err(e) => {
            tracing::error!(error = %e, "console sign-in failed on a database error");
            signin_page(
                &st,
                &viewer,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("web-signin-unavailable"),
                &username,
            )
        }
    }
}

/// Checks the password and the lockout; counts a failure (locking at the limit).
async fn attempt(
    st: &WebState,
    username: &str,
    password: Zeroizing<String>,
) -> Result<Option<sc::AdminRow>, admins::AdminError> {
    let dummy = crate::web::signin::dummy_hash().clone();
    let found = admins::verify(&st.svc, username, password, dummy).await?;
    let name_lc = username.to_lowercase();
    let at = now();
    let row = {
        let mut conn = st.svc.store.read().await?;
        sc::admin(&mut conn, &name_lc).await?
    };
    let locked = row
        .as_ref()
        .and_then(|r| r.locked_until.as_deref())
        .is_some_and(|l| l > at.as_str());
    let cfg = &st.cfg.signin;
    let mut tx = st.svc.store.begin().await?;
    let outcome = match found {
        Some(admin) if !locked => {
            sc::admin_success(&mut tx, &name_lc).await?;
            Some(admin)
        }
        _ => {
            let until = fmt_time(
                chrono::Utc::now() + chrono::Duration::minutes(i64::from(cfg.lockout_minutes)),
            );
            if !locked
                && row.is_some()
                && sc::admin_failure(&mut tx, &name_lc, cfg.max_failures, &until).await?
            {
                tracing::warn!(target: "audit", event = "admin_locked", admin = %username, until = %until,
                    "console account locked after repeated failed sign-ins");
            }
            tracing::info!(target: "audit", event = "admin_signin_failed", "console sign-in failed");
            None
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Stores a new session and answers with its cookie, to the users page.
async fn start_session(
    st: &WebState,
    viewer: Viewer,
    admin: &sc::AdminRow,
    address: Option<std::net::IpAddr>,
) -> Response {
    let secret = account::new_secret();
    let csrf = account::new_secret();
    let key = account::token_hash(&secret);
    let idle = chrono::TimeDelta::minutes(i64::from(st.cfg.console.idle_minutes.max(1)));
    let stored = crate::store::retry(crate::store::is_retryable, || async {
        let at = chrono::Utc::now();
        let mut tx = st.svc.store.begin().await?;
        sc::insert_session(
            &mut tx,
            &key,
            &admin.name_lc,
            csrf.as_str(),
            &fmt_time(at),
            &fmt_time(at + idle),
        )
        .await?;
        tx.commit().await
    })
    .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "console sign-in could not store the session");
        return signin_page(
            st,
            &viewer,
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("web-signin-unavailable"),
            &admin.name,
        );
    }
    let signed = Signed {
        name: admin.name.clone(),
        role: admins::Role::from_stored(&admin.role),
        csrf: csrf.as_str().to_string(),
        address,
        viewer,
    };
    if let Err(e) = signed.audit(st, "signin", None, None).await {
        tracing::error!(error = %e, "the console's audit log could not record a sign-in");
    }
    let mut resp = see_other("/admin/users");
    let c = Zeroizing::new(format!(
        "{ADMIN_COOKIE}={}; Path=/admin; HttpOnly; SameSite=Strict{}",
        secret.as_str(),
        if st.secure_cookies() { "; Secure" } else { "" }
    ));
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("idservice_admin_csrf=; Path=/admin/signin; Max-Age=0"),
    );
    resp
}

pub async fn signout(
    State(st): State<WebState>,
    signed: Signed,
    headers: HeaderMap,
    Form(f): Form<SignoutForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&st, f.csrf_token.as_deref()) {
        return *r;
    }
    if let Some(secret) = cookie(&headers, ADMIN_COOKIE) {
        let key = account::token_hash(&secret);
        let r = crate::store::retry(crate::store::is_retryable, || async {
            let mut tx = st.svc.store.begin().await?;
            sc::remove_session(&mut tx, &key).await?;
            tx.commit().await
        })
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "console sign-out could not end the session");
        }
    }
    if let Err(e) = signed.audit(&st, "signout", None, None).await {
        tracing::error!(error = %e, "the console's audit log could not record a sign-out");
    }
    let mut resp = see_other("/admin/signin");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "idservice_admin=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}
