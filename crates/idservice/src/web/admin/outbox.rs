//! `/admin/outbox`: the email outbox — messages waiting (with their attempts, next try and last
//! error) and messages given up — and "retry now" for a waiting one (admin role). A message
//! given up has no body any more (it may have held a reset link), so it cannot be sent again:
//! the page says what to do instead.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{self, csrf, layout, message};
use super::{Signed, page, see_other_to};
use crate::domain::admins::Role;
use crate::domain::now;
use crate::store::outbox::{self as so, Listed};
use crate::web::WebState;

/// Rows shown per section.
const SHOWN: i64 = 200;

#[derive(Deserialize)]
pub struct ListParams {
    done: Option<String>,
}

/// `GET /admin/outbox`.
pub async fn list(
    State(st): State<WebState>,
    signed: Signed,
    Query(p): Query<ListParams>,
) -> Response {
    let loaded = async {
        let mut conn = st.svc.store.read().await?;
        let counts = so::counts(&mut conn).await?;
        let queued = so::listed(&mut conn, "queued", SHOWN).await?;
        let failed = so::listed(&mut conn, "failed", SHOWN).await?;
        Ok::<_, sqlx::Error>((counts, queued, failed))
    }
    .await;
    let (counts, queued, failed) = match loaded {
        Ok(x) => x,
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let admin = signed.role == Role::Admin;
    let lang = signed.viewer.lang;
    let t = |key: &str| lang.t(key);
    let done = (p.done.as_deref() == Some("retried")).then(|| t("outbox-retried-notice"));
    let totals = lang.ta(
        "outbox-counts",
        &[
            ("queued", count("queued").into()),
            ("sent", count("sent").into()),
            ("failed", count("failed").into()),
        ],
    );
    let body = html! {
        (message(done.as_deref()))
        @if !st.mail.enabled() {
            p.warn role="alert" { (t("outbox-mail-off")) }
        }
        p { (totals) }
        h2 { (t("outbox-waiting")) }
        (rows_table(&signed, &queued, admin, true))
        h2 { (t("outbox-given-up")) }
        p { (t("outbox-given-up-explain")) }
        (rows_table(&signed, &failed, false, false))
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &t("console-nav-outbox"), body),
    )
}

fn rows_table(signed: &Signed, rows: &[Listed], retry: bool, waiting: bool) -> Markup {
    let lang = signed.viewer.lang;
    let t = |key: &str| lang.t(key);
    html! {
        @if rows.is_empty() { p { (t("outbox-none")) } } @else {
            table {
                thead { tr {
                    th scope="col" { (t("outbox-queued")) } th scope="col" { (t("outbox-kind")) }
                    th scope="col" { (t("outbox-to")) } th scope="col" { (t("outbox-subject")) }
                    th scope="col" { (t("outbox-attempts")) }
                    th scope="col" {
                        @if waiting { (t("outbox-next-try")) } @else { (t("outbox-given-up-at")) }
                    }
                    th scope="col" { (t("outbox-last-error")) }
                    @if retry { th scope="col" { (t("outbox-action")) } }
                } }
                tbody { @for r in rows { tr {
                    td { (pages::when(&r.created)) } td { (r.kind) } td { (r.recipient) }
                    td { (r.subject) } td { (r.attempts) }
                    td {
                        @if waiting { (pages::when(&r.next_attempt)) }
                        @else { (pages::when(r.done.as_deref().unwrap_or(""))) }
                    }
                    td { (r.last_error.as_deref().unwrap_or("")) }
                    @if retry { td { (retry_form(signed, r)) } }
                } } }
            }
        }
    }
}

/// The "retry now" button of a waiting message.
fn retry_form(signed: &Signed, r: &Listed) -> Markup {
    let lang = signed.viewer.lang;
    let label = lang.ta(
        "outbox-retry-label",
        &[("recipient", (&r.recipient).into())],
    );
    html! {
        form method="post" action={ "/admin/outbox/" (r.id) "/retry" } {
            (csrf(signed))
            button type="submit" aria-label=(label) { (lang.t("outbox-retry")) }
        }
    }
}

#[derive(Deserialize)]
pub struct RetryForm {
    csrf_token: Option<String>,
}

/// `POST /admin/outbox/{id}/retry`.
pub async fn retry(
    State(st): State<WebState>,
    signed: Signed,
    Path(id): Path<i64>,
    Form(f): Form<RetryForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&st, f.csrf_token.as_deref()) {
        return *r;
    }
    if let Err(r) = signed.require(&st, Role::Admin) {
        return *r;
    }
    let at = now();
    let done = crate::store::retry(crate::store::is_retryable, || async {
        let mut tx = st.svc.store.begin().await?;
        let done = so::due_now(&mut tx, id, &at).await?;
        tx.commit().await?;
        Ok(done)
    })
    .await;
    match done {
        Ok(true) => {}
        Ok(false) => {
            return pages::error_page(
                &st,
                &signed.viewer,
                Some(&signed),
                StatusCode::CONFLICT,
                &signed.viewer.lang.t("console-nav-outbox"),
                &signed.viewer.lang.t("outbox-not-waiting"),
            );
        }
        Err(e) => return pages::db_error(&st, &signed, &e),
    }
    st.mail.wake();
    if let Err(e) = signed
        .audit(&st, "mail-retry", Some(&id.to_string()), None)
        .await
    {
        return pages::db_error(&st, &signed, &e);
    }
    see_other_to("/admin/outbox?done=retried".to_string())
}
