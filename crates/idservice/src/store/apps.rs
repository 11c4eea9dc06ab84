//! Rows of the linked-application tables: `apps`, `app_links` and the `outbound_events` queue
//! (filled by triggers on `users` and `group_members`, see the linked_apps migration).
//!
//! The queue is read in [`QueuePos`] order: (writing transaction, sequence number). On SQLite
//! the transaction part is always 0 (one writer: numbers become visible in order). On
//! PostgreSQL it is the writer's transaction id, and a read stops below the oldest transaction
//! still running, so a row can never appear behind a position already read (see the
//! queue_order migration): writers on several nodes need no common lock.

use std::collections::HashSet;

use super::{Conn, Engine, engine_of};

/// A registered downstream application. The token is not here: it is read from `token_file`
/// when needed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppRow {
    pub name: String,
    pub url: String,
    pub token_file: String,
    pub licence: Option<String>,
    /// Comma-separated lower-cased group displayNames; `None`: every user is linked.
    pub groups: Option<String>,
    pub purge_policy: String,
    pub rate_per_sec: Option<f64>,
    pub created: String,
    /// The position in the queue this application has processed: transaction part.
    pub cursor_tx: i64,
    /// The position in the queue this application has processed: sequence part.
    pub cursor: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

impl AppRow {
    /// The last queue position this application has processed.
    pub fn position(&self) -> QueuePos {
        QueuePos {
            tx: self.cursor_tx,
            seq: self.cursor,
        }
    }

    /// The lower-cased group names of the scope; empty: every user.
    pub fn group_list(&self) -> Vec<String> {
        self.groups
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// The columns of an [`AppRow`], in order (a macro, so that queries can `concat!` it).
macro_rules! app_columns {
    () => {
        "name, url, token_file, licence, groups, purge_policy, rate_per_sec, created, cursor_tx, \
         cursor, last_error, last_error_at"
    };
}

/// The link of one user to one application.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkRow {
    pub app: String,
    pub user_id: String,
    pub user_name: String,
    pub immutable_id: String,
    pub downstream_id: Option<String>,
    pub state: String,
    pub last_error: Option<String>,
    pub last_push: Option<String>,
}

/// The columns of a [`LinkRow`], in order.
macro_rules! link_columns {
    () => {
        "app, user_id, user_name, immutable_id, downstream_id, state, last_error, last_push"
    };
}

/// A position in the queue: rows are read in (`tx`, `seq`) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct QueuePos {
    /// The writing transaction (PostgreSQL); 0 on SQLite.
    pub tx: i64,
    pub seq: i64,
}

/// One queued change: the user it concerns (the worker reads the user's current row).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub tx: i64,
    pub seq: i64,
    pub user_id: String,
}

impl EventRow {
    /// This row's place in the queue.
    pub fn position(&self) -> QueuePos {
        QueuePos {
            tx: self.tx,
            seq: self.seq,
        }
    }
}

/// The SQL for the first transaction part a reader may not read yet: PostgreSQL's oldest
/// running transaction (rows of a transaction below it are all committed or gone); on SQLite
/// there is no limit.
fn horizon(conn: &Conn) -> &'static str {
    match engine_of(conn) {
        Engine::Postgres => "pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        Engine::Sqlite => "9223372036854775807",
    }
}

/// Where a new application starts reading: after every row whose change the backfill, run
/// in the same transaction, already sees. SQLite: the end of the queue. PostgreSQL: before
/// the oldest running transaction, whose changes the backfill may miss (reading a change twice
/// is harmless: the worker pushes the user's current state).
async fn start_position(conn: &mut Conn) -> Result<QueuePos, sqlx::Error> {
    let (tx, seq): (i64, i64) = match engine_of(conn) {
        Engine::Postgres => {
            sqlx::query_as(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, 0::bigint",
            )
            .fetch_one(&mut *conn)
            .await?
        }
        Engine::Sqlite => {
            sqlx::query_as("SELECT 0, COALESCE(MAX(seq), 0) FROM outbound_events")
                .fetch_one(&mut *conn)
                .await?
        }
    };
    Ok(QueuePos { tx, seq })
}

/// Registers an application whose cursor starts at the current end of the queue, and queues
/// every existing user for it alone (the backfill). Returns false when the name is taken.
pub async fn insert_app(conn: &mut Conn, app: &AppRow) -> Result<bool, sqlx::Error> {
    let start = start_position(conn).await?;
    let r = sqlx::query(
        "INSERT INTO apps (name, url, token_file, licence, groups, purge_policy, rate_per_sec, \
         created, cursor_tx, cursor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&app.name)
    .bind(&app.url)
    .bind(&app.token_file)
    .bind(&app.licence)
    .bind(&app.groups)
    .bind(&app.purge_policy)
    .bind(app.rate_per_sec)
    .bind(&app.created)
    .bind(start.tx)
    .bind(start.seq)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO outbound_events (user_id, app) SELECT id, $1 FROM users ORDER BY created, id",
    )
    .bind(&app.name)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Removes an application and its link records (downstream accounts are left as they are).
pub async fn remove_app(conn: &mut Conn, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM app_links WHERE app = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let r = sqlx::query("DELETE FROM apps WHERE name = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn list_apps(conn: &mut Conn) -> Result<Vec<AppRow>, sqlx::Error> {
    sqlx::query_as::<_, AppRow>(concat!(
        "SELECT ",
        app_columns!(),
        " FROM apps ORDER BY name"
    ))
    .fetch_all(conn)
    .await
}

pub async fn get_app(conn: &mut Conn, name: &str) -> Result<Option<AppRow>, sqlx::Error> {
    sqlx::query_as::<_, AppRow>(concat!(
        "SELECT ",
        app_columns!(),
        " FROM apps WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
}

/// The next queued changes for `app` after position `after`, oldest first, as far as they
/// are final (see the module documentation).
pub async fn next_events(
    conn: &mut Conn,
    app: &str,
    after: QueuePos,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    let sql = format!(
        "SELECT tx, seq, user_id FROM outbound_events WHERE (tx, seq) > ($1, $2) \
         AND (app IS NULL OR app = $3) AND tx < {} ORDER BY tx, seq LIMIT $4",
        horizon(conn)
    );
    sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql))
        .bind(after.tx)
        .bind(after.seq)
        .bind(app)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// How many queued changes `app` has not processed yet (including rows of transactions
/// still running).
pub async fn backlog(conn: &mut Conn, app: &str, after: QueuePos) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbound_events WHERE (tx, seq) > ($1, $2) \
         AND (app IS NULL OR app = $3)",
    )
    .bind(after.tx)
    .bind(after.seq)
    .bind(app)
    .fetch_one(conn)
    .await
}

/// Moves the application's cursor to `to` (never backwards) and clears its held-queue error.
pub async fn advance(conn: &mut Conn, app: &str, to: QueuePos) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE apps SET \
         cursor_tx = CASE WHEN (cursor_tx, cursor) < ($1, $2) THEN $1 ELSE cursor_tx END, \
         cursor = CASE WHEN (cursor_tx, cursor) < ($1, $2) THEN $2 ELSE cursor END, \
         last_error = NULL, last_error_at = NULL WHERE name = $3",
    )
    .bind(to.tx)
    .bind(to.seq)
    .bind(app)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records why the application's queue is held.
pub async fn set_app_error(
    conn: &mut Conn,
    app: &str,
    error: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET last_error = $1, last_error_at = $2 WHERE name = $3")
        .bind(error)
        .bind(at)
        .bind(app)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes or renews the application's drain lease for `owner` until `until`: granted when no
/// other node holds an unexpired one at `now`. Returns whether `owner` holds it now. Run it
/// outside a transaction or in the transaction whose work the lease covers.
pub async fn take_lease(
    conn: &mut Conn,
    app: &str,
    owner: &str,
    now: &str,
    until: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE apps SET lease_owner = $2, lease_until = $4 WHERE name = $1 \
         AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until IS NULL OR lease_until <= $3)",
    )
    .bind(app)
    .bind(owner)
    .bind(now)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Gives the lease up (the drain is over), if `owner` still holds it.
pub async fn release_lease(conn: &mut Conn, app: &str, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE apps SET lease_owner = NULL, lease_until = NULL \
         WHERE name = $1 AND lease_owner = $2",
    )
    .bind(app)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(())
}

/// The queue position every application has processed; `None` when there is no
/// application (nothing will ever read the queue; a new application backfills instead).
async fn processed_by_all(conn: &mut Conn) -> Result<Option<QueuePos>, sqlx::Error> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT cursor_tx, cursor FROM apps ORDER BY cursor_tx, cursor LIMIT 1")
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(tx, seq)| QueuePos { tx, seq }))
}

/// Whether [`trim_events`] has anything to delete (a read, so that an idle worker never
/// takes the write lock).
pub async fn trimmable(conn: &mut Conn) -> Result<bool, sqlx::Error> {
    let n: i64 = match processed_by_all(conn).await? {
        Some(upto) => sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM outbound_events WHERE (tx, seq) <= ($1, $2)) \
             THEN 1 ELSE 0 END",
        )
        .bind(upto.tx)
        .bind(upto.seq)
        .fetch_one(conn)
        .await?,
        None => {
            sqlx::query_scalar(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM outbound_events) THEN 1 ELSE 0 END",
            )
            .fetch_one(conn)
            .await?
        }
    };
    Ok(n != 0)
}

/// Deletes the queue rows every application has processed (all of them when there is no
/// application).
pub async fn trim_events(conn: &mut Conn) -> Result<u64, sqlx::Error> {
    let r = match processed_by_all(conn).await? {
        Some(upto) => {
            sqlx::query("DELETE FROM outbound_events WHERE (tx, seq) <= ($1, $2)")
                .bind(upto.tx)
                .bind(upto.seq)
                .execute(conn)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM outbound_events")
                .execute(conn)
                .await?
        }
    };
    Ok(r.rows_affected())
}

pub async fn get_link(
    conn: &mut Conn,
    app: &str,
    user_id: &str,
) -> Result<Option<LinkRow>, sqlx::Error> {
    sqlx::query_as::<_, LinkRow>(concat!(
        "SELECT ",
        link_columns!(),
        " FROM app_links WHERE app = $1 AND user_id = $2"
    ))
    .bind(app)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// The link of another existing user (pending users included: they may be restored) that
/// holds downstream account `downstream_id` of `app`. Links left by purged users do not
/// count: a re-created user with the same immutable id takes their account over.
pub async fn account_holder(
    conn: &mut Conn,
    app: &str,
    downstream_id: &str,
    user_id: &str,
) -> Result<Option<LinkRow>, sqlx::Error> {
    sqlx::query_as::<_, LinkRow>(concat!(
        "SELECT ",
        link_columns!(),
        " FROM app_links WHERE app = $1 AND downstream_id = $2 AND user_id <> $3 \
         AND EXISTS (SELECT 1 FROM users u WHERE u.id = app_links.user_id)"
    ))
    .bind(app)
    .bind(downstream_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Drops the links of purged users that still hold downstream account `downstream_id` of
/// `app` (before another user's link takes it over).
pub async fn release_account(
    conn: &mut Conn,
    app: &str,
    downstream_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM app_links WHERE app = $1 AND downstream_id = $2 \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = app_links.user_id)",
    )
    .bind(app)
    .bind(downstream_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Another existing user's link (in any application) whose immutable id is `immutable_id`.
pub async fn immutable_holder(
    conn: &mut Conn,
    immutable_id: &str,
    user_id: &str,
) -> Result<Option<LinkRow>, sqlx::Error> {
    sqlx::query_as::<_, LinkRow>(concat!(
        "SELECT ",
        link_columns!(),
        " FROM app_links WHERE immutable_id = $1 AND user_id <> $2 \
         AND EXISTS (SELECT 1 FROM users u WHERE u.id = app_links.user_id) LIMIT 1"
    ))
    .bind(immutable_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Which of `immutable_ids` a link of an existing user already holds (the many-users form of
/// [`immutable_holder`], for ids no new user can share with its own links).
pub async fn held_immutable_ids(
    conn: &mut Conn,
    immutable_ids: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    super::found_among(
        conn,
        |list| {
            format!(
                "SELECT immutable_id FROM app_links WHERE immutable_id IN {list} \
                 AND EXISTS (SELECT 1 FROM users u WHERE u.id = app_links.user_id)"
            )
        },
        immutable_ids,
    )
    .await
}

/// Links of one application (or every one), by application then userName.
pub async fn list_links(conn: &mut Conn, app: Option<&str>) -> Result<Vec<LinkRow>, sqlx::Error> {
    sqlx::query_as::<_, LinkRow>(concat!(
        "SELECT ",
        link_columns!(),
        " FROM app_links WHERE $1 IS NULL OR app = $1 ORDER BY app, lower(user_name), user_id"
    ))
    .bind(app)
    .fetch_all(conn)
    .await
}

pub async fn upsert_link(conn: &mut Conn, link: &LinkRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO app_links (app, user_id, user_name, immutable_id, downstream_id, state, \
         last_error, last_push) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (app, user_id) DO UPDATE SET user_name = excluded.user_name, \
         immutable_id = excluded.immutable_id, downstream_id = excluded.downstream_id, \
         state = excluded.state, last_error = excluded.last_error, last_push = excluded.last_push",
    )
    .bind(&link.app)
    .bind(&link.user_id)
    .bind(&link.user_name)
    .bind(&link.immutable_id)
    .bind(&link.downstream_id)
    .bind(&link.state)
    .bind(&link.last_error)
    .bind(&link.last_push)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_link(conn: &mut Conn, app: &str, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM app_links WHERE app = $1 AND user_id = $2")
        .bind(app)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// After an administrator deleted downstream account `downstream_id` for good: links that held
/// it are dropped, and every failed link of the application is queued again (for it alone) so
/// that the worker retries it now that the blocking account is gone.
pub async fn after_account_purged(
    conn: &mut Conn,
    app: &str,
    downstream_id: &str,
) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM app_links WHERE app = $1 AND downstream_id = $2")
        .bind(app)
        .bind(downstream_id)
        .execute(&mut *conn)
        .await?;
    let r = sqlx::query(
        "INSERT INTO outbound_events (user_id, app) SELECT user_id, app FROM app_links \
         WHERE app = $1 AND state = 'failed' ORDER BY user_id",
    )
    .bind(app)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Whether the user is a direct member of one of the groups (lower-cased displayNames).
pub async fn in_groups(
    conn: &mut Conn,
    user_id: &str,
    groups: &[String],
) -> Result<bool, sqlx::Error> {
    let Ok(names) = serde_json::to_string(groups) else {
        return Ok(false);
    };
    let n: i64 = sqlx::query_scalar(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM group_members m JOIN groups g \
         ON g.id = m.group_id WHERE m.member_id = $1 \
         AND g.display_name_lc IN (SELECT value FROM json_each($2))) THEN 1 ELSE 0 END",
    )
    .bind(user_id)
    .bind(names)
    .fetch_one(conn)
    .await?;
    Ok(n != 0)
}
