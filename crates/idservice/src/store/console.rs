//! The console's tables (`admins`, `admin_sessions`, `admin_audit`, `sync_runs`) and its user
//! search: a prefix match on userName, externalId, displayName and the first email address,
//! filtered by state, paged by userName (keyset: each page starts after the last name of the one before,
//! so page 2,000 costs what page 1 does).
//!
//! It does not know who may do what (the console's roles) nor how passwords are hashed: it
//! stores what it is given.

use super::{Conn, Engine, engine_of};
use crate::store::apps::LinkRow;
use crate::store::users::{StateChange, USER_COLUMNS, UserRow};

/// A console account (never the password itself: its argon2 hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminRow {
    pub name_lc: String,
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub failures: i64,
    pub locked_until: Option<String>,
    pub created: String,
}

/// The columns of an [`AdminRow`], in order (a macro, so that queries can `concat!` it).
macro_rules! admin_columns {
    () => {
        "name_lc, name, role, password_hash, failures, locked_until, created"
    };
}

/// Adds an account; false when the name (ignoring case) is taken.
pub async fn insert_admin(conn: &mut Conn, a: &AdminRow) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO admins (name_lc, name, role, password_hash, failures, locked_until, created) \
         VALUES ($1, $2, $3, $4, 0, NULL, $5) ON CONFLICT (name_lc) DO NOTHING",
    )
    .bind(&a.name_lc)
    .bind(&a.name)
    .bind(&a.role)
    .bind(&a.password_hash)
    .bind(&a.created)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn admin(conn: &mut Conn, name_lc: &str) -> Result<Option<AdminRow>, sqlx::Error> {
    sqlx::query_as::<_, AdminRow>(concat!(
        "SELECT ",
        admin_columns!(),
        " FROM admins WHERE name_lc = $1"
    ))
    .bind(name_lc)
    .fetch_optional(conn)
    .await
}

pub async fn admins(conn: &mut Conn) -> Result<Vec<AdminRow>, sqlx::Error> {
    sqlx::query_as::<_, AdminRow>(concat!(
        "SELECT ",
        admin_columns!(),
        " FROM admins ORDER BY name_lc"
    ))
    .fetch_all(conn)
    .await
}

/// Removes an account and its sessions; false when there was none.
pub async fn remove_admin(conn: &mut Conn, name_lc: &str) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM admin_sessions WHERE admin_lc = $1")
        .bind(name_lc)
        .execute(&mut *conn)
        .await?;
    let r = sqlx::query("DELETE FROM admins WHERE name_lc = $1")
        .bind(name_lc)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Replaces the password hash, clears failures and lockout, and ends the account's sessions;
/// false when there is no such account.
pub async fn set_admin_password(
    conn: &mut Conn,
    name_lc: &str,
    hash: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE admins SET password_hash = $2, failures = 0, locked_until = NULL \
         WHERE name_lc = $1",
    )
    .bind(name_lc)
    .bind(hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM admin_sessions WHERE admin_lc = $1")
        .bind(name_lc)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Counts a failed sign-in; at `max_failures` locks the account until `lock_until` and starts
/// counting again. Returns whether this failure locked it.
pub async fn admin_failure(
    conn: &mut Conn,
    name_lc: &str,
    max_failures: u32,
    lock_until: &str,
) -> Result<bool, sqlx::Error> {
    let failures: Option<i64> = sqlx::query_scalar(
        "UPDATE admins SET failures = failures + 1 WHERE name_lc = $1 RETURNING failures",
    )
    .bind(name_lc)
    .fetch_optional(&mut *conn)
    .await?;
    if failures.unwrap_or(0) < i64::from(max_failures) {
        return Ok(false);
    }
    sqlx::query("UPDATE admins SET failures = 0, locked_until = $2 WHERE name_lc = $1")
        .bind(name_lc)
        .bind(lock_until)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Forgets failures and lockout (a successful sign-in).
pub async fn admin_success(conn: &mut Conn, name_lc: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE admins SET failures = 0, locked_until = NULL WHERE name_lc = $1")
        .bind(name_lc)
        .execute(conn)
        .await?;
    Ok(())
}

/// A signed-in console session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminSession {
    pub admin_lc: String,
    pub name: String,
    pub role: String,
    pub csrf: String,
}

/// Stores a session under the hash of its cookie; sweeps expired ones.
pub async fn insert_session(
    conn: &mut Conn,
    hash: &str,
    admin_lc: &str,
    csrf: &str,
    now: &str,
    expires: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM admin_sessions WHERE expires <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO admin_sessions (hash, admin_lc, csrf, created, expires) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(admin_lc)
    .bind(csrf)
    .bind(now)
    .bind(expires)
    .execute(conn)
    .await?;
    Ok(())
}

/// The session stored under `hash` if it has not expired at `now`, its expiry moved to
/// `expires` (idle expiry: each request extends it).
pub async fn touch_session(
    conn: &mut Conn,
    hash: &str,
    now: &str,
    expires: &str,
) -> Result<Option<AdminSession>, sqlx::Error> {
    let r = sqlx::query("UPDATE admin_sessions SET expires = $3 WHERE hash = $1 AND expires > $2")
        .bind(hash)
        .bind(now)
        .bind(expires)
        .execute(&mut *conn)
        .await?;
    if r.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query_as::<_, AdminSession>(
        "SELECT s.admin_lc, a.name, a.role, s.csrf FROM admin_sessions s \
         JOIN admins a ON a.name_lc = s.admin_lc WHERE s.hash = $1",
    )
    .bind(hash)
    .fetch_optional(conn)
    .await
}

pub async fn remove_session(conn: &mut Conn, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM admin_sessions WHERE hash = $1")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// One line of the audit log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub admin: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    pub address: Option<String>,
}

pub async fn audit(conn: &mut Conn, row: &AuditRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_audit (at, admin, action, target, detail, address) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.at)
    .bind(&row.admin)
    .bind(&row.action)
    .bind(&row.target)
    .bind(&row.detail)
    .bind(&row.address)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest audit lines, `before` a sequence number when paging back.
pub async fn audit_page(
    conn: &mut Conn,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as::<_, AuditRow>(
        "SELECT seq, at, admin, action, target, detail, address FROM admin_audit \
         WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Which users the console's list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Any,
    Active,
    Disabled,
    /// Locked out of sign-in now (any state).
    Locked,
    PendingDeletion,
}

/// A page of the console's user list.
#[derive(Debug, Clone)]
pub struct UserQuery<'a> {
    /// Prefix of userName, displayName or the first email (ignoring ASCII case), or of
    /// externalId (exact case); empty: every user.
    pub prefix: &'a str,
    pub state: StateFilter,
    /// The page starts after this lower-cased userName.
    pub after: Option<&'a str>,
    pub limit: i64,
    /// The current time, for [`StateFilter::Locked`].
    pub now: &'a str,
}

/// The indexed expressions the prefix search compares, per engine (the migrations index
/// exactly these).
fn search_exprs(engine: Engine) -> [&'static str; 3] {
    match engine {
        Engine::Sqlite => [
            "u.user_name_lc",
            "lower(json_extract(u.resource, '$.displayName'))",
            "lower(json_extract(u.resource, '$.emails[0].value'))",
        ],
        Engine::Postgres => [
            "u.user_name_lc COLLATE \"C\"",
            "lower(u.resource::jsonb ->> 'displayName') COLLATE \"C\"",
            "lower(u.resource::jsonb #>> '{emails,0,value}') COLLATE \"C\"",
        ],
    }
}

/// The upper bound of a prefix range: every string that starts with `p` sorts at or after
/// `p` and before `p` followed by the greatest code point (byte order, which is what SQLite's
/// BINARY and PostgreSQL's "C" collation compare).
fn prefix_end(p: &str) -> String {
    format!("{p}{}", char::MAX)
}

/// The users of one page of the console's list, in userName order.
pub async fn users_page(conn: &mut Conn, q: &UserQuery<'_>) -> Result<Vec<UserRow>, sqlx::Error> {
    let engine = engine_of(conn);
    let collate = match engine {
        Engine::Sqlite => "",
        Engine::Postgres => " COLLATE \"C\"",
    };
    // Only the parameters a query uses are bound (PostgreSQL refuses unused ones), so they
    // are numbered as the text is built.
    let mut binds: Vec<String> = Vec::new();
    let mut param = |v: String| {
        binds.push(v);
        format!("${}", binds.len())
    };
    let mut sql = format!("SELECT {} FROM users u WHERE 1 = 1", qualified_columns());
    if !q.prefix.is_empty() {
        let lower = q.prefix.to_lowercase();
        let (lo, hi) = (param(lower.clone()), param(prefix_end(&lower)));
        let mut alts: Vec<String> = search_exprs(engine)
            .iter()
            .map(|e| format!("({e} >= {lo} AND {e} < {hi})"))
            .collect();
        let (lo, hi) = (param(q.prefix.to_string()), param(prefix_end(q.prefix)));
        let ext = format!("u.external_id{collate}");
        alts.push(format!("({ext} >= {lo} AND {ext} < {hi})"));
        sql.push_str(&format!(" AND ({})", alts.join(" OR ")));
    }
    match q.state {
        StateFilter::Any => {}
        StateFilter::Active => sql.push_str(" AND u.state = 'active'"),
        StateFilter::Disabled => sql.push_str(" AND u.state = 'disabled'"),
        StateFilter::PendingDeletion => sql.push_str(" AND u.state = 'pendingDeletion'"),
        StateFilter::Locked => sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM account_state a WHERE a.user_id = u.id \
             AND a.locked_until > {})",
            param(q.now.to_string())
        )),
    }
    let order = format!("u.user_name_lc{collate}");
    if let Some(after) = q.after {
        sql.push_str(&format!(" AND {order} > {}", param(after.to_string())));
    }
    sql.push_str(&format!(" ORDER BY {order} LIMIT {}", q.limit.max(1)));
    // Audited: the text is built from constants; every value the request gave is a bind.
    let mut query = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = query.bind(b);
    }
    query.fetch_all(conn).await
}

/// Every recorded state change of one user, oldest first (by the user's id: indexed).
pub async fn state_history_of(
    conn: &mut Conn,
    user_id: &str,
) -> Result<Vec<StateChange>, sqlx::Error> {
    sqlx::query_as::<_, StateChange>(
        "SELECT user_id, user_name, external_id, from_state, to_state, at \
         FROM user_state_history WHERE user_id = $1 ORDER BY seq",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// The user's links to linked applications, by application (through the links' primary key,
/// one look-up per application).
pub async fn links_of(conn: &mut Conn, user_id: &str) -> Result<Vec<LinkRow>, sqlx::Error> {
    sqlx::query_as::<_, LinkRow>(
        "SELECT app, user_id, user_name, immutable_id, downstream_id, state, last_error, \
         last_push FROM app_links WHERE app IN (SELECT name FROM apps) AND user_id = $1 \
         ORDER BY app",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// A row of the console's group list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupListRow {
    pub id: String,
    pub display_name: String,
    pub display_name_lc: String,
    pub external_id: Option<String>,
    /// Direct members (users and groups, pending users included).
    pub members: i64,
}

/// One page of groups whose displayName starts with `prefix` (ignoring ASCII case), in name
/// order after `after`; each with its member count (read through the members' primary key).
pub async fn groups_page(
    conn: &mut Conn,
    prefix: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<GroupListRow>, sqlx::Error> {
    let collate = match engine_of(conn) {
        Engine::Sqlite => "",
        Engine::Postgres => " COLLATE \"C\"",
    };
    let name = format!("g.display_name_lc{collate}");
    let lower = prefix.to_lowercase();
    let sql = format!(
        "SELECT g.id, g.display_name, g.display_name_lc, g.external_id, \
         (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS members \
         FROM groups g WHERE {name} >= $1 AND {name} < $2 AND {name} > $3 \
         ORDER BY {name} LIMIT $4"
    );
    // Audited: the text is built from constants; the values are binds.
    sqlx::query_as::<_, GroupListRow>(sqlx::AssertSqlSafe(sql))
        .bind(&lower)
        .bind(prefix_end(&lower))
        .bind(after.unwrap_or(""))
        .bind(limit.max(1))
        .fetch_all(conn)
        .await
}

/// A member on a group's page.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub id: String,
    pub name: String,
    pub name_lc: String,
    pub state: String,
}

/// One page of a group's user members in userName order after `after`: the group's rows of
/// the members' primary key, each user by id, sorted (docs/performance.md has the figure for a
/// 5,000-member group).
pub async fn user_members_page(
    conn: &mut Conn,
    group_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    let collate = match engine_of(conn) {
        Engine::Sqlite => "",
        Engine::Postgres => " COLLATE \"C\"",
    };
    let name = format!("u.user_name_lc{collate}");
    let sql = format!(
        "SELECT u.id, u.user_name AS name, u.user_name_lc AS name_lc, u.state \
         FROM group_members m JOIN users u ON u.id = m.member_id \
         WHERE m.group_id = $1 AND m.member_type = 'User' AND {name} > $2 \
         ORDER BY {name} LIMIT $3"
    );
    // Audited: the text is built from constants; the values are binds.
    sqlx::query_as::<_, MemberRow>(sqlx::AssertSqlSafe(sql))
        .bind(group_id)
        .bind(after.unwrap_or(""))
        .bind(limit.max(1))
        .fetch_all(conn)
        .await
}

/// How many direct members a group has.
pub async fn member_count(conn: &mut Conn, group_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM group_members WHERE group_id = $1")
        .bind(group_id)
        .fetch_one(conn)
        .await
}

/// The groups that are direct members of a group, by name.
pub async fn group_members(conn: &mut Conn, group_id: &str) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as::<_, MemberRow>(
        "SELECT g.id, g.display_name AS name, g.display_name_lc AS name_lc, 'active' AS state \
         FROM group_members m JOIN groups g ON g.id = m.member_id \
         WHERE m.group_id = $1 AND m.member_type = 'Group' ORDER BY g.display_name_lc",
    )
    .bind(group_id)
    .fetch_all(conn)
    .await
}

/// Every token, newest first (never a secret: the table holds hashes).
pub async fn tokens(conn: &mut Conn) -> Result<Vec<crate::store::admin::TokenRow>, sqlx::Error> {
    sqlx::query_as::<_, crate::store::admin::TokenRow>(
        "SELECT id, hash, scopes, owner, created, expires, revoked FROM tokens \
         ORDER BY created DESC, id",
    )
    .fetch_all(conn)
    .await
}

/// One page of the users pending deletion, longest pending first, after the (pending since,
/// id) of the last row of the page before.
pub async fn pending_page(
    conn: &mut Conn,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let (since, id) = after.unwrap_or(("", ""));
    let sql = format!(
        "SELECT {} FROM users u WHERE u.state = 'pendingDeletion' \
         AND u.pending_since IS NOT NULL AND (u.pending_since > $1 \
              OR (u.pending_since = $1 AND u.id > $2)) \
         ORDER BY u.pending_since, u.id LIMIT $3",
        qualified_columns()
    );
    // Audited: the text is built from constants; the values are binds.
    sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
        .bind(since)
        .bind(id)
        .bind(limit.max(1))
        .fetch_all(conn)
        .await
}

/// The users with these ids, by userName (for a bulk action's confirmation).
pub async fn users_by_ids(conn: &mut Conn, ids: &[String]) -> Result<Vec<UserRow>, sqlx::Error> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = crate::store::users::get(conn, id).await? {
            rows.push(r);
        }
    }
    rows.sort_by(|a, b| a.user_name_lc.cmp(&b.user_name_lc));
    Ok(rows)
}

/// A stored run report.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub seq: i64,
    pub received: String,
    pub instance: String,
    pub run_id: String,
    pub started: String,
    pub ended: String,
    pub mode: String,
    pub dry_run: i64,
    pub exit_code: i64,
    pub reason: Option<String>,
    pub counts: String,
    pub failures: String,
    pub failed_count: i64,
    pub expected_interval_seconds: Option<i64>,
}

macro_rules! run_columns {
    () => {
        "seq, received, instance, run_id, started, ended, mode, dry_run, exit_code, reason, \
         counts, failures, failed_count, expected_interval_seconds"
    };
}

pub async fn insert_run(conn: &mut Conn, r: &RunRow) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO sync_runs (received, instance, run_id, started, ended, mode, dry_run, \
         exit_code, reason, counts, failures, failed_count, expected_interval_seconds) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING seq",
    )
    .bind(&r.received)
    .bind(&r.instance)
    .bind(&r.run_id)
    .bind(&r.started)
    .bind(&r.ended)
    .bind(&r.mode)
    .bind(r.dry_run)
    .bind(r.exit_code)
    .bind(&r.reason)
    .bind(&r.counts)
    .bind(&r.failures)
    .bind(r.failed_count)
    .bind(r.expected_interval_seconds)
    .fetch_one(conn)
    .await
}

/// The newest runs, before sequence number `before` when paging back.
pub async fn runs_page(
    conn: &mut Conn,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<RunRow>, sqlx::Error> {
    sqlx::query_as::<_, RunRow>(concat!(
        "SELECT ",
        run_columns!(),
        " FROM sync_runs WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
    ))
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit.max(1))
    .fetch_all(conn)
    .await
}

/// Each instance's newest run.
pub async fn last_runs(conn: &mut Conn) -> Result<Vec<RunRow>, sqlx::Error> {
    sqlx::query_as::<_, RunRow>(concat!(
        "SELECT ",
        run_columns!(),
        " FROM sync_runs WHERE seq IN (SELECT max(seq) FROM sync_runs GROUP BY instance) \
         ORDER BY instance"
    ))
    .fetch_all(conn)
    .await
}

/// [`USER_COLUMNS`] with the `u.` table prefix.
fn qualified_columns() -> String {
    USER_COLUMNS
        .split(',')
        .map(|c| format!("u.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_hold_every_longer_string() {
        let end = prefix_end("ab");
        for s in ["ab", "abc", "ab\u{10FFFE}", "ab日本"] {
            assert!(s >= "ab" && s < end.as_str(), "{s}");
        }
        for s in ["aa", "ac", "a", "b"] {
            assert!(!(s >= "ab" && s < end.as_str()), "{s}");
        }
    }

    #[test]
    fn columns_are_qualified() {
        let q = qualified_columns();
        assert!(q.starts_with("u.id, u.user_name,"), "{q}");
        assert!(!q.contains("  "), "{q}");
    }
}
