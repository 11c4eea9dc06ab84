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
    let body = html! {
        (message((p.done.as_deref() == Some("retried")).then_some("The message is due now; the sender tries it next.")))
        @if !st.mail.enabled() {
            p.warn role="alert" { "Email is off: the configuration has no smtp section, so nothing is queued." }
        }
        p { (count("queued")) " waiting, " (count("sent")) " sent, " (count("failed")) " given up." }
        h2 { "Waiting" }
        (rows_table(&signed, &queued, admin, true))
        h2 { "Given up" }
        p { "A message given up no longer has its body (it may have held a reset link) and cannot be sent again; a user who needs a reset link asks for a new one, or send one from the user's page." }
        (rows_table(&signed, &failed, false, false))
    };
    page(StatusCode::OK, layout(&st, &signed, "Email outbox", body))
}

fn rows_table(signed: &Signed, rows: &[Listed], retry: bool, waiting: bool) -> Markup {
    html! {
        @if rows.is_empty() { p { "None." } } @else {
            table {
                thead { tr {
                    th scope="col" { "Queued" } th scope="col" { "Kind" } th scope="col" { "To" }
                    th scope="col" { "Subject" } th scope="col" { "Attempts" }
                    th scope="col" { @if waiting { "Next try" } @else { "Given up" } }
                    th scope="col" { "Last error" }
                    @if retry { th scope="col" { "Action" } }
                } }
                tbody { @for r in rows { tr {
                    td { (r.created) } td { (r.kind) } td { (r.recipient) } td { (r.subject) }
                    td { (r.attempts) }
                    td { @if waiting { (r.next_attempt) } @else { (r.done.as_deref().unwrap_or("")) } }
                    td { (r.last_error.as_deref().unwrap_or("")) }
                    @if retry { td {
                        form method="post" action={ "/admin/outbox/" (r.id) "/retry" } {
                            (csrf(signed))
                            button type="submit" aria-label={ "Retry the message to " (r.recipient) " now" } { "Retry now" }
                        }
                    } }
                } } }
            }
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
                "Email outbox",
                "This message is no longer waiting (it was sent or given up meanwhile).",
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
