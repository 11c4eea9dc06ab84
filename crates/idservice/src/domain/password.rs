//! User passwords (RFC 7643 §4.1.1 `password`: writeOnly, returned never). A password sent in
//! a POST, PUT, PATCH or Bulk body is taken out of the resource and only a salted, stretched
//! hash is stored, in its own column (`users.password_hash`); it is never returned, never
//! filterable and never logged (SPEC 6: "never stored in clear").
//!
//! The hash is PBKDF2-HMAC-SHA256 (RFC 8018 §5.2), one 32-byte block, with a random 16-byte
//! salt, stored as `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.

use sha2::{Digest, Sha256};

/// PBKDF2 iterations for new hashes.
pub const ITERATIONS: u32 = 100_000;

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104) with a key already padded/hashed to one block.
fn hmac(key_block: &[u8; BLOCK], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= key_block[i];
        opad[i] ^= key_block[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// PBKDF2-HMAC-SHA256, first 32-byte block.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut key_block = [0u8; BLOCK];
    if password.len() > BLOCK {
        key_block[..32].copy_from_slice(&Sha256::digest(password));
    } else {
        key_block[..password.len()].copy_from_slice(password);
    }
    let mut msg = Vec::with_capacity(salt.len() + 4);
    msg.extend_from_slice(salt);
    msg.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(&key_block, &msg);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(&key_block, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// The stored form of a new password hash (random salt).
pub fn hash(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let h = pbkdf2_sha256(password.as_bytes(), &salt, ITERATIONS);
    format!(
        "pbkdf2-sha256${ITERATIONS}${}${}",
        hex::encode(salt),
        hex::encode(h)
    )
}

/// Whether `password` matches a stored hash made by [`hash`].
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(want), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iter), Ok(salt), Ok(want)) =
        (iter.parse::<u32>(), hex::decode(salt), hex::decode(want))
    else {
        return false;
    };
    if iter == 0 {
        return false;
    }
    let got = pbkdf2_sha256(password.as_bytes(), &salt, iter);
    subtle::ConstantTimeEq::ct_eq(&got[..], &want[..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_rfc7914_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1), first 32 bytes.
        assert_eq!(
            hex::encode(pbkdf2_sha256(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn hash_verifies_and_is_salted() {
        let a = hash("s3cret-パスワード");
        let b = hash("s3cret-パスワード");
        assert_ne!(a, b);
        assert!(!a.contains("s3cret"));
        assert!(verify("s3cret-パスワード", &a));
        assert!(!verify("other", &a));
        assert!(!verify("s3cret", "garbage"));
    }
}
