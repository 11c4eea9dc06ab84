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
use super::{Signed, page, see_other_to};
use crate::domain::admins::Role;
use crate::domain::now;
use crate::domain::tokens::{self, Scope, Scopes};
use crate::mail::checks::warning_threshold;
use crate::store::admin::{self as sa, TokenRow};
use crate::store::console as sc;
use crate::web::WebState;

/// The validity choices of the form.
const VALIDITY: [(&str, &str); 5] = [
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("180d", "180 days"),
    ("365d", "1 year"),
    ("never", "Never expires"),
];

/// "Expires in N days" for a token within 30 days of expiry (the owner's warnings), "Expired"
/// after, nothing otherwise.
fn expiry_note(t: &TokenRow, now_t: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let expires = chrono::DateTime::parse_from_rfc3339(t.expires.as_deref()?).ok()?;
    let remaining = expires.to_utc() - now_t;
    if remaining <= chrono::Duration::zero() {
        return Some("Expired".into());
    }
    let days = warning_threshold(remaining)?;
    Some(format!(
        "Expires within {days} day{}",
        if days == 1 { "" } else { "s" }
    ))
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
    let now_t = chrono::Utc::now();
    let body = html! {
        @if let Some(n) = notice { (n) }
        table {
            thead { tr {
                th scope="col" { "id" } th scope="col" { "Scopes" } th scope="col" { "Owner" }
                th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "State" }
                @if signed.role == Role::Admin { th scope="col" { "Action" } }
            } }
            tbody { @for t in &rows { tr {
                td { code { (t.id) } }
                td { (t.scopes.replace(',', ", ")) }
                td { (t.owner.as_deref().unwrap_or("")) }
                td { (t.created) }
                td { (t.expires.as_deref().unwrap_or("never")) }
                td {
                    @if let Some(r) = &t.revoked { "Revoked " (r) }
                    @else if let Some(note) = expiry_note(t, now_t) { strong.warn-text { (note) } }
                    @else { "Valid" }
                }
                @if signed.role == Role::Admin {
                    td { @if t.revoked.is_none() {
                        a href={ "/admin/tokens/" (t.id) "/revoke" } { "Revoke" }
                    } }
                }
            } } }
        }
        @if signed.role == Role::Admin { (create_form(signed)) }
    };
    page(status, layout(st, signed, "API tokens", body))
}

fn create_form(signed: &Signed) -> Markup {
    html! {
        h2 { "Create a token" }
        form method="post" action="/admin/tokens" {
            (csrf(signed))
            fieldset {
                legend { "Scopes" }
                @for s in Scope::ALL {
                    div {
                        input type="checkbox" name="scope" value=(s.as_str()) id={ "scope-" (s.as_str()) };
                        label.inline for={ "scope-" (s.as_str()) } { (s.as_str()) }
                    }
                }
            }
            label for="expires" { "Valid for" }
            select #expires name="expires" {
                @for (v, text) in VALIDITY { option value=(v) selected[v == "90d"] { (text) } }
            }
            label for="owner" { "Owner's email (warned before expiry)" }
            input #owner name="owner" type="email";
            div { button type="submit" { "Create token" } }
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
    let note =
        (p.done.as_deref() == Some("revoked")).then(|| message(Some("The token was revoked.")));
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
                "API tokens",
                "The form could not be read.",
            );
        }
    };
    if let Err(r) = signed.check_csrf(&st, f.csrf_token.as_deref()) {
        return *r;
    }
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    let refuse = |msg: &str| {
        let note = html! { p.warn role="alert" { (msg) } };
        tokens_page(&st, &signed, StatusCode::BAD_REQUEST, Some(note))
    };
    let mut scopes = Scopes::default();
    for s in &f.scope {
        match Scope::parse(s) {
            Some(s) => scopes = scopes.with(s),
            None => return refuse("Unknown scope.").await,
        }
    }
    if scopes == Scopes::default() {
        return refuse("Choose at least one scope.").await;
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
    let note = html! {
        div.msg role="alert" {
            p { "Token " code { (created.id) } " created. Copy its value now: it is shown only once." }
            label for="token-value" { "Token value" }
            input #token-value readonly value=(created.secret) size="60";
        }
    };
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
    pages::confirm_page(
        &st,
        &signed,
        &format!("Revoke token {id}?"),
        html! { p { "Clients using this token are refused from now on. This cannot be undone." } },
        &format!("/admin/tokens/{id}/revoke"),
        "Revoke",
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
                "No such token",
                "There is no unrevoked token with this id.",
            );
        }
        Err(e) => return pages::db_error(&st, &signed, &e),
    }
    if let Err(e) = signed.audit(&st, "token-revoke", Some(&id), None).await {
        return pages::db_error(&st, &signed, &e);
    }
    see_other_to("/admin/tokens?done=revoked".to_string())
}
