//! User passwords (RFC 7643 §4.1.1 `password`: writeOnly, returned never). A password sent in
//! a POST, PUT, PATCH or Bulk body is taken out of the resource and only an argon2id hash
//! (PHC string, random salt, the `argon2` crate's recommended parameters) is stored, in its
//! own column (`users.password_hash`); it is never returned, never filterable and never
//! logged (behaviour §6: "never stored in clear").

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

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
}
