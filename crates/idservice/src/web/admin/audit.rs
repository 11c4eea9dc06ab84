//! `GET /admin/audit`: every administrator action (who, what, on whom, from where, when),
//! newest first, 100 to a page.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::pages::{self, layout};
use super::{Signed, page};
use crate::store::console as sc;
use crate::web::WebState;

const PAGE: i64 = 100;

#[derive(Deserialize)]
pub struct AuditParams {
    before: Option<i64>,
}

pub async fn list(
    State(st): State<WebState>,
    signed: Signed,
    Query(p): Query<AuditParams>,
) -> Response {
    let rows = match st.svc.store.read().await {
        Ok(mut conn) => sc::audit_page(&mut conn, p.before, PAGE).await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let older = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let lang = signed.viewer.lang;
    let t = |key: &str| lang.t(key);
    let body = html! {
        @if rows.is_empty() { p { (t("audit-none")) } } @else {
            table {
                thead { tr {
                    th scope="col" { (t("audit-when")) } th scope="col" { (t("audit-admin")) }
                    th scope="col" { (t("audit-action")) } th scope="col" { (t("audit-on")) }
                    th scope="col" { (t("audit-result")) } th scope="col" { (t("audit-from")) }
                } }
                tbody { @for r in &rows { tr {
                    td { (pages::when(&r.at)) } td { (r.admin) } td { (r.action) }
                    td { (r.target.as_deref().unwrap_or("")) }
                    td { (r.detail.as_deref().unwrap_or("")) }
                    td { (r.address.as_deref().unwrap_or("")) }
                } } }
            }
        }
        @if let Some(seq) = older { p { a href={ "/admin/audit?before=" (seq) } { (t("audit-older")) } } }
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &t("console-nav-audit"), body),
    )
}
