//! `/admin/users`: the list (prefix search, state filter, pages of 50 in userName order), a
//! user's page (attributes, emails, groups, state history, linked accounts, sign-in lockout)
//! and the actions, each behind a confirmation page: disable, enable, unlock, send a reset
//! email, restore from pending deletion, purge now.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::pages::{self, layout, message};
use super::{Signed, page, see_other_to};
use crate::domain::admins::Role;
use crate::domain::users::{
    self as du, ConsoleAction, STATE_ACTIVE, STATE_DISABLED, STATE_PENDING,
};
use crate::domain::{fmt_time, now};
use crate::i18n::Lang;
use crate::store::console::{self as sc, StateFilter, UserQuery};
use crate::store::users::{self as su, UserRow};
use crate::web::WebState;
use crate::web::account as acct;
use crate::web::reset::{ResetSent, request_reset};

/// Users per page.
const PAGE: i64 = 50;

/// What the console can do to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Disable,
    Enable,
    Unlock,
    SendReset,
    Restore,
    Purge,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "disable" => Action::Disable,
            "enable" => Action::Enable,
            "unlock" => Action::Unlock,
            "send-reset" => Action::SendReset,
            "restore" => Action::Restore,
            "purge" => Action::Purge,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::Disable => "disable",
            Action::Enable => "enable",
            Action::Unlock => "unlock",
            Action::SendReset => "send-reset",
            Action::Restore => "restore",
            Action::Purge => "purge",
        }
    }

    /// The text key of the link's and the button's text.
    fn label(self) -> &'static str {
        match self {
            Action::Disable => "users-action-disable",
            Action::Enable => "users-action-enable",
            Action::Unlock => "users-action-unlock",
            Action::SendReset => "users-action-send-reset",
            Action::Restore => "users-action-restore",
            Action::Purge => "users-action-purge",
        }
    }

    /// The text key of what the confirmation page says the action does.
    fn consequence(self) -> &'static str {
        match self {
            Action::Disable => "users-consequence-disable",
            Action::Enable => "users-consequence-enable",
            Action::Unlock => "users-consequence-unlock",
            Action::SendReset => "users-consequence-send-reset",
            Action::Restore => "users-consequence-restore",
            Action::Purge => "users-consequence-purge",
        }
    }

    /// The text key of the confirmation page's title (argument `user`).
    fn confirm_title(self) -> &'static str {
        match self {
            Action::Disable => "users-confirm-disable",
            Action::Enable => "users-confirm-enable",
            Action::Unlock => "users-confirm-unlock",
            Action::SendReset => "users-confirm-send-reset",
            Action::Restore => "users-confirm-restore",
            Action::Purge => "users-confirm-purge",
        }
    }

    fn role(self) -> Role {
        match self {
            Action::Unlock | Action::SendReset => Role::Helpdesk,
            _ => Role::Admin,
        }
    }

    /// Whether the action fits the user's state now.
    fn fits(self, row: &UserRow, locked: bool) -> bool {
        match self {
            Action::Disable => row.state == STATE_ACTIVE,
            Action::Enable => row.state == STATE_DISABLED,
            Action::Unlock => locked,
            Action::SendReset => row.state == STATE_ACTIVE,
            Action::Restore | Action::Purge => row.state == STATE_PENDING,
        }
    }

    const ALL: [Action; 6] = [
        Action::Disable,
        Action::Enable,
        Action::Unlock,
        Action::SendReset,
        Action::Restore,
        Action::Purge,
    ];
}

#[derive(Deserialize)]
pub struct ListParams {
    q: Option<String>,
    state: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

fn state_filter(s: &str) -> Option<StateFilter> {
    Some(match s {
        "" => StateFilter::Any,
        "active" => StateFilter::Active,
        "disabled" => StateFilter::Disabled,
        "locked" => StateFilter::Locked,
        "pendingDeletion" => StateFilter::PendingDeletion,
        _ => return None,
    })
}

/// The state filter's choices: (value, text key).
const STATE_CHOICES: [(&str, &str); 5] = [
    ("", "users-state-any"),
    ("active", "users-state-active"),
    ("disabled", "users-state-disabled"),
    ("locked", "users-state-locked"),
    ("pendingDeletion", "users-state-pending"),
];

/// `GET /admin/users`.
pub async fn list(
    State(st): State<WebState>,
    signed: Signed,
    Query(p): Query<ListParams>,
) -> Response {
    let lang = signed.viewer.lang;
    let prefix = p.q.as_deref().unwrap_or("").trim().to_string();
    let state_key = p.state.as_deref().unwrap_or("");
    let Some(state) = state_filter(state_key) else {
        return pages::error_page(
            &st,
            &signed.viewer,
            Some(&signed),
            StatusCode::BAD_REQUEST,
            &lang.t("users-title"),
            &lang.t("users-unknown-state-filter"),
        );
    };
    let at = now();
    let q = UserQuery {
        prefix: &prefix,
        state,
        after: p.after.as_deref(),
        limit: PAGE + 1,
        now: &at,
    };
    let rows = match st.svc.store.read().await {
        Ok(mut conn) => sc::users_page(&mut conn, &q).await,
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
            rows.last()
                .map(|r| page_link(&prefix, state_key, &r.user_name_lc))
        })
        .flatten();
    let done = p.done.as_deref().and_then(done_message).map(|k| lang.t(k));
    let body = html! {
        (message(done.as_deref()))
        (search_form(lang, &prefix, state_key))
        @if rows.is_empty() {
            p { (lang.t("users-none-match")) }
        } @else {
            (users_table(lang, &rows))
        }
        p.actions {
            @if p.after.is_some() {
                a href=(page_link(&prefix, state_key, "")) { (lang.t("users-first-page")) }
            }
            @if let Some(n) = next { a href=(n) rel="next" { (lang.t("users-next-page")) } }
        }
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &lang.t("users-title"), body),
    )
}

/// The list's address with these parameters (`after` empty: the first page).
fn page_link(prefix: &str, state: &str, after: &str) -> String {
    let mut params: Vec<(&str, &str)> = Vec::new();
    for (k, v) in [("q", prefix), ("state", state), ("after", after)] {
        if !v.is_empty() {
            params.push((k, v));
        }
    }
    match serde_urlencoded::to_string(&params) {
        Ok(qs) if !qs.is_empty() => format!("/admin/users?{qs}"),
        _ => "/admin/users".to_string(),
    }
}

fn search_form(lang: Lang, prefix: &str, state: &str) -> Markup {
    html! {
        form.search method="get" action="/admin/users" role="search" {
            div {
                label for="q" { (lang.t("users-search-label")) }
                input #q name="q" type="search" value=(prefix);
            }
            div {
                label for="state" { (lang.t("users-state")) }
                select #state name="state" {
                    @for (value, key) in STATE_CHOICES {
                        option value=(value) selected[value == state] { (lang.t(key)) }
                    }
                }
            }
            div { button type="submit" { (lang.t("users-search")) } }
        }
    }
}

/// A user's resource, parsed (an unreadable one shows as empty).
fn resource(row: &UserRow) -> Value {
    serde_json::from_str(&row.resource).unwrap_or(Value::Null)
}

fn first_email(r: &Value) -> &str {
    r["emails"][0]["value"].as_str().unwrap_or("")
}

fn users_table(lang: Lang, rows: &[UserRow]) -> Markup {
    html! {
        table {
            caption.visually-hidden { (lang.t("users-title")) }
            thead { tr {
                th scope="col" { "userName" }
                th scope="col" { (lang.t("users-name")) }
                th scope="col" { (lang.t("users-email")) }
                th scope="col" { "externalId" }
                th scope="col" { (lang.t("users-state")) }
            } }
            tbody {
                @for row in rows {
                    @let r = resource(row);
                    tr {
                        td { a href={ "/admin/users/" (row.id) } { (row.user_name) } }
                        td { (r["displayName"].as_str().unwrap_or("")) }
                        td { (first_email(&r)) }
                        td { (row.external_id.as_deref().unwrap_or("")) }
                        td class={ "state-" (row.state) } { (state_text(lang, &row.state)) }
                    }
                }
            }
        }
    }
}

/// A user's state as the viewer reads it (a state the console does not know: as stored).
fn state_text(lang: Lang, state: &str) -> String {
    match state {
        STATE_ACTIVE => lang.t("users-state-active"),
        STATE_DISABLED => lang.t("users-state-disabled"),
        STATE_PENDING => lang.t("users-state-pending"),
        other => other.to_string(),
    }
}

/// A linked account's state as the viewer reads it (an unknown one: as stored).
fn link_state_text(lang: Lang, state: &str) -> String {
    match state {
        crate::outbound::LINKED => lang.t("users-link-linked"),
        crate::outbound::BLOCKED => lang.t("users-link-blocked"),
        crate::outbound::FAILED => lang.t("users-link-failed"),
        other => other.to_string(),
    }
}

/// The text key of the note shown after an action (`?done=`).
fn done_message(done: &str) -> Option<&'static str> {
    Some(match done {
        "disable" => "users-done-disable",
        "enable" => "users-done-enable",
        "unlock" => "users-done-unlock",
        "send-reset" => "users-done-send-reset",
        "restore" => "users-done-restore",
        "purge" => "users-done-purge",
        "reset-no-address" => "users-done-reset-no-address",
        "reset-email-off" => "users-done-reset-email-off",
        "reset-cannot-sign-in" => "users-done-reset-cannot-sign-in",
        _ => return None,
    })
}

/// Everything a user's page shows.
struct UserView {
    row: UserRow,
    groups: Vec<(String, String)>,
    history: Vec<su::StateChange>,
    links: Vec<crate::store::apps::LinkRow>,
    locked_until: Option<String>,
}

async fn load(st: &WebState, id: &str) -> Result<Option<UserView>, sqlx::Error> {
    let mut conn = st.svc.store.read().await?;
    let Some(row) = su::get(&mut conn, id).await? else {
        return Ok(None);
    };
    let groups = su::groups_of(&mut conn, id).await?;
    let history = sc::state_history_of(&mut conn, id).await?;
    let links = sc::links_of(&mut conn, id).await?;
    let at = now();
    let locked_until = acct::get(&mut conn, id)
        .await?
        .locked_until
        .filter(|l| l.as_str() > at.as_str());
    Ok(Some(UserView {
        row,
        groups,
        history,
        links,
        locked_until,
    }))
}

#[derive(Deserialize)]
pub struct ShowParams {
    done: Option<String>,
}

/// `GET /admin/users/{id}`.
pub async fn show(
    State(st): State<WebState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(p): Query<ShowParams>,
) -> Response {
    let view = match load(&st, &id).await {
        Ok(Some(v)) => v,
        Ok(None) => return not_found(&st, &signed),
        Err(e) => return pages::db_error(&st, &signed, &e),
    };
    let lang = signed.viewer.lang;
    let done = p.done.as_deref().and_then(done_message).map(|k| lang.t(k));
    let body = html! {
        (message(done.as_deref()))
        (attributes(&st, lang, &view))
        (action_links(&signed, &view))
        h2 { (lang.t("users-groups")) }
        @if view.groups.is_empty() { p { (lang.t("users-groups-none")) } } @else {
            ul { @for (_, name) in &view.groups { li { (name) } } }
        }
        h2 { (lang.t("users-state-history")) }
        (history_table(lang, &view.history))
        h2 { (lang.t("users-linked-accounts")) }
        (links_table(lang, &view.links))
    };
    page(
        StatusCode::OK,
        layout(&st, &signed, &view.row.user_name, body),
    )
}

fn not_found(st: &WebState, signed: &Signed) -> Response {
    let lang = signed.viewer.lang;
    pages::error_page(
        st,
        &signed.viewer,
        Some(signed),
        StatusCode::NOT_FOUND,
        &lang.t("users-not-found-title"),
        &lang.t("users-not-found"),
    )
}

fn attributes(st: &WebState, lang: Lang, v: &UserView) -> Markup {
    let r = resource(&v.row);
    html! {
        dl {
            dt { "userName" } dd { (v.row.user_name) }
            dt { (lang.t("users-state")) }
            dd class={ "state-" (v.row.state) } { (state_text(lang, &v.row.state)) }
            (pending_and_lock(st, lang, v))
            dt { "externalId" } dd { (v.row.external_id.as_deref().unwrap_or("")) }
            dt { "displayName" } dd { (r["displayName"].as_str().unwrap_or("")) }
            dt { (lang.t("users-name")) } dd { (r["name"]["formatted"].as_str().unwrap_or("")) " "
                (r["name"]["familyName"].as_str().unwrap_or("")) " "
                (r["name"]["givenName"].as_str().unwrap_or("")) }
            dt { (lang.t("users-emails")) } dd {
                @for e in r["emails"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    @let address = e["value"].as_str().unwrap_or("");
                    @if e["primary"] == Value::Bool(true) {
                        (lang.ta("users-email-primary", &[("email", address.into())]))
                    } @else { (address) }
                    br;
                }
            }
            dt { "id" } dd { code { (v.row.id) } }
            dt { (lang.t("users-created")) } dd { (pages::when(&v.row.created)) }
            dt { (lang.t("users-last-modified")) } dd { (pages::when(&v.row.last_modified)) }
        }
    }
}

/// The attributes of a user pending deletion (since when, the day the retention period
/// purges them) and of a locked one (until when).
fn pending_and_lock(st: &WebState, lang: Lang, v: &UserView) -> Markup {
    let purge_on = v.row.pending_since.as_deref().and_then(|since| {
        chrono::DateTime::parse_from_rfc3339(since)
            .ok()
            .map(|t| fmt_time(t.to_utc() + chrono::Duration::days(st.svc.retention_days)))
    });
    html! {
        @if let Some(since) = &v.row.pending_since {
            dt { (lang.t("users-pending-since")) } dd { (pages::when(since)) }
            dt { (lang.t("users-purged-on")) } dd { (pages::when(purge_on.as_deref().unwrap_or(""))) }
        }
        @if let Some(until) = &v.locked_until {
            dt { (lang.t("users-locked-until")) } dd { (pages::when(until)) }
        }
    }
}

/// The actions this administrator may take on the user in its state, as links to their
/// confirmation pages.
fn action_links(signed: &Signed, v: &UserView) -> Markup {
    let locked = v.locked_until.is_some();
    html! {
        p.actions {
            @for a in Action::ALL {
                @if a.fits(&v.row, locked) && pages::allowed(signed.role, a.as_str()) {
                    a href={ "/admin/users/" (v.row.id) "/" (a.as_str()) } {
                        (signed.viewer.lang.t(a.label()))
                    }
                }
            }
        }
    }
}

fn history_table(lang: Lang, history: &[su::StateChange]) -> Markup {
    html! {
        @if history.is_empty() { p { (lang.t("users-history-empty")) } } @else {
            table {
                thead { tr {
                    th scope="col" { (lang.t("users-history-when")) }
                    th scope="col" { (lang.t("users-history-from")) }
                    th scope="col" { (lang.t("users-history-to")) }
                } }
                tbody { @for h in history { tr {
                    td { (pages::when(&h.at)) }
                    td { (h.from_state.as_deref().map_or_else(
                        || lang.t("users-history-created"),
                        |s| state_text(lang, s),
                    )) }
                    td { (state_text(lang, &h.to_state)) }
                } } }
            }
        }
    }
}

fn links_table(lang: Lang, links: &[crate::store::apps::LinkRow]) -> Markup {
    html! {
        @if links.is_empty() { p { (lang.t("users-links-empty")) } } @else {
            table {
                thead { tr {
                    th scope="col" { (lang.t("users-link-application")) }
                    th scope="col" { (lang.t("users-link-account")) }
                    th scope="col" { (lang.t("users-link-state")) }
                    th scope="col" { (lang.t("users-link-last-error")) }
                } }
                tbody { @for l in links { tr {
                    td { (l.app) }
                    td { (l.downstream_id.as_deref().unwrap_or("")) }
                    td { (link_state_text(lang, &l.state)) }
                    td { (l.last_error.as_deref().unwrap_or("")) }
                } } }
            }
        }
    }
}

/// The user and action of an action URL, checked against the role and the user's state.
async fn prepare(
    st: &WebState,
    signed: &Signed,
    id: &str,
    action: &str,
) -> Result<(Action, UserView), Response> {
    let lang = signed.viewer.lang;
    let Some(a) = Action::parse(action) else {
        return Err(pages::error_page(
            st,
            &signed.viewer,
            Some(signed),
            StatusCode::NOT_FOUND,
            &lang.t("users-no-such-action-title"),
            &lang.t("users-no-such-action"),
        ));
    };
    signed.require(st, a.role()).map_err(|r| *r)?;
    let view = match load(st, id).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(not_found(st, signed)),
        Err(e) => return Err(pages::db_error(st, signed, &e)),
    };
    if !a.fits(&view.row, view.locked_until.is_some()) {
        let label = lang.t(a.label());
        let state = state_text(lang, &view.row.state).to_lowercase();
        let msg = lang.ta(
            "users-not-applicable",
            &[
                ("action", (&label).into()),
                ("user", (&view.row.user_name).into()),
                ("state", (&state).into()),
            ],
        );
        return Err(pages::error_page(
            st,
            &signed.viewer,
            Some(signed),
            StatusCode::CONFLICT,
            &lang.t("users-not-possible-title"),
            &msg,
        ));
    }
    Ok((a, view))
}

/// `GET /admin/users/{id}/{action}`: the confirmation step.
pub async fn confirm(
    State(st): State<WebState>,
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let (a, view) = match prepare(&st, &signed, &id, &action).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let lang = signed.viewer.lang;
    let user_page = format!("/admin/users/{}", view.row.id);
    pages::confirm_page(
        &st,
        &signed,
        &lang.ta(a.confirm_title(), &[("user", (&view.row.user_name).into())]),
        html! { p { (lang.t(a.consequence())) } },
        &format!("{user_page}/{}", a.as_str()),
        &lang.t(a.label()),
        &user_page,
    )
}

#[derive(Deserialize)]
pub struct ActForm {
    csrf_token: Option<String>,
}

/// `POST /admin/users/{id}/{action}`: the action, then back to the user's page (the list,
/// after a purge) with a note.
pub async fn act(
    State(st): State<WebState>,
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&st, f.csrf_token.as_deref()) {
        return *r;
    }
    let (a, view) = match prepare(&st, &signed, &id, &action).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let outcome = match perform(&st, a, &view.row).await {
        Ok(done) => done,
        Err(ActError::Db(e)) => return pages::db_error(&st, &signed, &e),
        Err(ActError::Scim(e)) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::CONFLICT);
            return pages::error_page(
                &st,
                &signed.viewer,
                Some(&signed),
                status,
                &signed.viewer.lang.t("users-not-possible-title"),
                &e.detail,
            );
        }
    };
    if let Err(e) = signed
        .audit(&st, a.as_str(), Some(&view.row.user_name), Some(outcome))
        .await
    {
        return pages::db_error(&st, &signed, &e);
    }
    if a == Action::Purge {
        return see_other_to(format!("/admin/users?done={outcome}"));
    }
    see_other_to(format!("/admin/users/{}?done={outcome}", view.row.id))
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
enum ActError {
    #[error("{0}")]
    Scim(scim::ScimError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Carries out an action; returns the `done` note to show.
async fn perform(st: &WebState, a: Action, row: &UserRow) -> Result<&'static str, ActError> {
    let console = |c| async move {
        du::console_action(&st.svc, &row.id, c)
            .await
            .map_err(ActError::Scim)
    };
    match a {
        Action::Disable => console(ConsoleAction::Disable).await?,
        Action::Enable => console(ConsoleAction::Enable).await?,
        Action::Restore => console(ConsoleAction::Restore).await?,
        Action::Purge => console(ConsoleAction::Purge).await?,
        Action::Unlock => {
            crate::store::retry(crate::store::is_retryable, || async {
                let mut tx = st.svc.store.begin().await?;
                acct::clear_failures(&mut tx, &row.id).await?;
                tx.commit().await
            })
            .await?;
        }
        Action::SendReset => {
            let sent = crate::store::retry(crate::store::is_retryable, || {
                request_reset(st, &row.user_name)
            })
            .await?;
            return Ok(match sent {
                ResetSent::Queued => "send-reset",
                ResetSent::NoAddress => "reset-no-address",
                ResetSent::EmailOff => "reset-email-off",
                ResetSent::NoSuchUser | ResetSent::CannotSignIn => "reset-cannot-sign-in",
            });
        }
    }
    Ok(a.as_str())
}
