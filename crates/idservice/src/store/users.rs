//! Rows of the `users` table and the user side of memberships.

use std::collections::HashSet;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, FromRow, Row};

use super::Conn;

/// One stored user. `resource` is the SCIM JSON without the parts kept in columns or
/// computed on read (id, meta, groups, state).
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub user_name: String,
    pub user_name_lc: String,
    pub external_id: Option<String>,
    pub active: bool,
    pub state: String,
    pub pending_since: Option<String>,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
    pub resource: String,
}

/// `active` is an integer column on both engines (0 or 1).
impl FromRow<'_, AnyRow> for UserRow {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(UserRow {
            id: r.try_get("id")?,
            user_name: r.try_get("user_name")?,
            user_name_lc: r.try_get("user_name_lc")?,
            external_id: r.try_get("external_id")?,
            active: r.try_get::<i64, _>("active")? != 0,
            state: r.try_get("state")?,
            pending_since: r.try_get("pending_since")?,
            created: r.try_get("created")?,
            last_modified: r.try_get("last_modified")?,
            version: r.try_get("version")?,
            resource: r.try_get("resource")?,
        })
    }
}

/// The columns selected for a [`UserRow`], in order (a macro, so that queries can `concat!` it).
macro_rules! user_columns {
    () => {
        "id, user_name, user_name_lc, external_id, active, state, pending_since, created, \
         last_modified, version, resource"
    };
}

/// The columns selected for a [`UserRow`], in order.
pub const USER_COLUMNS: &str = user_columns!();

pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Users holding either key (lower-cased userName, or externalId): the uniqueness candidates.
pub async fn find_by_keys(
    conn: &mut Conn,
    user_name_lc: &str,
    external_id: Option<&str>,
) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE user_name_lc = $1 OR external_id = $2"
    ))
    .bind(user_name_lc)
    .bind(external_id)
    .fetch_all(conn)
    .await
}

/// Whether a user other than `except_id` has `key` as its externalId or its id.
pub async fn holds_key(conn: &mut Conn, key: &str, except_id: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE (external_id = $1 OR id = $1) \
         AND id <> $2) THEN 1 ELSE 0 END",
    )
    .bind(key)
    .bind(except_id)
    .fetch_one(conn)
    .await?;
    Ok(n != 0)
}

/// Binds the columns of `row` as `$1`..`$11`, in [`USER_COLUMNS`] order.
fn bind_row<'q>(
    query: Query<'q, Any, AnyArguments>,
    row: &'q UserRow,
) -> Query<'q, Any, AnyArguments> {
    query
        .bind(&row.id)
        .bind(&row.user_name)
        .bind(&row.user_name_lc)
        .bind(&row.external_id)
        .bind(i64::from(row.active))
        .bind(&row.state)
        .bind(&row.pending_since)
        .bind(&row.created)
        .bind(&row.last_modified)
        .bind(row.version)
        .bind(&row.resource)
}

pub async fn insert(conn: &mut Conn, row: &UserRow) -> Result<(), sqlx::Error> {
    let sql = concat!(
        "INSERT INTO users (",
        user_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    );
    bind_row(sqlx::query(sql), row).execute(conn).await?;
    Ok(())
}

/// The number of [`USER_COLUMNS`] (the parameters [`bind_row`] binds).
const USER_COLUMN_COUNT: usize = 11;

/// Rows a multi-row INSERT carries at most ([`USER_COLUMN_COUNT`] parameters each: well under
/// SQLite's 32,766 and PostgreSQL's 65,535 bound parameters).
pub const INSERT_CHUNK: usize = 200;

/// Inserts many new rows with one statement per [`INSERT_CHUNK`] rows (Bulk's fast path: the
/// per-statement hand-off to the database, not the rows, is what a user insert costs most).
pub async fn insert_many(conn: &mut Conn, rows: &[&UserRow]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|r| super::in_list(r * USER_COLUMN_COUNT + 1, USER_COLUMN_COUNT))
            .collect();
        let sql = format!(
            concat!("INSERT INTO users (", user_columns!(), ") VALUES {}"),
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            q = bind_row(q, row);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Which of `user_names_lc` (lower-cased userNames) and `external_ids` a stored user (any
/// state) already holds: (the userNames taken, the externalIds taken).
pub async fn taken_keys(
    conn: &mut Conn,
    user_names_lc: &[&str],
    external_ids: &[&str],
) -> Result<(HashSet<String>, HashSet<String>), sqlx::Error> {
    let names = super::found_among(
        conn,
        |list| format!("SELECT user_name_lc FROM users WHERE user_name_lc IN {list}"),
        user_names_lc,
    )
    .await?;
    let exts = super::found_among(
        conn,
        |list| format!("SELECT external_id FROM users WHERE external_id IN {list}"),
        external_ids,
    )
    .await?;
    Ok((names, exts))
}

/// Overwrites every column of an existing row (by id).
pub async fn update(conn: &mut Conn, row: &UserRow) -> Result<(), sqlx::Error> {
    let sql = "UPDATE users SET user_name = $2, user_name_lc = $3, external_id = $4, \
        active = $5, state = $6, pending_since = $7, created = $8, last_modified = $9, \
        version = $10, resource = $11 WHERE id = $1";
    bind_row(sqlx::query(sql), row).execute(conn).await?;
    Ok(())
}

/// Stores a new password hash for a user (the password itself is never stored).
pub async fn set_password_hash(conn: &mut Conn, id: &str, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a user for good, with its memberships.
pub async fn purge(conn: &mut Conn, id: &str) -> Result<(), sqlx::Error> {
    super::groups::leave_all(conn, id).await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The groups a user is a direct member of: (group id, displayName).
pub async fn groups_of(
    conn: &mut Conn,
    user_id: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT g.id, g.display_name FROM group_members m JOIN groups g ON g.id = m.group_id \
         WHERE m.member_id = $1 ORDER BY g.display_name_lc",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect()
}

/// The groups each of `user_ids` is a direct member of, (group id, displayName) in
/// displayName order: one query per 500 users instead of one per user (a list page).
pub async fn groups_of_many(
    conn: &mut Conn,
    user_ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<(String, String)>>, sqlx::Error> {
    let mut out: std::collections::HashMap<String, Vec<(String, String)>> = Default::default();
    for chunk in user_ids.chunks(super::groups::MEMBER_CHUNK) {
        let sql = format!(
            "SELECT m.member_id, g.id, g.display_name FROM group_members m \
             JOIN groups g ON g.id = m.group_id WHERE m.member_id IN {} \
             ORDER BY m.member_id, g.display_name_lc",
            super::in_list(1, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.entry(r.try_get::<String, _>(0)?)
                .or_default()
                .push((r.try_get(1)?, r.try_get(2)?));
        }
    }
    Ok(out)
}

/// Pending users, oldest first; with `before`, only those pending since before that instant.
pub async fn pending(conn: &mut Conn, before: Option<&str>) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE state = 'pendingDeletion' AND ($1 IS NULL OR pending_since < $1) \
             ORDER BY pending_since, id"
    ))
    .bind(before)
    .fetch_all(conn)
    .await
}

/// Finds a user by lower-cased userName, any state.
pub async fn by_user_name(
    conn: &mut Conn,
    user_name_lc: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE user_name_lc = $1"
    ))
    .bind(user_name_lc)
    .fetch_optional(conn)
    .await
}

/// One change of a user's state, as the database's triggers recorded it
/// (`user_state_history`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateChange {
    pub user_id: String,
    pub user_name: String,
    pub external_id: Option<String>,
    /// `None`: the user was created in `to_state`.
    pub from_state: Option<String>,
    /// `active`, `disabled`, `pendingDeletion`, or `purged`.
    pub to_state: String,
    pub at: String,
}

/// The state changes of every user, or of the users whose lower-cased userName is
/// `user_name_lc`, in the order they happened.
pub async fn state_history(
    conn: &mut Conn,
    user_name_lc: Option<&str>,
) -> Result<Vec<StateChange>, sqlx::Error> {
    sqlx::query_as::<_, StateChange>(
        "SELECT user_id, user_name, external_id, from_state, to_state, at \
         FROM user_state_history WHERE ($1 IS NULL OR lower(user_name) = $1) ORDER BY seq",
    )
    .bind(user_name_lc)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_count_is_the_columns() {
        assert_eq!(USER_COLUMNS.split(',').count(), USER_COLUMN_COUNT);
    }
}
