//! Sign-in state and reset links in their own tables (`account_state`, `reset_tokens`), never
//! as updates of the `users` row: consecutive failures, lockout, the password's age, and the
//! hashes of single-use reset links; and the state the sign-in pages share between nodes:
//! signed-in sessions (`web_sessions`) and request counters (`rate_limits`).

use sha2::{Digest, Sha256};

use crate::store::Conn;

/// A user's sign-in state (all defaults when the user has no row yet).
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct AccountState {
    pub failures: i64,
    pub locked_until: Option<String>,
    pub password_set_at: Option<String>,
    pub expiry_notified_at: Option<String>,
}

pub async fn get(conn: &mut Conn, user_id: &str) -> Result<AccountState, sqlx::Error> {
    Ok(sqlx::query_as::<_, AccountState>(
        "SELECT failures, locked_until, password_set_at, expiry_notified_at \
         FROM account_state WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?
    .unwrap_or_default())
}

/// Records that the user's password was (re)set at `at`: its age starts again and a new
/// expiry notice may be sent when it expires.
pub async fn password_set(conn: &mut Conn, user_id: &str, at: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_state (user_id, password_set_at) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET password_set_at = $2, expiry_notified_at = NULL",
    )
    .bind(user_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts one failed sign-in. When the count reaches `max_failures` the account is locked
/// until `lock_until` and the count starts again; returns whether this failure locked it.
pub async fn record_failure(
    conn: &mut Conn,
    user_id: &str,
    max_failures: u32,
    lock_until: &str,
) -> Result<bool, sqlx::Error> {
    let failures: i64 = sqlx::query_scalar(
        "INSERT INTO account_state (user_id, failures) VALUES ($1, 1) \
         ON CONFLICT (user_id) DO UPDATE SET failures = account_state.failures + 1 \
         RETURNING failures",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    if failures < i64::from(max_failures) {
        return Ok(false);
    }
    sqlx::query("UPDATE account_state SET failures = 0, locked_until = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(lock_until)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Forgets failures and any lockout (a successful sign-in or a password reset).
pub async fn clear_failures(conn: &mut Conn, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE account_state SET failures = 0, locked_until = NULL WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The stored form of a reset secret: hex SHA-256 (the secret has 256 random bits, so a
/// plain hash is enough; a leaked table gives no usable link).
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random reset secret (URL-safe base64 of 32 bytes).
pub fn new_secret() -> zeroize::Zeroizing<String> {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(bytes.as_mut());
    zeroize::Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

/// Stores a reset link's hash for `user_id`, valid until `expires`.
pub async fn insert_reset(
    conn: &mut Conn,
    hash: &str,
    user_id: &str,
    created: &str,
    expires: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reset_tokens (hash, user_id, created, expires) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash)
    .bind(user_id)
    .bind(created)
    .bind(expires)
    .execute(conn)
    .await?;
    Ok(())
}

/// The condition that a reset link is its user's newest: a new link revokes the older ones
/// without writing to them (requests for one user never conflict). Ties of the creation time
/// are broken by the hash.
macro_rules! newest {
    () => {
        "NOT EXISTS (SELECT 1 FROM reset_tokens n WHERE n.user_id = reset_tokens.user_id \
         AND (n.created > reset_tokens.created \
              OR (n.created = reset_tokens.created AND n.hash > reset_tokens.hash)))"
    };
}

/// Uses up every open reset link of `user_id` (a newer link replaces them; a password change,
/// a disable or a deletion ends them).
pub async fn revoke_resets(conn: &mut Conn, user_id: &str, now: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE reset_tokens SET used = $2 WHERE user_id = $1 AND used IS NULL")
        .bind(user_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// The user a reset link belongs to, if it is unused and not expired at `now`.
pub async fn valid_reset(
    conn: &mut Conn,
    hash: &str,
    now: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(concat!(
        "SELECT user_id FROM reset_tokens WHERE hash = $1 AND used IS NULL AND expires > $2 AND ",
        newest!()
    ))
    .bind(hash)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// Uses up a reset link (and every other open link of the same user). Returns the user only
/// if this call is the one that used it: two concurrent submissions cannot both succeed.
pub async fn consume_reset(
    conn: &mut Conn,
    hash: &str,
    now: &str,
) -> Result<Option<String>, sqlx::Error> {
    let user: Option<String> = sqlx::query_scalar(concat!(
        "UPDATE reset_tokens SET used = $2 WHERE hash = $1 AND used IS NULL AND expires > $2 \
             AND ",
        newest!(),
        " RETURNING user_id"
    ))
    .bind(hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(u) = &user {
        sqlx::query("UPDATE reset_tokens SET used = $2 WHERE user_id = $1 AND used IS NULL")
            .bind(u)
            .bind(now)
            .execute(conn)
            .await?;
    }
    Ok(user)
}

/// A signed-in session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub user_id: String,
    pub user_name: String,
}

/// Stores a session under the hash of its cookie value, valid until `expires`; expired
/// sessions are swept at the same time.
pub async fn insert_session(
    conn: &mut Conn,
    hash: &str,
    s: &Session,
    now: &str,
    expires: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM web_sessions WHERE expires <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO web_sessions (hash, user_id, user_name, expires) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash)
    .bind(&s.user_id)
    .bind(&s.user_name)
    .bind(expires)
    .execute(conn)
    .await?;
    Ok(())
}

/// The session stored under `hash`, if it has not expired at `now`.
pub async fn session(
    conn: &mut Conn,
    hash: &str,
    now: &str,
) -> Result<Option<Session>, sqlx::Error> {
    sqlx::query_as::<_, Session>(
        "SELECT user_id, user_name FROM web_sessions WHERE hash = $1 AND expires > $2",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// Ends one session.
pub async fn remove_session(conn: &mut Conn, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM web_sessions WHERE hash = $1")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of a user (after a password reset).
pub async fn remove_user_sessions(conn: &mut Conn, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts one request against `key` and returns the count in the current window: the window
/// starts again at `now` when the one it had began at or before `window_floor`.
pub async fn hit(
    conn: &mut Conn,
    key: &str,
    now: &str,
    window_floor: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           hits = CASE WHEN rate_limits.window_start <= $3 THEN 1 ELSE rate_limits.hits + 1 END, \
           window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 \
                          ELSE rate_limits.window_start END \
         RETURNING hits",
    )
    .bind(key)
    .bind(now)
    .bind(window_floor)
    .fetch_one(conn)
    .await
}

/// Forgets request counters whose window began at or before `window_floor`.
pub async fn sweep_hits(conn: &mut Conn, window_floor: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM rate_limits WHERE window_start <= $1")
        .bind(window_floor)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

/// Gives every password without a known set time the time `at` (a password set before
/// sign-in state existed has no known age: it counts from then).
pub async fn backfill_password_ages(conn: &mut Conn, at: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_state (user_id, password_set_at) \
         SELECT id, $1 FROM users WHERE password_hash IS NOT NULL \
         ON CONFLICT (user_id) DO UPDATE SET password_set_at = $1 WHERE password_set_at IS NULL",
    )
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Active users with a password set at or before `cutoff` who were not told yet that it
/// expired: (id, userName, resource).
pub async fn expired_unnotified(
    conn: &mut Conn,
    cutoff: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.user_name, u.resource FROM users u JOIN account_state a ON a.user_id = u.id \
         WHERE u.state = 'active' AND u.password_hash IS NOT NULL \
           AND a.password_set_at <= $1 AND a.expiry_notified_at IS NULL",
    )
    .bind(cutoff)
    .fetch_all(conn)
    .await
}

/// Records that the user was told at `at` that their password expired.
pub async fn expiry_notified(conn: &mut Conn, user_id: &str, at: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE account_state SET expiry_notified_at = $1 WHERE user_id = $2")
        .bind(at)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The user's password hash (`None` when they have no password).
pub async fn password_hash(conn: &mut Conn, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(conn)
        .await
}
