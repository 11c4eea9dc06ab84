//! User passwords (RFC 7643 §4.1.1 `password`: writeOnly, returned never). A password sent in
//! a POST, PUT, PATCH or Bulk body is taken out of the resource and only an argon2id hash
//! (PHC string, random salt, the `argon2` crate's recommended parameters) is stored, in its
//! own column (`users.password_hash`); it is never returned, never filterable and never
//! logged (SPEC 6: "never stored in clear").

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

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
}
