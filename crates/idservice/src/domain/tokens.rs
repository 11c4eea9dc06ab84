//! Bearer tokens (behaviour §7.4): created by an administrator, shown once, stored as a SHA-256
//! hash with scopes and an expiry; checked on every request.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{fmt_time, now};
use crate::store::Store;
use crate::store::admin::{self, TokenRow};

/// Prefix of every token, so leaked tokens are recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "ids_";

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ReadUsers,
    WriteUsers,
    ReadGroups,
    WriteGroups,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::ReadUsers,
        Scope::WriteUsers,
        Scope::ReadGroups,
        Scope::WriteGroups,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadUsers => "escim_read_users",
            Scope::WriteUsers => "escim_write_users",
            Scope::ReadGroups => "escim_read_groups",
            Scope::WriteGroups => "escim_write_groups",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s.trim())
    }

    fn bit(self) -> u8 {
        match self {
            Scope::ReadUsers => 1,
            Scope::WriteUsers => 2,
            Scope::ReadGroups => 4,
            Scope::WriteGroups => 8,
        }
    }
}

/// The scopes a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Scopes {
        Scopes(15)
    }
    pub fn has(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }
    pub fn with(self, s: Scope) -> Scopes {
        Scopes(self.0 | s.bit())
    }
    /// Parses a comma-separated list; unknown names are an error naming them.
    pub fn parse_list(list: &str) -> Result<Scopes, ParseError> {
        let mut out = Scopes::default();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let s = Scope::parse(part).ok_or_else(|| ParseError::UnknownScope(part.to_string()))?;
            out = out.with(s);
        }
        if out == Scopes::default() {
            return Err(ParseError::NoScope);
        }
        Ok(out)
    }
    pub fn to_list(self) -> String {
        Scope::ALL
            .into_iter()
            .filter(|s| self.has(*s))
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Why a scope list or a validity given by an administrator is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown scope {0:?} (known: {known})", known = Scope::ALL.map(Scope::as_str).join(", "))]
    UnknownScope(String),
    #[error("at least one scope is required")]
    NoScope,
    #[error("invalid duration {0:?} (use e.g. 90d, 12h, 30m, 45s)")]
    InvalidDuration(String),
    #[error("invalid duration unit in {0:?} (use d, h, m or s)")]
    InvalidDurationUnit(String),
}

/// Why a request is not authenticated (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("unknown token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("token check failed")]
    Internal,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new token: its public id and the secret (to show once).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub secret: String,
    pub expires: Option<String>,
}

/// Creates a token valid for `valid_for` (`None`: never expires).
pub async fn create(
    store: &Store,
    scopes: Scopes,
    valid_for: Option<chrono::Duration>,
    owner: Option<String>,
) -> Result<NewToken, sqlx::Error> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let mut id_bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut id_bytes);
    let id = hex::encode(id_bytes);
    let expires = valid_for.map(|d| fmt_time(chrono::Utc::now() + d));
    let row = TokenRow {
        id: id.clone(),
        hash: hash(&secret),
        scopes: scopes.to_list(),
        owner,
        created: now(),
        expires: expires.clone(),
        revoked: None,
    };
    let mut tx = store.begin().await?;
    admin::insert_token(&mut tx, &row).await?;
    tx.commit().await?;
    Ok(NewToken {
        id,
        secret,
        expires,
    })
}

/// Checks a presented bearer token and returns its scopes.
pub async fn authenticate(store: &Store, secret: &str) -> Result<Scopes, AuthError> {
    let mut conn = store.read().await.map_err(|_| AuthError::Internal)?;
    // Lookup is by hash, so timing reveals nothing about the stored secrets.
    let row = admin::token_by_hash(&mut conn, &hash(secret))
        .await
        .map_err(|_| AuthError::Internal)?
        .ok_or(AuthError::Unknown)?;
    if row.revoked.is_some() {
        return Err(AuthError::Revoked);
    }
    if let Some(exp) = &row.expires
        && *exp <= now()
    {
        return Err(AuthError::Expired);
    }
    let mut scopes = Scopes::default();
    for s in row.scopes.split(',').filter_map(Scope::parse) {
        scopes = scopes.with(s);
    }
    Ok(scopes)
}

pub async fn list(store: &Store) -> Result<Vec<TokenRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    admin::list_tokens(&mut conn).await
}

pub async fn revoke(store: &Store, id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = store.begin().await?;
    let done = admin::revoke_token(&mut tx, id, &now()).await?;
    tx.commit().await?;
    Ok(done)
}

/// Parses a duration such as `90d`, `12h`, `30m`, `45s`; `never` gives `None`.
pub fn parse_duration(s: &str) -> Result<Option<chrono::Duration>, ParseError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| ParseError::InvalidDuration(s.to_string()))?;
    let d = match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        "m" => chrono::Duration::minutes(n),
        "s" | "" => chrono::Duration::seconds(n),
        _ => return Err(ParseError::InvalidDurationUnit(s.to_string())),
    };
    Ok(Some(d))
}
