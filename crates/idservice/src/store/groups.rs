//! Rows of the `groups` and `group_members` tables.

use std::collections::HashMap;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::Conn;

/// One stored group. `resource` is the SCIM JSON without id, meta and members.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRow {
    pub id: String,
    pub display_name: String,
    pub display_name_lc: String,
    pub external_id: Option<String>,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
    pub resource: String,
}

/// The columns selected for a [`GroupRow`], in order (a macro, so that queries can `concat!`
/// it).
macro_rules! group_columns {
    () => {
        "id, display_name, display_name_lc, external_id, created, last_modified, version, resource"
    };
}

/// The columns selected for a [`GroupRow`], in order.
pub const GROUP_COLUMNS: &str = group_columns!();

/// One membership as shown in `members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub value: String,
    pub ty: String,
    pub display: Option<String>,
}

pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<GroupRow>, sqlx::Error> {
    sqlx::query_as::<_, GroupRow>(concat!(
        "SELECT ",
        group_columns!(),
        " FROM groups WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Groups holding either key (lower-cased displayName, or externalId).
pub async fn find_by_keys(
    conn: &mut Conn,
    display_name_lc: &str,
    external_id: Option<&str>,
) -> Result<Vec<GroupRow>, sqlx::Error> {
    sqlx::query_as::<_, GroupRow>(concat!(
        "SELECT ",
        group_columns!(),
        " FROM groups WHERE display_name_lc = $1 OR external_id = $2"
    ))
    .bind(display_name_lc)
    .bind(external_id)
    .fetch_all(conn)
    .await
}

/// Binds the columns of `row` as `$1`..`$8`, in [`GROUP_COLUMNS`] order.
fn bind_row<'q>(
    query: Query<'q, Any, AnyArguments>,
    row: &'q GroupRow,
) -> Query<'q, Any, AnyArguments> {
    query
        .bind(&row.id)
        .bind(&row.display_name)
        .bind(&row.display_name_lc)
        .bind(&row.external_id)
        .bind(&row.created)
        .bind(&row.last_modified)
        .bind(row.version)
        .bind(&row.resource)
}

pub async fn insert(conn: &mut Conn, row: &GroupRow) -> Result<(), sqlx::Error> {
    let sql = concat!(
        "INSERT INTO groups (",
        group_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    );
    bind_row(sqlx::query(sql), row).execute(conn).await?;
    Ok(())
}

pub async fn update(conn: &mut Conn, row: &GroupRow) -> Result<(), sqlx::Error> {
    let sql = "UPDATE groups SET display_name = $2, display_name_lc = $3, external_id = $4, \
        created = $5, last_modified = $6, version = $7, resource = $8 WHERE id = $1";
    bind_row(sqlx::query(sql), row).execute(conn).await?;
    Ok(())
}

/// Removes `member_id` (a user or a group) from every group it is a direct member of.
pub async fn leave_all(conn: &mut Conn, member_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM group_members WHERE member_id = $1")
        .bind(member_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a group, its own membership rows (cascade) and its membership in other groups.
pub async fn delete(conn: &mut Conn, id: &str) -> Result<(), sqlx::Error> {
    leave_all(conn, id).await?;
    sqlx::query("DELETE FROM groups WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Members of a group. With `include_pending = false`, users pending deletion are left out.
pub async fn members(
    conn: &mut Conn,
    group_id: &str,
    include_pending: bool,
) -> Result<Vec<Member>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT m.member_id, m.member_type, \
           COALESCE(json_extract(u.resource, '$.displayName'), u.user_name, g.display_name) \
         FROM group_members m \
         LEFT JOIN users u ON m.member_type = 'User' AND u.id = m.member_id \
         LEFT JOIN groups g ON m.member_type = 'Group' AND g.id = m.member_id \
         WHERE m.group_id = $1 AND ($2 OR u.state IS NULL OR u.state <> 'pendingDeletion') \
         ORDER BY m.member_id",
    )
    .bind(group_id)
    .bind(include_pending)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Member {
                value: r.try_get(0)?,
                ty: r.try_get(1)?,
                display: r.try_get(2)?,
            })
        })
        .collect()
}

/// Ids per multi-row statement. A group of 5,000 members was 10,000 statements (a kind
/// lookup and an insert per member), the bulk of an initial sync's group creates; SQLite
/// allows 32,766 bound values.
pub(crate) const MEMBER_CHUNK: usize = 500;

/// Adds memberships (ignoring ones that already exist).
pub async fn add_members(
    conn: &mut Conn,
    group_id: &str,
    members: &[(String, String)],
) -> Result<(), sqlx::Error> {
    for chunk in members.chunks(MEMBER_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO group_members (group_id, member_id, member_type) VALUES {} \
             ON CONFLICT (group_id, member_id) DO NOTHING",
            rows.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(group_id);
        for (id, ty) in chunk {
            q = q.bind(id).bind(ty);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn remove_members(
    conn: &mut Conn,
    group_id: &str,
    ids: &[String],
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(MEMBER_CHUNK) {
        let sql = format!(
            "DELETE FROM group_members WHERE group_id = $1 AND member_id IN {}",
            super::in_list(2, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(group_id);
        for id in chunk {
            q = q.bind(id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Member id → `User` or `Group`.
pub type MemberKinds = HashMap<String, String>;

/// For each id, whether it names a user (`User`) or a group (`Group`); unknown ids are absent.
pub async fn member_kinds(conn: &mut Conn, ids: &[String]) -> Result<MemberKinds, sqlx::Error> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(MEMBER_CHUNK) {
        let list = super::in_list(1, chunk.len());
        let sql = format!(
            "SELECT id, 'User' AS kind FROM users WHERE id IN {list} \
             UNION ALL SELECT id, 'Group' AS kind FROM groups WHERE id IN {list}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?);
        }
    }
    Ok(out)
}
