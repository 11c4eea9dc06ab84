//! Queued email bodies at rest. A "Password reset requested" message carries a usable reset
//! link until it is sent (normally seconds; during a relay outage, until the relay returns or
//! the link expires), so the outbox stores every body sealed with ChaCha20-Poly1305 (`ring`)
//! under the outbox key: a copy of the database alone (a backup, a dump, a stolen file) holds
//! no link. The body is removed once the message is sent.
//!
//! The key is 32 random bytes, base64 on the first line of a file only its owner can read:
//! `outbox.key_file` in the service configuration, or, on SQLite without it,
//! `DATA_DIR/outbox.key`, created at the first start. On PostgreSQL `outbox.key_file` is
//! required: any node may send a message another node queued, so every node needs the same
//! key, which the shared database must not hold.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

/// What a sealed body starts with (a body without it was queued before sealing existed).
const PREFIX: &str = "sealed:v1:";
/// The key file `DATA_DIR/outbox.key` on SQLite.
pub const KEY_FILE: &str = "outbox.key";

/// Why the outbox key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the outbox key {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the outbox key {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the outbox key {} is not 32 bytes in base64 on its first line (create one with: \
         openssl rand -base64 32 > FILE; chmod 600 FILE)",
        .0.display()
    )]
    Malformed(PathBuf),
    #[error(transparent)]
    NotPrivate(#[from] crate::secret_file::NotPrivate),
    #[error(
        "outbox.key_file is required with --database: every node seals and opens queued mail \
         with the same key, which the shared database must not hold (create one with: openssl \
         rand -base64 32 > FILE; chmod 600 FILE)"
    )]
    Required,
}

/// A body that cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a message cannot be sealed (it is too long)")]
    Seal,
    #[error(
        "a queued message cannot be opened with the outbox key (the key changed, or the row was altered)"
    )]
    Open,
}

/// The outbox key.
pub struct OutboxKey(LessSafeKey);

impl std::fmt::Debug for OutboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxKey(..)")
    }
}

impl OutboxKey {
    /// The key of `key_file`, else (SQLite) `data_dir/outbox.key`, created when absent.
    pub fn load(key_file: Option<&Path>, data_dir: Option<&Path>) -> Result<OutboxKey, KeyError> {
        match (key_file, data_dir) {
            (Some(file), _) => OutboxKey::read(file),
            (None, Some(dir)) => {
                let file = dir.join(KEY_FILE);
                if !file.exists() {
                    create(&file)?;
                }
                OutboxKey::read(&file)
            }
            (None, None) => Err(KeyError::Required),
        }
    }

    fn read(file: &Path) -> Result<OutboxKey, KeyError> {
        crate::secret_file::check_private(file)?;
        let text =
            Zeroizing::new(
                std::fs::read_to_string(file).map_err(|source| KeyError::Read {
                    path: file.to_path_buf(),
                    source,
                })?,
            );
        let line = text.lines().next().unwrap_or_default().trim();
        let bytes = Zeroizing::new(
            STANDARD
                .decode(line)
                .map_err(|_| KeyError::Malformed(file.to_path_buf()))?,
        );
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| KeyError::Malformed(file.to_path_buf()))?;
        Ok(OutboxKey(LessSafeKey::new(key)))
    }

    /// `plain` sealed, as the outbox stores it: the prefix, then base64 of nonce and ciphertext.
    pub fn seal(&self, plain: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut data = Zeroizing::new(plain.as_bytes().to_vec());
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut *data,
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// The body a stored one holds: opened when sealed, as it is otherwise.
    pub fn open(&self, stored: &str) -> Result<Zeroizing<String>, SealError> {
        let Some(b64) = stored.strip_prefix(PREFIX) else {
            return Ok(Zeroizing::new(stored.to_string()));
        };
        let raw = STANDARD.decode(b64).map_err(|_| SealError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut data = Zeroizing::new(sealed.to_vec());
        let plain = self
            .0
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }
}

/// Writes a new random key to `file`, readable by its owner only.
fn create(file: &Path) -> Result<(), KeyError> {
    use std::io::Write;
    let err = |source| KeyError::Create {
        path: file.to_path_buf(),
        source,
    };
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(bytes.as_mut());
    let text = Zeroizing::new(format!("{}\n", STANDARD.encode(bytes.as_ref())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(file).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bodies_are_sealed_and_opened_and_tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let key = OutboxKey::load(None, Some(dir.path())).unwrap();
        let body = "Open https://id.example/reset?token=SECRET123 within 30 minutes.";
        let sealed = key.seal(body).unwrap();
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains("SECRET123") && !sealed.contains("reset?token"));
        assert_ne!(sealed, key.seal(body).unwrap(), "a fresh nonce each time");
        assert_eq!(key.open(&sealed).unwrap().as_str(), body);
        // the same key from the same file
        let again = OutboxKey::load(None, Some(dir.path())).unwrap();
        assert_eq!(again.open(&sealed).unwrap().as_str(), body);
        // an altered row, another key
        let mut bad = sealed.clone();
        bad.pop();
        bad.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open(&bad).is_err());
        let other = tempfile::tempdir().unwrap();
        assert!(
            OutboxKey::load(None, Some(other.path()))
                .unwrap()
                .open(&sealed)
                .is_err()
        );
        // a row queued before sealing existed
        assert_eq!(key.open("plain body").unwrap().as_str(), "plain body");
    }

    #[test]
    fn the_key_file_is_private_and_required_without_a_data_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        OutboxKey::load(None, Some(dir.path())).unwrap();
        let file = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            OutboxKey::load(None, Some(dir.path())),
            Err(KeyError::NotPrivate(_))
        ));
        assert!(matches!(
            OutboxKey::load(None, None),
            Err(KeyError::Required)
        ));
        let short = dir.path().join("short.key");
        std::fs::write(&short, "c2hvcnQ=\n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            OutboxKey::load(Some(&short), None),
            Err(KeyError::Malformed(_))
        ));
    }
}
