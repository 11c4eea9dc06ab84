//! One user, one application: push the user's current state, block, unblock, delete on purge,
//! and create or re-link the downstream account by the behaviour §7.6 relink table:
//!
//! | immutable id of the re-created user | downstream account | result |
//! |---|---|---|
//! | same as before | exists, blocked | unblocked and reused |
//! | same as before | absent | created |
//! | different | exists, blocked (same userName) | fails; the administrator deletes the old account |
//! | different | absent | created |
//!
//! "Same as before" is found by the downstream `externalId` (which holds the immutable id);
//! "exists" with a different id by the downstream `userName`.

use scim_client::{ClientError, ResourceKind};
use serde_json::Value;

use super::{
    BLOCKED, Downstream, FAILED, LINKED, PURGE_DELETE, blocked_copy, desired_resource, eq_filter,
    holds_queue, immutable_id, is_blocked,
};
use crate::domain::users::STATE_PENDING;
use crate::domain::{Service, now};
use crate::store::apps::{self as sa, AppRow, LinkRow};
use crate::store::users::{self as su, UserRow};

/// Why one user could not be processed now.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The application as a whole is unavailable (unreachable, 5xx, 429, credentials): hold
    /// its queue and retry later.
    #[error("{0}")]
    Hold(ClientError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// What happened, for the log.
enum Outcome {
    Nothing,
    Recorded(LinkRow),
    Removed,
}

/// Processes one queued change of `user_id` for `app`.
pub async fn process(
    svc: &Service,
    app: &AppRow,
    ds: &Downstream,
    user_id: &str,
) -> Result<(), PushError> {
    let (user, link, in_scope) = {
        let mut conn = svc.store.read().await?;
        let user = su::get(&mut conn, user_id).await?;
        let link = sa::get_link(&mut conn, &app.name, user_id).await?;
        let groups = app.group_list();
        let in_scope = match &user {
            Some(u) => groups.is_empty() || sa::in_groups(&mut conn, &u.id, &groups).await?,
            None => false,
        };
        (user, link, in_scope)
    };
    let outcome = match user {
        None => gone(app, ds, link).await?,
        Some(user) => present(svc, app, ds, &user, link, in_scope).await?,
    };
    let mut tx = svc.store.begin().await?;
    match &outcome {
        Outcome::Nothing => {}
        Outcome::Recorded(l) => record(&mut tx, l).await?,
        Outcome::Removed => sa::delete_link(&mut tx, &app.name, user_id).await?,
    }
    tx.commit().await?;
    Ok(())
}

/// Stores a link. The account a purged user's link still names passes to this one; should
/// another user's link have taken the account meanwhile (the unique (application,
/// downstream account) index says so), this link is recorded failed instead, without it.
async fn record(tx: &mut crate::store::Tx, link: &LinkRow) -> Result<(), sqlx::Error> {
    let Some(account) = &link.downstream_id else {
        return sa::upsert_link(tx, link).await;
    };
    sa::release_account(tx, &link.app, account).await?;
    let attempt = {
        let mut sp = sqlx::Acquire::begin(&mut **tx).await?;
        match sa::upsert_link(&mut sp, link).await {
            Ok(()) => sp.commit().await,
            Err(e) => {
                sp.rollback().await?;
                Err(e)
            }
        }
    };
    match attempt {
        Err(e) if crate::store::is_unique_violation(&e) => {
            let refused = refused_link(link, account, "another user of the application");
            sa::upsert_link(tx, &refused).await
        }
        other => other,
    }
}

/// `link` without the account another user holds, failed, with an audit event.
fn refused_link(link: &LinkRow, account: &str, holder: &str) -> LinkRow {
    tracing::warn!(target: "audit", event = "downstream_account_conflict", app = %link.app,
        user_name = %link.user_name, downstream_id = %account, holder = %holder,
        "link refused: the downstream account belongs to another user");
    let mut refused = link.clone();
    refused.downstream_id = None;
    refused.state = FAILED.into();
    refused.last_error = Some(format!(
        "cannot link: downstream account {account} (immutable id {}) is linked to {holder}; \
         one account is never shared. Give this user its own downstreamId or externalId",
        link.immutable_id
    ));
    refused
}

/// The user was purged: delete the downstream account when the policy says so, else leave
/// it blocked.
async fn gone(app: &AppRow, ds: &Downstream, link: Option<LinkRow>) -> Result<Outcome, PushError> {
    let Some(mut link) = link else {
        return Ok(Outcome::Nothing);
    };
    let Some(account) = link.downstream_id.clone() else {
        return Ok(Outcome::Removed);
    };
    if app.purge_policy == PURGE_DELETE {
        match ds.delete(ResourceKind::Users, &account).await {
            Ok(_) => {}
            Err(e) if holds_queue(&e) => return Err(PushError::Hold(e)),
            Err(e) => return Ok(failed_on(link, &e)),
        }
        tracing::info!(app = %app.name, user_name = %link.user_name, downstream_id = %account,
            "user purged: downstream account deleted (purge policy delete)");
        return Ok(Outcome::Removed);
    }
    let current = match ds.get(ResourceKind::Users, &account).await {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(Outcome::Removed),
        Err(e) if holds_queue(&e) => return Err(PushError::Hold(e)),
        Err(e) => return Ok(failed_on(link, &e)),
    };
    if !is_blocked(&current) || current.get("entitlements").is_some() {
        match ds
            .replace(ResourceKind::Users, &account, &blocked_copy(&current))
            .await
        {
            Ok(_) => {}
            Err(e) if holds_queue(&e) => return Err(PushError::Hold(e)),
            Err(e) => return Ok(failed_on(link, &e)),
        }
    }
    tracing::info!(app = %app.name, user_name = %link.user_name, downstream_id = %account,
        "user purged: downstream account left blocked (purge policy block)");
    link.state = BLOCKED.into();
    link.last_error = Some("user purged; the downstream account is kept blocked".into());
    link.last_push = Some(now());
    Ok(Outcome::Recorded(link))
}

fn failed_on(mut link: LinkRow, e: &ClientError) -> Outcome {
    tracing::warn!(app = %link.app, user_name = %link.user_name, error = %e, "downstream push failed");
    link.state = FAILED.into();
    link.last_error = Some(e.to_string());
    link.last_push = Some(now());
    Outcome::Recorded(link)
}

async fn present(
    svc: &Service,
    app: &AppRow,
    ds: &Downstream,
    user: &UserRow,
    link: Option<LinkRow>,
    in_scope: bool,
) -> Result<Outcome, PushError> {
    // Disabled, pending deletion, or out of the application's scope: blocked, no licence.
    let unblocked = in_scope && user.active && user.state != STATE_PENDING;
    // A disabled user in scope has a (blocked, unlicensed) account, as a directory sync to
    // Microsoft 365 creates disabled users with sign-in blocked; a user pending deletion or
    // out of scope gets none.
    let should_exist = in_scope && user.state != STATE_PENDING;
    let licence = app.licence.as_deref();
    if let Some(link) = link
        && let Some(account) = link.downstream_id.clone()
    {
        let desired = desired_resource(user, &link.immutable_id, unblocked, licence);
        return match ds.replace(ResourceKind::Users, &account, &desired).await {
            Ok(_) => Ok(recorded(app, user, link, account, unblocked)),
            // The account was deleted downstream: link again as for a new user.
            Err(ClientError::Rejected(e)) if e.status == 404 => {
                tracing::info!(app = %app.name, user_name = %user.user_name, downstream_id = %account,
                    "downstream account is gone; linking again");
                if should_exist {
                    create_link(svc, app, ds, user, Some(link.immutable_id), unblocked).await
                } else {
                    Ok(Outcome::Removed)
                }
            }
            Err(e) if holds_queue(&e) => Err(PushError::Hold(e)),
            Err(e) => Ok(failed_on(link, &e)),
        };
    }
    if should_exist {
        return create_link(svc, app, ds, user, None, unblocked).await;
    }
    // Never linked (or failed) and not to have an account: nothing downstream to change. A
    // failed link of a user who left the scope is dropped; a pending user's stays visible.
    Ok(if !in_scope {
        Outcome::Removed
    } else {
        Outcome::Nothing
    })
}

fn recorded(
    app: &AppRow,
    user: &UserRow,
    mut link: LinkRow,
    account: String,
    unblocked: bool,
) -> Outcome {
    let state = if unblocked { LINKED } else { BLOCKED };
    if !link.state.is_empty() && link.state != state {
        tracing::info!(app = %app.name, user_name = %user.user_name, downstream_id = %account,
            from = %link.state, to = state, "downstream account state changed");
    }
    link.user_name = user.user_name.clone();
    link.downstream_id = Some(account);
    link.state = state.into();
    link.last_error = None;
    link.last_push = Some(now());
    Outcome::Recorded(link)
}

/// What one link creation works with: the user, the application and the account to push.
struct NewLink<'a> {
    app: &'a AppRow,
    ds: &'a Downstream,
    user: &'a UserRow,
    immutable: String,
    desired: Value,
    unblocked: bool,
}

/// Link creation by the relink table. `immutable` is the link's existing immutable id, if any
/// (it never changes for a link); otherwise the user's current one.
async fn create_link(
    svc: &Service,
    app: &AppRow,
    ds: &Downstream,
    user: &UserRow,
    immutable: Option<String>,
    unblocked: bool,
) -> Result<Outcome, PushError> {
    let immutable = immutable.unwrap_or_else(|| immutable_id(user));
    let desired = desired_resource(user, &immutable, unblocked, app.licence.as_deref());
    let base = new_link_row(app, user, &immutable);
    let link = NewLink {
        app,
        ds,
        user,
        immutable,
        desired,
        unblocked,
    };

    // Same immutable id as before: reuse the account (unblocking it).
    let by_id = match ds
        .find_by_external_id(ResourceKind::Users, &link.immutable)
        .await
    {
        Ok(found) => found,
        Err(e) => return fail(base, e),
    };
    if let Some(account) = by_id {
        if let Some(id) = account.get("id").and_then(Value::as_str) {
            let mut conn = svc.store.read().await?;
            if let Some(other) = sa::account_holder(&mut conn, &app.name, id, &user.id).await? {
                let holder = format!("user {}", other.user_name);
                return Ok(Outcome::Recorded(refused_link(&base, id, &holder)));
            }
        }
        return reuse_account(&link, base, &account).await;
    }

    // A different immutable id: an account holding the userName would be duplicated.
    let by_name = match ds
        .list(
            ResourceKind::Users,
            Some(&eq_filter("userName", &user.user_name)),
            None,
        )
        .await
    {
        Ok(found) => found,
        Err(e) => return fail(base, e),
    };
    if let Some(other) = by_name.first() {
        return Ok(failed_with(base, duplicate_message(svc, &link, other)));
    }

    // Absent: create.
    create_account(&link, base).await
}

/// The link row a creation starts from: no downstream account and no state yet.
fn new_link_row(app: &AppRow, user: &UserRow, immutable: &str) -> LinkRow {
    LinkRow {
        app: app.name.clone(),
        user_id: user.id.clone(),
        user_name: user.user_name.clone(),
        immutable_id: immutable.to_string(),
        downstream_id: None,
        // Not a state yet: the outcome below sets one.
        state: String::new(),
        last_error: None,
        last_push: Some(now()),
    }
}

/// A failed request: holds the queue when the application as a whole failed, else records it.
fn fail(base: LinkRow, e: ClientError) -> Result<Outcome, PushError> {
    if holds_queue(&e) {
        Err(PushError::Hold(e))
    } else {
        Ok(failed_on(base, &e))
    }
}

/// Reuses (and unblocks) the downstream account that has the same immutable id.
async fn reuse_account(
    link: &NewLink<'_>,
    base: LinkRow,
    account: &Value,
) -> Result<Outcome, PushError> {
    let Some(id) = account
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Ok(failed_with(base, "the downstream account has no id".into()));
    };
    if let Err(e) = link
        .ds
        .replace(ResourceKind::Users, &id, &link.desired)
        .await
    {
        return fail(base, e);
    }
    tracing::info!(app = %link.app.name, user_name = %link.user.user_name, downstream_id = %id,
        immutable_id = %link.immutable, was_blocked = is_blocked(account),
        "linked to the existing downstream account with the same immutable id");
    Ok(recorded(link.app, link.user, base, id, link.unblocked))
}

/// Why an account `other` holding the userName under another immutable id blocks the link.
fn duplicate_message(svc: &Service, link: &NewLink<'_>, other: &Value) -> String {
    let id = other.get("id").and_then(Value::as_str).unwrap_or("?");
    let name = other
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or(&link.user.user_name);
    let ext = other
        .get("externalId")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    let db = super::apps::db_option(svc);
    let what = if is_blocked(other) {
        "a blocked downstream account"
    } else {
        "an active downstream account"
    };
    duplicate_text(what, [id, name, ext], &link.immutable, &db, &link.app.name)
}

/// The text of [`duplicate_message`]: `account` is the holding account's id, userName and
/// externalId.
fn duplicate_text(what: &str, account: [&str; 3], immutable: &str, db: &str, app: &str) -> String {
    let [id, name, ext] = account;
    format!(
        "cannot link: {what} (id {id}, userName {name}, externalId {ext}) holds this \
         userName with another immutable id than {immutable}; linking would duplicate it. \
         Delete the old account permanently: idservice apps purge-account {db} \
         {app} {id}"
    )
}

/// The downstream account a failed link's message (from [`duplicate_message`]) names as the
/// one to purge: what the console's "delete the old account" button acts on.
pub fn account_to_purge(last_error: &str) -> Option<&str> {
    let rest = last_error.strip_prefix("cannot link: ")?;
    let after = rest.split_once("(id ")?.1;
    let id = after.split_once(", userName ")?.0;
    (!id.is_empty() && id != "?").then_some(id)
}

/// Creates the downstream account (none holds the immutable id or the userName).
async fn create_account(link: &NewLink<'_>, base: LinkRow) -> Result<Outcome, PushError> {
    match link.ds.create(ResourceKind::Users, &link.desired).await {
        Ok(created) => {
            let Some(id) = created
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return Ok(failed_with(
                    base,
                    "the application created the account but returned no id".into(),
                ));
            };
            tracing::info!(app = %link.app.name, user_name = %link.user.user_name,
                downstream_id = %id, immutable_id = %link.immutable, "downstream account created");
            Ok(recorded(link.app, link.user, base, id, link.unblocked))
        }
        Err(e) => fail(base, e),
    }
}

fn failed_with(mut link: LinkRow, message: String) -> Outcome {
    tracing::warn!(app = %link.app, user_name = %link.user_name, reason = %message, "link failed");
    link.state = FAILED.into();
    link.last_error = Some(message);
    Outcome::Recorded(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_to_purge_is_read_back_from_the_failure() {
        let text = duplicate_text(
            "a blocked downstream account",
            ["2819c223-7f76", "bjensen@example.com", "E-1"],
            "E-2",
            "--data /var/lib/idservice",
            "crm",
        );
        assert_eq!(account_to_purge(&text), Some("2819c223-7f76"));
        assert_eq!(account_to_purge("HTTP 500 from the application"), None);
        let unknown = duplicate_text(
            "an active downstream account",
            ["?", "x", "y"],
            "i",
            "d",
            "a",
        );
        assert_eq!(account_to_purge(&unknown), None);
    }
}
