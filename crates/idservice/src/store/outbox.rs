//! The durable outbox (`mail_outbox`): one row per recipient. A row is `queued` until it is
//! `sent`, or `failed` for good (a permanent SMTP rejection, or too many attempts). The body
//! is cleared when the row leaves `queued`, so a reset link does not outlive its delivery.
//!
//! Senders (one per node) *claim* due rows for a lease (`claimed_until`) before sending: on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so two nodes never claim the same row; a row
//! whose sender died is claimed again once its lease has ended.

use super::{Conn, Engine, engine_of};
use crate::domain::now;

/// A row waiting for delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pending {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
}

pub async fn insert(
    conn: &mut Conn,
    kind: &str,
    recipient: &str,
    subject: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    let at = now();
    sqlx::query(
        "INSERT INTO mail_outbox (kind, recipient, subject, body, created, status, next_attempt) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $5)",
    )
    .bind(kind)
    .bind(recipient)
    .bind(subject)
    .bind(body)
    .bind(&at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims up to `limit` queued rows due at `at` (oldest first) until `lease_until`, and returns
/// them. Rows another sender holds an unexpired claim on are left alone. Run outside a
/// transaction (each claim is its own statement, committed at once).
pub async fn claim(
    conn: &mut Conn,
    at: &str,
    lease_until: &str,
    limit: i64,
) -> Result<Vec<Pending>, sqlx::Error> {
    let lock = match engine_of(conn) {
        Engine::Postgres => " FOR UPDATE SKIP LOCKED",
        Engine::Sqlite => "",
    };
    let sql = format!(
        "UPDATE mail_outbox SET claimed_until = $2 WHERE id IN (SELECT id FROM mail_outbox \
         WHERE status = 'queued' AND next_attempt <= $1 \
         AND (claimed_until IS NULL OR claimed_until <= $1) ORDER BY id LIMIT $3{lock}) \
         RETURNING id, kind, recipient, subject, body, attempts"
    );
    let mut rows = sqlx::query_as::<_, Pending>(sqlx::AssertSqlSafe(sql))
        .bind(at)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

pub async fn mark_sent(conn: &mut Conn, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET status = 'sent', attempts = attempts + 1, body = '', claimed_until = NULL, \
         done = $2, last_error = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_failed(conn: &mut Conn, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET status = 'failed', attempts = attempts + 1, body = '', claimed_until = NULL, \
         done = $2, last_error = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(now())
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn reschedule(
    conn: &mut Conn,
    id: i64,
    next_attempt: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt = $2, last_error = $3, \
         claimed_until = NULL \
         WHERE id = $1",
    )
    .bind(id)
    .bind(next_attempt)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts of rows by status (for `idservice mail status` and tests).
pub async fn counts(conn: &mut Conn) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, COUNT(*) FROM mail_outbox GROUP BY status ORDER BY status")
        .fetch_all(conn)
        .await
}

/// A row as the console lists it (never the body).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub created: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt: String,
    pub last_error: Option<String>,
    pub done: Option<String>,
}

/// The newest rows with this status (`queued` or `failed`), at most `limit`.
pub async fn listed(conn: &mut Conn, status: &str, limit: i64) -> Result<Vec<Listed>, sqlx::Error> {
    sqlx::query_as::<_, Listed>(
        "SELECT id, kind, recipient, subject, created, status, attempts, next_attempt, \
         last_error, done FROM mail_outbox WHERE status = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(status)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Makes a queued row due now (a retry before its backoff ends); false when the row is not
/// queued (sent or failed meanwhile).
pub async fn due_now(conn: &mut Conn, id: i64, at: &str) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("UPDATE mail_outbox SET next_attempt = $2 WHERE id = $1 AND status = 'queued'")
            .bind(id)
            .bind(at)
            .execute(conn)
            .await?;
    Ok(r.rows_affected() > 0)
}
