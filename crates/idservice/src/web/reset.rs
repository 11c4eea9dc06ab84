//! `GET/POST /forgot` and `GET/POST /reset`: a single-use, time-limited link sent to every
//! address of the user; the same path gives a first password to a user created by sync.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::signin::too_many;
use super::{Viewer, WebState, account, html, pages};
use crate::domain::users::STATE_ACTIVE;
use crate::domain::{fmt_time, now, password};
use crate::i18n::Lang;
use crate::mail::{Kind, recipients};
use crate::store::users as su;

#[derive(Deserialize)]
pub struct ForgotForm {
    username: Option<String>,
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<SecretString>,
}

#[derive(Deserialize)]
pub struct ResetForm {
    token: Option<SecretString>,
    password: Option<SecretString>,
    confirm: Option<SecretString>,
}

fn secret_text(s: &Option<SecretString>) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(
        s.as_ref()
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default(),
    )
}

fn server_error(cx: &pages::Ctx<'_>, e: &sqlx::Error) -> Response {
    tracing::error!(error = %e, "password reset failed on a database error");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::notice(
            cx,
            &cx.t("web-reset-request-title"),
            &cx.t("web-unavailable"),
        ),
    )
}

/// What is wrong with a new password, in the viewer's language.
fn policy_message(lang: Lang, e: &password::PolicyError) -> String {
    match e {
        password::PolicyError::Empty => lang.t("web-policy-empty"),
        password::PolicyError::TooShort { min_length } => {
            lang.ta("web-policy-too-short", &[("min", (*min_length).into())])
        }
        password::PolicyError::TooLong => lang.ta(
            "web-policy-too-long",
            &[("max", password::MAX_BYTES.into())],
        ),
    }
}

pub async fn forgot_form(State(st): State<WebState>, viewer: Viewer) -> Response {
    html(StatusCode::OK, pages::forgot(&viewer.ctx(&st), None))
}

pub async fn forgot_submit(
    State(st): State<WebState>,
    viewer: Viewer,
    ci: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<ForgotForm>,
) -> Response {
    let cx = viewer.ctx(&st);
    let username = f.username.unwrap_or_default().trim().to_string();
    if !st
        .limits
        .allow(
            &st.svc.store,
            Some(&username),
            st.client_ip(ci.as_ref().map(|e| &e.0), &headers),
        )
        .await
    {
        tracing::info!("reset request refused: too many attempts");
        return too_many(&cx, "web-forgot-title");
    }
    // Done after the answer: only an existing account creates a link and an email, so
    // waiting for that work would tell which accounts exist.
    let st2 = st.clone();
    tokio::spawn(async move {
        // A lost race with another writer on PostgreSQL is simply run again.
        let attempt = || request_reset(&st2, &username);
        if let Err(e) = crate::store::retry(crate::store::is_retryable, attempt).await {
            tracing::error!(error = %e, "a password reset request could not be processed");
        }
    });
    // The same answer whatever happened, so the page does not reveal which accounts exist.
    html(
        StatusCode::OK,
        pages::forgot(&cx, Some(&cx.t("web-forgot-sent"))),
    )
}

/// What a reset request did (the console shows it; the public page never does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResetSent {
    Queued,
    NoSuchUser,
    /// Disabled or pending deletion.
    CannotSignIn,
    NoAddress,
    /// No `smtp` in the configuration.
    EmailOff,
}

/// Creates a link and queues "Password reset requested" when the user exists and may sign in.
pub(super) async fn request_reset(st: &WebState, username: &str) -> Result<ResetSent, sqlx::Error> {
    if username.is_empty() {
        return Ok(ResetSent::NoSuchUser);
    }
    let mut tx = st.svc.store.begin().await?;
    let Some(user) = su::by_user_name(&mut tx, &username.to_lowercase()).await? else {
        return Ok(ResetSent::NoSuchUser);
    };
    if user.state != STATE_ACTIVE {
        tracing::info!(user_id = %user.id, state = %user.state, "reset not sent: user cannot sign in");
        return Ok(ResetSent::CannotSignIn);
    }
    if !st.mail.enabled() {
        tracing::info!(user_id = %user.id, "reset not sent: email is off");
        return Ok(ResetSent::EmailOff);
    }
    let resource: Value = serde_json::from_str(&user.resource).unwrap_or(Value::Null);
    let to = recipients(Kind::ResetRequested, &resource);
    if to.is_empty() {
        tracing::info!(user_id = %user.id, "reset not sent: the user has no email address");
        return Ok(ResetSent::NoAddress);
    }
    let secret = account::new_secret();
    let ttl = st.cfg.reset_link_ttl_minutes;
    let created = now();
    let expires = fmt_time(chrono::Utc::now() + chrono::Duration::minutes(i64::from(ttl)));
    // One usable link per user: this newer one revokes the older ones (see
    // `account::valid_reset`).
    account::insert_reset(
        &mut tx,
        &account::token_hash(&secret),
        &user.id,
        &created,
        &expires,
    )
    .await?;
    let link =
        zeroize::Zeroizing::new(format!("{}/reset?token={}", st.public_url, secret.as_str()));
    let minutes = ttl.to_string();
    st.mail
        .queue(
            &mut tx,
            Kind::ResetRequested,
            &to,
            Lang::of_user(&resource, st.cfg.default_language),
            &[
                ("user_name", &user.user_name),
                ("link", &link),
                ("minutes", &minutes),
            ],
        )
        .await?;
    tx.commit().await?;
    st.mail.wake();
    tracing::info!(user_id = %user.id, "password reset requested");
    Ok(ResetSent::Queued)
}

/// The user of a reset link, if the link is usable and the user may still sign in.
async fn link_user(st: &WebState, secret: &str) -> Result<Option<String>, sqlx::Error> {
    if secret.is_empty() {
        return Ok(None);
    }
    let mut conn = st.svc.store.read().await?;
    let Some(user_id) =
        account::valid_reset(&mut conn, &account::token_hash(secret), &now()).await?
    else {
        return Ok(None);
    };
    Ok(su::get(&mut conn, &user_id)
        .await?
        .filter(|u| u.state == STATE_ACTIVE)
        .map(|u| u.id))
}

fn invalid_link(cx: &pages::Ctx<'_>) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        pages::notice(cx, &cx.t("web-reset-title"), &cx.t("web-link-invalid")),
    )
}

/// Shows the form; opening the link does not use it up (mail scanners open links too).
pub async fn reset_form(
    State(st): State<WebState>,
    viewer: Viewer,
    Query(q): Query<TokenQuery>,
) -> Response {
    let cx = viewer.ctx(&st);
    let secret = secret_text(&q.token);
    match link_user(&st, &secret).await {
        Ok(Some(_)) => html(
            StatusCode::OK,
            pages::reset(&cx, None, &secret, password::policy().min_length),
        ),
        Ok(None) => invalid_link(&cx),
        Err(e) => server_error(&cx, &e),
    }
}

pub async fn reset_submit(
    State(st): State<WebState>,
    viewer: Viewer,
    ci: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<ResetForm>,
) -> Response {
    let cx = viewer.ctx(&st);
    let secret = secret_text(&f.token);
    let new_pw = secret_text(&f.password);
    let confirm = secret_text(&f.confirm);
    if !st
        .limits
        .allow(
            &st.svc.store,
            None,
            st.client_ip(ci.as_ref().map(|e| &e.0), &headers),
        )
        .await
    {
        return too_many(&cx, "web-reset-title");
    }
    match link_user(&st, &secret).await {
        Ok(Some(_)) => {}
        Ok(None) => return invalid_link(&cx),
        Err(e) => return server_error(&cx, &e),
    }
    let min = password::policy().min_length;
    let problem = if *new_pw != *confirm {
        Some(cx.t("web-passwords-differ"))
    } else {
        password::check_policy(&new_pw)
            .err()
            .map(|e| policy_message(cx.lang, &e))
    };
    if let Some(msg) = problem {
        return html(
            StatusCode::BAD_REQUEST,
            pages::reset(&cx, Some(&msg), &secret, min),
        );
    }
    let hash = match password::hash_blocking(zeroize::Zeroizing::new(new_pw.to_string())).await {
        Ok(h) => h,
        Err(_) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::notice(
                    &cx,
                    &cx.t("web-reset-title"),
                    &cx.t("web-password-not-stored"),
                ),
            );
        }
    };
    drop(new_pw);
    match set_password(&st, &secret, &hash).await {
        Ok(Some(_)) => html(
            StatusCode::OK,
            pages::notice(
                &cx,
                &cx.t("web-password-set-title"),
                &cx.t("web-password-set"),
            ),
        ),
        Ok(None) => invalid_link(&cx),
        Err(e) => server_error(&cx, &e),
    }
}

/// Uses up the link and stores the new password in one transaction; queues "Password has
/// been reset" to every address. `None` when the link was no longer usable.
async fn set_password(
    st: &WebState,
    secret: &str,
    hash: &str,
) -> Result<Option<String>, sqlx::Error> {
    let at = now();
    let mut tx = st.svc.store.begin().await?;
    let Some(user_id) = account::consume_reset(&mut tx, &account::token_hash(secret), &at).await?
    else {
        return Ok(None);
    };
    let Some(user) = su::get(&mut tx, &user_id)
        .await?
        .filter(|u| u.state == STATE_ACTIVE)
    else {
        // Disabled or deleted since the link was sent: the link is spent, nothing is set.
        tx.commit().await?;
        return Ok(None);
    };
    su::set_password_hash(&mut tx, &user.id, hash).await?;
    account::password_set(&mut tx, &user.id, &at).await?;
    account::clear_failures(&mut tx, &user.id).await?;
    // Every session of the user ends with the reset, on every node.
    account::remove_user_sessions(&mut tx, &user.id).await?;
    let resource: Value = serde_json::from_str(&user.resource).unwrap_or(Value::Null);
    st.mail
        .queue(
            &mut tx,
            Kind::PasswordReset,
            &recipients(Kind::PasswordReset, &resource),
            Lang::of_user(&resource, st.cfg.default_language),
            &[("user_name", &user.user_name), ("time", &at)],
        )
        .await?;
    tx.commit().await?;
    st.mail.wake();
    tracing::info!(user_id = %user.id, "password set through a reset link");
    Ok(Some(user.id))
}
