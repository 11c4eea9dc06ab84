//! Administrative tables: bearer tokens (hashes only), registered domains, settings.

use super::Conn;

/// A stored token (never the secret itself).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub hash: String,
    pub scopes: String,
    pub owner: Option<String>,
    pub created: String,
    pub expires: Option<String>,
    pub revoked: Option<String>,
}

pub async fn insert_token(conn: &mut Conn, t: &TokenRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tokens (id, hash, scopes, owner, created, expires, revoked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&t.id)
    .bind(&t.hash)
    .bind(&t.scopes)
    .bind(&t.owner)
    .bind(&t.created)
    .bind(&t.expires)
    .bind(&t.revoked)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn token_by_hash(conn: &mut Conn, hash: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as::<_, TokenRow>(
        "SELECT id, hash, scopes, owner, created, expires, revoked FROM tokens WHERE hash = $1",
    )
    .bind(hash)
    .fetch_optional(conn)
    .await
}

pub async fn list_tokens(conn: &mut Conn) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as::<_, TokenRow>(
        "SELECT id, hash, scopes, owner, created, expires, revoked FROM tokens ORDER BY created, id",
    )
    .fetch_all(conn)
    .await
}

/// Marks a token revoked; returns false when no unrevoked token has that id.
pub async fn revoke_token(conn: &mut Conn, id: &str, at: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE tokens SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
        .bind(at)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn add_domain(conn: &mut Conn, name: &str, at: &str) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("INSERT INTO domains (name, created) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(at)
            .execute(conn)
            .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn remove_domain(conn: &mut Conn, name: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM domains WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn list_domains(conn: &mut Conn) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar::<_, String>("SELECT name FROM domains ORDER BY name")
        .fetch_all(conn)
        .await
}

pub async fn get_setting(conn: &mut Conn, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await
}

pub async fn set_setting(conn: &mut Conn, key: &str, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a userName in `domain` is allowed: no domain is registered, or this one is.
pub async fn domain_allowed(conn: &mut Conn, domain: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM domains) \
         OR EXISTS (SELECT 1 FROM domains WHERE name = $1) THEN 1 ELSE 0 END",
    )
    .bind(domain)
    .fetch_one(conn)
    .await?;
    Ok(n != 0)
}

/// Live tokens with an owner that expire after `at`: (id, owner, expires, scopes).
pub async fn owned_live_tokens(
    conn: &mut Conn,
    at: &str,
) -> Result<Vec<(String, String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, owner, expires, scopes FROM tokens \
         WHERE revoked IS NULL AND owner IS NOT NULL AND owner <> '' \
           AND expires IS NOT NULL AND expires > $1",
    )
    .bind(at)
    .fetch_all(conn)
    .await
}

/// Whether the token's owner was warned at `days` before expiry or closer.
pub async fn expiry_warned(
    conn: &mut Conn,
    token_id: &str,
    days: i64,
) -> Result<bool, sqlx::Error> {
    let warned: i64 = sqlx::query_scalar(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM token_expiry_warnings \
         WHERE token_id = $1 AND days <= $2) THEN 1 ELSE 0 END",
    )
    .bind(token_id)
    .bind(days)
    .fetch_one(conn)
    .await?;
    Ok(warned != 0)
}

/// Records the warning sent at `at`, `days` before the token expires.
pub async fn record_expiry_warning(
    conn: &mut Conn,
    token_id: &str,
    days: i64,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO token_expiry_warnings (token_id, days, sent) VALUES ($1, $2, $3)")
        .bind(token_id)
        .bind(days)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}
