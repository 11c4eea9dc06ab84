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
