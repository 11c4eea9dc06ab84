//! `/admin/tokens`: the API tokens (never a secret: only their ids, scopes, owners and
//! dates), with the expiry warnings the owners get by email (30, 14, 7 and 1 days) shown on
//! the page; creating one (its value is shown once, on the answer to the form) and revoking
//! one behind a confirmation page. Admin role only for the two changes.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{self, csrf, layout, message};
use super::pages::{MARK, with_code};
use super::{Signed, page, see_other_to};
use crate::domain::admins::Role;
use crate::domain::now;
use crate::domain::tokens::{self, Scope, Scopes};
use crate::i18n::Lang;
use crate::mail::checks::warning_threshold;
use crate::store::admin::{self as sa, TokenRow};
use crate::store::console as sc;
use crate::web::WebState;

/// The validity choices of the form: (value, text key).
const VALIDITY: [(&str, &str); 5] = [
    ("30d", "tokens-validity-30d"),
    ("90d", "tokens-validity-90d"),
    ("180d", "tokens-validity-180d"),
    ("365d", "tokens-validity-365d"),
    ("never", "tokens-validity-never"),
];

/// "Expires within N days" for a token within 30 days of expiry (the owner's warnings),
/// "Expired" after, nothing otherwise.
fn expiry_note(lang: Lang, t: &TokenRow, now_t: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let expires = chrono::DateTime::parse_from_rfc3339(t.expires.as_deref()?).ok()?;
    let remaining = expires.to_utc() - now_t;
    if remaining <= chrono::Duration::zero() {
        return Some(lang.t("tokens-expired"));
    }
    let days = warning_threshold(remaining)?;
    Some(lang.ta("tokens-expires-within", &[("days", days.into())]))
}

/// The state cell of a token: revoked (when), the expiry warning, or valid.
fn state(lang: Lang, t: &TokenRow, now_t: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        @if let Some(r) = &t.revoked { (lang.t("tokens-revoked")) " " (pages::when(r)) }
        @else if let Some(note) = expiry_note(lang, t, now_t) { strong.warn-text { (note) } }
        @else { (lang.t("tokens-valid")) }
    }
}

async fn tokens_page(
    st: &WebState,
    signed: &Signed,
    status: StatusCode,
    notice: Option<Markup>,
) -> Response {
    let rows = match st.svc.store.read().await {
        Ok(mut conn) => sc::tokens(&mut conn).await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return pages::db_error(st, signed, &e),
    };
    let lang = signed.viewer.lang;
    let body = html! {
        @if let Some(n) = notice { (n) }
        (tokens_table(signed, &rows))
        @if signed.role == Role::Admin { (create_form(signed)) }
    };
    page(
        status,
        layout(st, signed, &lang.t("console-nav-tokens"), body),
    )
}

/// The tokens, with a revoke link each for the admin role.
fn tokens_table(signed: &Signed, rows: &[TokenRow]) -> Markup {
    let lang = signed.viewer.lang;
    let t = |key: &str| lang.t(key);
    let admin = signed.role == Role::Admin;
    let now_t = chrono::Utc::now();
    html! {
        table {
            thead { tr {
                th scope="col" { (t("tokens-id")) } th scope="col" { (t("tokens-scopes")) }
                th scope="col" { (t("tokens-owner")) } th scope="col" { (t("tokens-created")) }
                th scope="col" { (t("tokens-expires")) } th scope="col" { (t("tokens-state")) }
                @if admin { th scope="col" { (t("tokens-action")) } }
            } }
            tbody { @for row in rows { tr {
                td { code { (row.id) } }
                td { (row.scopes.replace(',', ", ")) }
                td { (row.owner.as_deref().unwrap_or("")) }
                td { (pages::when(&row.created)) }
                td {
                    @if let Some(e) = &row.expires { (pages::when(e)) }
                    @else { (t("tokens-never")) }
                }
                td { (state(lang, row, now_t)) }
                @if admin {
                    td { @if row.revoked.is_none() {
                        a href={ "/admin/tokens/" (row.id) "/revoke" } { (t("tokens-revoke")) }
                    } }
                }
            } } }
        }
    }
}

fn create_form(signed: &Signed) -> Markup {
    let t = |key: &str| signed.viewer.lang.t(key);
    html! {
        h2 { (t("tokens-create-heading")) }
        form method="post" action="/admin/tokens" {
            (csrf(signed))
            fieldset {
                legend { (t("tokens-scopes")) }
                @for s in Scope::ALL {
                    div {
                        input type="checkbox" name="scope" value=(s.as_str()) id={ "scope-" (s.as_str()) };
                        label.inline for={ "scope-" (s.as_str()) } { (s.as_str()) }
                    }
                }
            }
            label for="expires" { (t("tokens-valid-for")) }
            select #expires name="expires" {
                @for (v, key) in VALIDITY { option value=(v) selected[v == "90d"] { (t(key)) } }
            }
            label for="owner" { (t("tokens-owner-email")) }
            input #owner name="owner" type="email";
            div { button type="submit" { (t("tokens-create-button")) } }
        }
    }
}

#[derive(Deserialize)]
pub struct ListParams {
    done: Option<String>,
}

/// `GET /admin/tokens`.
pub async fn list(
    State(st): State<WebState>,
    signed: Signed,
    axum::extract::Query(p): axum::extract::Query<ListParams>,
) -> Response {
    let done = (p.done.as_deref() == Some("revoked"))
        .then(|| signed.viewer.lang.t("tokens-revoked-notice"));
    let note = done.map(|d| message(Some(&d)));
    tokens_page(&st, &signed, StatusCode::OK, note).await
}

/// The create form: `scope` repeats (one per checked box), so the body is read as pairs.
#[derive(Default)]
struct CreateForm {
    csrf_token: Option<String>,
    scope: Vec<String>,
    expires: Option<String>,
    owner: Option<String>,
}

impl CreateForm {
    fn parse(body: &str) -> Option<CreateForm> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(body).ok()?;
        let mut f = CreateForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "csrf_token" => f.csrf_token = Some(v),
                "scope" => f.scope.push(v),
                "expires" => f.expires = Some(v),
                "owner" => f.owner = Some(v),
                _ => {}
            }
        }
        Some(f)
    }
}

/// `POST /admin/tokens`: creates the token and shows its value, once.
pub async fn create(State(st): State<WebState>, signed: Signed, body: String) -> Response {
    let f = match CreateForm::parse(&body) {
        Some(f) => f,
        None => {
            return pages::error_page(
                &st,
                &signed.viewer,
                Some(&signed),
                StatusCode::BAD_REQUEST,
                &signed.viewer.lang.t("console-nav-tokens"),
                &signed.viewer.lang.t("tokens-form-unreadable"),
            );
        }
    };
    if let Err(r) = signed.check_csrf(&st, f.csrf_token.as_deref()) {
        return *r;
    }
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    let lang = signed.viewer.lang;
    let refuse = |msg: &str| {
        let note = html! { p.warn role="alert" { (msg) } };
        tokens_page(&st, &signed, StatusCode::BAD_REQUEST, Some(note))
    };
    let mut scopes = Scopes::default();
    for s in &f.scope {
        match Scope::parse(s) {
            Some(s) => scopes = scopes.with(s),
            None => return refuse(&lang.t("tokens-unknown-scope")).await,
        }
    }
    if scopes == Scopes::default() {
        return refuse(&lang.t("tokens-no-scope")).await;
    }
    let valid_for = match tokens::parse_duration(f.expires.as_deref().unwrap_or("90d")) {
        Ok(v) => v,
        Err(e) => return refuse(&e.to_string()).await,
    };
    let owner = f
        .owner
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty());
    let created = match tokens::create(&st.svc.store, scopes, valid_for, owner).await {
        Ok(t) => t,
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let detail = format!("scopes {}", scopes.to_list());
    if let Err(e) = signed
        .audit(&st, "token-create", Some(&created.id), Some(&detail))
        .await
    {
        return pages::db_error(&st, &signed, &e);
    }
    let note = created_note(lang, &created.id, &created.secret);
    let mut resp = tokens_page(&st, &signed, StatusCode::OK, Some(note)).await;
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `GET /admin/tokens/{id}/revoke`: the confirmation step.
pub async fn confirm_revoke(
    State(st): State<WebState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    let lang = signed.viewer.lang;
    pages::confirm_page(
        &st,
        &signed,
        &lang.ta("tokens-revoke-title", &[("id", (&id).into())]),
        html! { p { (lang.t("tokens-revoke-consequence")) } },
        &format!("/admin/tokens/{id}/revoke"),
        &lang.t("tokens-revoke"),
        "/admin/tokens",
    )
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf_token: Option<String>,
}

/// `POST /admin/tokens/{id}/revoke`.
pub async fn revoke(
    State(st): State<WebState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(f): Form<RevokeForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&st, f.csrf_token.as_deref()) {
        return *r;
    }
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    let at = now();
    let revoked = crate::store::retry(crate::store::is_retryable, || async {
        let mut tx = st.svc.store.begin().await?;
        let done = sa::revoke_token(&mut tx, &id, &at).await?;
        tx.commit().await?;
        Ok(done)
    })
    .await;
    match revoked {
        Ok(true) => {}
        Ok(false) => {
            return pages::error_page(
                &st,
                &signed.viewer,
                Some(&signed),
                StatusCode::NOT_FOUND,
                &signed.viewer.lang.t("tokens-not-found-title"),
                &signed.viewer.lang.t("tokens-not-found"),
            );
        }
        Err(e) => return pages::db_error(&st, &signed, &e),
    }
    if let Err(e) = signed.audit(&st, "token-revoke", Some(&id), None).await {
        return pages::db_error(&st, &signed, &e);
    }
    see_other_to("/admin/tokens?done=revoked".to_string())
}

/// The answer to a created token: its id, and its value, shown this once.
fn created_note(lang: Lang, id: &str, secret: &str) -> Markup {
    let text = lang.ta("tokens-created-notice", &[("id", MARK.into())]);
    html! {
        div.msg role="alert" {
            p { (with_code(&text, id)) }
            label for="token-value" { (lang.t("tokens-value")) }
            input #token-value readonly value=(secret) size="60";
        }
    }
}
