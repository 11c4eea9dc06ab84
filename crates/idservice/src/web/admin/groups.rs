//! `/admin/groups`: the list (prefix search on displayName, pages of 50 with member counts)
//! and a group's page (attributes, member groups, user members 100 to a page).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::pages::{self, layout};
use super::{Signed, page};
use crate::i18n::Lang;
use crate::store::console::{self as sc, MemberRow};
use crate::store::groups::{self as sg, GroupRow};
use crate::web::WebState;

const PAGE: i64 = 50;
const MEMBERS_PAGE: i64 = 100;

#[derive(Deserialize)]
pub struct ListParams {
    q: Option<String>,
    after: Option<String>,
}

fn link(base: &str, params: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = params
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    match serde_urlencoded::to_string(&kept) {
        Ok(qs) if !qs.is_empty() => format!("{base}?{qs}"),
        _ => base.to_string(),
    }
}

/// `GET /admin/groups`.
pub async fn list(
    State(st): State<WebState>,
    signed: Signed,
    Query(p): Query<ListParams>,
) -> Response {
    let prefix = p.q.as_deref().unwrap_or("").trim().to_string();
    let rows = match st.svc.store.read().await {
        Ok(mut conn) => sc::groups_page(&mut conn, &prefix, p.after.as_deref(), PAGE + 1).await,
        Err(e) => Err(e),
    };
    let mut rows = match rows {
        Ok(r) => r,
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let next = more
        .then(|| {
            rows.last().map(|r| {
                link(
                    "/admin/groups",
                    &[("q", &prefix), ("after", &r.display_name_lc)],
                )
            })
        })
        .flatten();
    let lang = signed.viewer.lang;
    let t = |key: &str| lang.t(key);
    let body = html! {
        form.search method="get" action="/admin/groups" role="search" {
            div {
                label for="q" { (t("groups-search-label")) }
                input #q name="q" type="search" value=(prefix);
            }
            div { button type="submit" { (t("groups-search-button")) } }
        }
        @if rows.is_empty() { p { (t("groups-none-match")) } } @else {
            table {
                thead { tr {
                    th scope="col" { (t("groups-display-name")) }
                    th scope="col" { (t("groups-external-id")) }
                    th scope="col" { (t("groups-members")) }
                } }
                tbody { @for g in &rows { tr {
                    td { a href={ "/admin/groups/" (g.id) } { (g.display_name) } }
                    td { (g.external_id.as_deref().unwrap_or("")) }
                    td { (g.members) }
                } } }
            }
        }
        p.actions {
            @if p.after.is_some() {
                a href=(link("/admin/groups", &[("q", &prefix)])) { (t("groups-first-page")) }
            }
            @if let Some(n) = next { a href=(n) rel="next" { (t("groups-next-page")) } }
        }
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &t("console-nav-groups"), body),
    )
}

#[derive(Deserialize)]
pub struct ShowParams {
    after: Option<String>,
}

/// `GET /admin/groups/{id}`.
pub async fn show(
    State(st): State<WebState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(p): Query<ShowParams>,
) -> Response {
    let loaded = async {
        let mut conn = st.svc.store.read().await?;
        let Some(group) = sg::get(&mut conn, &id).await? else {
            return Ok(None);
        };
        let count = sc::member_count(&mut conn, &id).await?;
        let nested = sc::group_members(&mut conn, &id).await?;
        let users =
            sc::user_members_page(&mut conn, &id, p.after.as_deref(), MEMBERS_PAGE + 1).await?;
        Ok::<_, sqlx::Error>(Some((group, count, nested, users)))
    }
    .await;
    let (group, count, nested, mut users) = match loaded {
        Ok(Some(x)) => x,
        Ok(None) => {
            return pages::error_page(
                &st,
                &signed.viewer,
                Some(&signed),
                StatusCode::NOT_FOUND,
                &signed.viewer.lang.t("groups-not-found-title"),
                &signed.viewer.lang.t("groups-not-found"),
            );
        }
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let members = count;
    let more = users.len() as i64 > MEMBERS_PAGE;
    users.truncate(MEMBERS_PAGE as usize);
    let base = format!("/admin/groups/{id}");
    let next = more
        .then(|| users.last().map(|u| link(&base, &[("after", &u.name_lc)])))
        .flatten();
    let lang = signed.viewer.lang;
    let body = html! {
        (attributes(lang, &group, members))
        (member_lists(lang, &nested, &users))
        p.actions {
            @if p.after.is_some() { a href=(base) { (lang.t("groups-first-page")) } }
            @if let Some(n) = next { a href=(n) rel="next" { (lang.t("groups-next-page")) } }
        }
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &group.display_name, body),
    )
}

/// A group's attributes.
fn attributes(lang: Lang, group: &GroupRow, members: i64) -> Markup {
    let resource: Value = serde_json::from_str(&group.resource).unwrap_or(Value::Null);
    let t = |key: &str| lang.t(key);
    html! {
        dl {
            dt { (t("groups-display-name")) } dd { (group.display_name) }
            dt { (t("groups-external-id")) } dd { (group.external_id.as_deref().unwrap_or("")) }
            dt { (t("groups-members")) } dd { (members) }
            dt { (t("groups-id")) } dd { code { (group.id) } }
            dt { (t("groups-last-modified")) } dd { (pages::when(&group.last_modified)) }
            @if let Some(owner) = resource.get("owner").and_then(Value::as_str) {
                dt { (t("groups-owner")) } dd { (owner) }
            }
        }
    }
}

/// A group's member groups, and one page of its user members.
fn member_lists(lang: Lang, nested: &[MemberRow], users: &[MemberRow]) -> Markup {
    let t = |key: &str| lang.t(key);
    html! {
        @if !nested.is_empty() {
            h2 { (t("groups-member-groups")) }
            ul { @for g in nested { li { a href={ "/admin/groups/" (g.id) } { (g.name) } } } }
        }
        h2 { (t("groups-users")) }
        @if users.is_empty() { p { (t("groups-none")) } } @else {
            table {
                thead { tr {
                    th scope="col" { (t("groups-user-name")) }
                    th scope="col" { (t("groups-state")) }
                } }
                tbody { @for u in users { tr {
                    td { a href={ "/admin/users/" (u.id) } { (u.name) } }
                    td class={ "state-" (u.state) } { (u.state) }
                } } }
            }
        }
    }
}
