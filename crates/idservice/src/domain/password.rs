//! User passwords (RFC 7643 §4.1.1 `password`: writeOnly, returned never). A password sent in
//! a POST, PUT, PATCH or Bulk body is taken out of the resource and only an argon2id hash
//! (PHC string, random salt, the `argon2` crate's recommended parameters) is stored, in its
//! own column (`users.password_hash`); it is never returned, never filterable and never
//! logged (behaviour §6: "never stored in clear").

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use scim::ScimError;
use serde_json::Value;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// The password policy (`password_policy` in the service configuration).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Fewest characters (Unicode scalar values) a new password may have.
    pub min_length: usize,
    /// Days after which a password expires; 0: never.
    pub max_age_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_length: 8,
            max_age_days: 0,
        }
    }
}

/// Longest password accepted, in bytes: argon2 takes any length, but an unbounded one is a
/// cheap way to make the server hash megabytes.
pub const MAX_BYTES: usize = 1024;

/// Set once at start (`serve --config`); SCIM writes and the reset page both read it. A
/// process-wide value because the SCIM domain functions take no configuration.
static POLICY: OnceLock<Policy> = OnceLock::new();

/// Installs the policy (the first call wins).
pub fn set_policy(p: Policy) {
    let _ = POLICY.set(p);
}

/// The policy in force (the default when none was installed).
pub fn policy() -> Policy {
    POLICY.get().cloned().unwrap_or_default()
}

/// Why a new password is refused. The message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("password is empty")]
    Empty,
    #[error("password is too short: at least {min_length} characters are required")]
    TooShort { min_length: usize },
    #[error("password is longer than {} bytes", MAX_BYTES)]
    TooLong,
}

/// Checks a new password against the policy.
pub fn check_policy(password: &str) -> Result<(), PolicyError> {
    let p = policy();
    if password.is_empty() {
        return Err(PolicyError::Empty);
    }
    if password.chars().count() < p.min_length {
        return Err(PolicyError::TooShort {
            min_length: p.min_length,
        });
    }
    if password.len() > MAX_BYTES {
        return Err(PolicyError::TooLong);
    }
    Ok(())
}

/// The stored form of a new password hash: an argon2id PHC string with a random salt.
/// `None` only if the system's random source failed.
pub fn hash(password: &str) -> Option<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .ok()
        .map(|h| h.to_string())
}

/// Whether `password` matches a stored hash made by [`hash`].
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// At most this many argon2 computations run at once: one per CPU. A Bulk of 1,000 passwords
/// then uses the CPUs for its hashes but leaves the async workers (and the other requests)
/// their turn.
fn hashers() -> &'static Semaphore {
    static HASHERS: OnceLock<Semaphore> = OnceLock::new();
    HASHERS.get_or_init(|| {
        Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
    })
}

/// [`hash`] on the blocking pool, at most one per CPU at a time: argon2id takes tens of
/// milliseconds of CPU by design and must never stall the async workers. The clear text is
/// wiped from memory when the hash is done.
pub async fn hash_blocking(password: Zeroizing<String>) -> Result<String, ScimError> {
    let cannot = || ScimError::new(500, None, "cannot hash the password");
    let _permit = hashers().acquire().await.map_err(|_| cannot())?;
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .ok()
        .flatten()
        .ok_or_else(cannot)
}

/// The hashes of the passwords a request body carries, computed *before* its write
/// transaction starts: hashing inside it would hold the database's writer (SQLite has one)
/// for the whole time, so one Bulk of 1,000 users with passwords would block every other
/// write for seconds. [`Prehashed::take`] hands a hash to the write that stores the password;
/// a password the walk did not find is hashed in the transaction as before.
#[derive(Default)]
pub struct Prehashed {
    entries: Vec<(Zeroizing<String>, String)>,
}

impl std::fmt::Debug for Prehashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prehashed({} passwords)", self.entries.len())
    }
}

impl Prehashed {
    /// Hashes every password `body` holds (a `password` member at any depth, case-insensitive,
    /// or a PATCH operation whose `path` is `password`) that the policy accepts; the others
    /// fail later with the policy's message. The hashes run in parallel, one per CPU.
    pub async fn of(body: &Value) -> Result<Prehashed, ScimError> {
        let mut found: Vec<Zeroizing<String>> = Vec::new();
        candidates(body, &mut found);
        found.retain(|p| check_policy(p).is_ok());
        found.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        found.dedup_by(|a, b| a.as_str() == b.as_str());
        let mut tasks = tokio::task::JoinSet::new();
        for plain in found {
            tasks.spawn(async move {
                let hashed = hash_blocking(plain.clone()).await;
                (plain, hashed)
            });
        }
        let mut entries = Vec::with_capacity(tasks.len());
        while let Some(done) = tasks.join_next().await {
            let (plain, hashed) =
                done.map_err(|_| ScimError::new(500, None, "cannot hash the password"))?;
            entries.push((plain, hashed?));
        }
        Ok(Prehashed { entries })
    }

    /// The hash computed for `plain`, if the walk found it.
    pub fn take(&self, plain: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|(p, _)| p.as_str() == plain)
            .map(|(_, h)| h.clone())
    }
}

/// Collects the password candidates of a JSON value (see [`Prehashed::of`]).
fn candidates(v: &Value, out: &mut Vec<Zeroizing<String>>) {
    match v {
        Value::Object(m) => {
            let is_password_path = m.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("path")
                    && v.as_str()
                        .is_some_and(|p| p.trim().eq_ignore_ascii_case("password"))
            });
            for (k, v) in m {
                let named = k.eq_ignore_ascii_case("password")
                    || (is_password_path && k.eq_ignore_ascii_case("value"));
                match v {
                    Value::String(s) if named => out.push(Zeroizing::new(s.clone())),
                    _ => candidates(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| candidates(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_salted_and_verifies() {
        let a = hash("s3cret-パスワード").unwrap();
        let b = hash("s3cret-パスワード").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b);
        assert!(!a.contains("s3cret"));
        assert!(verify("s3cret-パスワード", &a));
        assert!(!verify("other", &a));
        assert!(!verify("s3cret", "garbage"));
    }

    #[test]
    fn default_policy_rejects_empty_and_short() {
        assert_eq!(check_policy("").unwrap_err(), PolicyError::Empty);
        assert_eq!(
            check_policy("short").unwrap_err().to_string(),
            "password is too short: at least 8 characters are required"
        );
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(MAX_BYTES + 1)).is_err());
    }

    #[tokio::test]
    async fn prehash_finds_passwords_in_bodies_patches_and_bulk() {
        let bulk = serde_json::json!({"Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a",
             "data": {"userName": "a", "password": "first-secret"}},
            {"method": "PATCH", "path": "/Users/1", "data": {"Operations": [
                {"op": "replace", "path": "Password", "value": "second-secret"},
                {"op": "replace", "value": {"PASSWORD": "third-secret"}}]}},
            {"method": "POST", "path": "/Users", "bulkId": "b",
             "data": {"userName": "b", "password": "short"}}]});
        let pre = Prehashed::of(&bulk).await.unwrap();
        for p in ["first-secret", "second-secret", "third-secret"] {
            let h = pre.take(p).unwrap();
            assert!(verify(p, &h), "{p}");
        }
        // refused by the policy: not hashed (the write reports the policy's message)
        assert!(pre.take("short").is_none());
        assert!(!format!("{pre:?}").contains("secret"));
    }
}
