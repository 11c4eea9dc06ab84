//! The durable password queue: one file per captured change in a directory that only the
//! service account can open, each file sealed with XChaCha20-Poly1305 under a 256-bit key kept
//! in a 0600 key file.
//!
//! Why one file per item rather than SQLite: the writer is a short-lived hook process and the
//! reader a long-lived pusher; a file written to a temporary name, fsynced, renamed and the
//! directory fsynced is either fully there or absent whatever is killed when, and the two
//! never contend for a database lock. An item is removed only after its outcome is final, so
//! a SIGKILL of the pusher at worst repeats a PATCH with the same password (harmless).
//!
//! Item names sort by capture time (`<unix nanos>-<random>.item`), which is the delivery order.
//! The plaintext is `u32 BE length || metadata JSON || password bytes`: the metadata (DN,
//! anchor attributes, capture time) goes through serde, the password never does, so only
//! buffers this module owns (and zeroises) ever hold it.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::source::{Entry, EntryBuilder};

/// File magic + format version; also the AEAD associated data, so a file of another format
/// or version never decrypts by accident.
const MAGIC: &[u8; 8] = b"DSPWQ\x00\x01\x00";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Name of the key file inside the queue directory when `--key-file` is not given.
pub const DEFAULT_KEY_FILE: &str = "queue.key";
const ITEM_SUFFIX: &str = ".item";
const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: {message}")]
    Insecure { path: String, message: String },
    #[error("{path}: cannot be decrypted with this key (wrong key file, or the file was altered)")]
    Decrypt { path: String },
    #[error("{path}: malformed queue item: {message}")]
    Malformed { path: String, message: String },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> QueueError {
    QueueError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// One captured password change.
pub struct Item {
    /// The directory entry as syncpasswords delivered it, secret attributes removed.
    pub entry: Entry,
    pub captured_at: DateTime<Utc>,
    pub password: SecretString,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("dn", &self.entry.dn)
            .field("captured_at", &self.captured_at)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Metadata {
    dn: String,
    captured_at: DateTime<Utc>,
    /// Attribute name → base64 values (values may be binary, e.g. objectGUID).
    attrs: std::collections::BTreeMap<String, Vec<String>>,
}

/// A queue item's file name (its id); sorts in capture order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId(pub String);

impl std::fmt::Display for ItemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Queue {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
}

impl Queue {
    /// Opens the queue in `dir`, creating the directory (0700) and the key file (0600, 32
    /// random bytes) when `create` is true and they are missing. Refuses a directory or key
    /// file that others than the owner can read or write: the queue must be readable by the
    /// service account only.
    pub fn open(dir: &Path, key_file: Option<&Path>, create: bool) -> Result<Queue, QueueError> {
        if !dir.exists() {
            if !create {
                return Err(io_err(dir, "no such queue directory"));
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(dir)
                .map_err(|e| io_err(dir, e))?;
        }
        check_private(dir, true)?;
        let key_path = key_file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join(DEFAULT_KEY_FILE));
        let key = load_or_create_key(&key_path, create, dir)?;
        let cipher = XChaCha20Poly1305::new_from_slice(key.as_slice())
            .map_err(|_| io_err(&key_path, "the key must be 32 bytes"))?;
        Ok(Queue {
            dir: dir.to_path_buf(),
            cipher,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seals `item` and stores it durably: temporary file, fsync, rename, fsync of the
    /// directory. When this returns Ok the item survives a crash or power loss.
    pub fn enqueue(&self, item: &Item) -> Result<ItemId, QueueError> {
        let mut attrs = std::collections::BTreeMap::new();
        for (name, values) in item.entry.attributes() {
            attrs.insert(
                name.to_string(),
                values.map(|v| B64.encode(v)).collect::<Vec<_>>(),
            );
        }
        let meta = Metadata {
            dn: item.entry.dn.clone(),
            captured_at: item.captured_at,
            attrs,
        };
        let meta_json = serde_json::to_vec(&meta).map_err(|e| io_err(&self.dir, e))?;
        let password = item.password.expose_secret().as_bytes();
        let meta_len = u32::try_from(meta_json.len())
            .map_err(|_| io_err(&self.dir, "queue item metadata too large"))?;
        // Allocated once at its final size so no reallocation leaves a copy behind.
        let mut plain = Zeroizing::new(Vec::with_capacity(4 + meta_json.len() + password.len()));
        plain.extend_from_slice(&meta_len.to_be_bytes());
        plain.extend_from_slice(&meta_json);
        plain.extend_from_slice(password);

        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_slice(),
                    aad: MAGIC,
                },
            )
            .map_err(|_| io_err(&self.dir, "encryption failed"))?;

        let nanos = item
            .captured_at
            .timestamp_nanos_opt()
            .unwrap_or_else(|| item.captured_at.timestamp().saturating_mul(1_000_000_000));
        let name = format!(
            "{:020}-{:016x}{ITEM_SUFFIX}",
            nanos.max(0),
            rand::rng().next_u64()
        );
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        let target = self.dir.join(&name);
        {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io_err(&tmp, e))?;
            adopt_owner(&file, &self.dir);
            file.write_all(MAGIC)
                .and_then(|()| file.write_all(&nonce))
                .and_then(|()| file.write_all(&sealed))
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(&tmp, e))?;
        }
        std::fs::rename(&tmp, &target).map_err(|e| io_err(&target, e))?;
        sync_dir(&self.dir)?;
        Ok(ItemId(name))
    }

    /// The ids of all complete items, oldest first. Leftover temporary files of a writer that
    /// died before its rename are ignored (their change was never acknowledged to Samba, which
    /// hands it over again).
    pub fn list(&self) -> Result<Vec<ItemId>, QueueError> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, e))? {
            let entry = entry.map_err(|e| io_err(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(ITEM_SUFFIX) && !name.starts_with(TMP_PREFIX) {
                ids.push(ItemId(name));
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads and decrypts one item.
    pub fn read(&self, id: &ItemId) -> Result<Item, QueueError> {
        let path = self.dir.join(&id.0);
        let mut raw = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut raw))
            .map_err(|e| io_err(&path, e))?;
        let malformed = |message: &str| QueueError::Malformed {
            path: path.display().to_string(),
            message: message.to_string(),
        };
        let body = raw
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| malformed("not a queue item of this version"))?;
        if body.len() < NONCE_LEN {
            return Err(malformed("truncated"));
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| malformed("truncated"))?;
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: sealed,
                        aad: MAGIC,
                    },
                )
                .map_err(|_| QueueError::Decrypt {
                    path: path.display().to_string(),
                })?,
        );
        let len_bytes: [u8; 4] = plain
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("truncated"))?;
        let meta_len =
            usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| malformed("bad length"))?;
        let meta_end = 4usize
            .checked_add(meta_len)
            .filter(|end| *end <= plain.len())
            .ok_or_else(|| malformed("bad length"))?;
        let meta: Metadata = serde_json::from_slice(&plain[4..meta_end])
            .map_err(|e| malformed(&format!("metadata: {e}")))?;
        let password_bytes = &plain[meta_end..];
        let password = std::str::from_utf8(password_bytes)
            .map_err(|_| malformed("the password is not UTF-8"))?;
        let password = SecretString::from(password.to_string());
        let mut entry = EntryBuilder::new(meta.dn);
        for (name, values) in meta.attrs {
            for v in values {
                let value = B64
                    .decode(v.as_bytes())
                    .map_err(|e| malformed(&format!("attribute {name}: {e}")))?;
                entry.push(&name, value);
            }
        }
        Ok(Item {
            entry: entry.build(),
            captured_at: meta.captured_at,
            password,
        })
    }

    /// Removes an item whose outcome is final; durable like [`Queue::enqueue`]. A missing
    /// file is fine (removed by a previous pusher that was killed before it could report).
    pub fn remove(&self, id: &ItemId) -> Result<(), QueueError> {
        let path = self.dir.join(&id.0);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path, e)),
        }
        sync_dir(&self.dir)
    }

    /// Takes the pusher's lock (`push.lock`): one pusher per queue, so two never race on the
    /// same item. Held while the returned file is open.
    pub fn lock_pusher(&self) -> Result<File, QueueError> {
        let path = self.dir.join("push.lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(io_err(
                &path,
                "another password-sync pusher is running on this queue",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path, e)),
        }
    }
}

/// The queue directory (and the key file) must not be open to group or others.
fn check_private(path: &Path, is_dir: bool) -> Result<(), QueueError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if is_dir && !meta.is_dir() {
        return Err(io_err(path, "not a directory"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(QueueError::Insecure {
            path: path.display().to_string(),
            message: format!(
                "mode {mode:04o} lets other accounts in; the queue must be readable by the \
                 service account only (chmod {} it)",
                if is_dir { "700" } else { "600" }
            ),
        });
    }
    Ok(())
}

fn load_or_create_key(
    path: &Path,
    create: bool,
    queue_dir: &Path,
) -> Result<Zeroizing<Vec<u8>>, QueueError> {
    if path.exists() {
        check_private(path, false)?;
        let mut key = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut key))
            .map_err(|e| io_err(path, e))?;
        if key.len() != KEY_LEN {
            return Err(io_err(
                path,
                format!("a queue key file holds exactly {KEY_LEN} bytes"),
            ));
        }
        return Ok(key);
    }
    if !create {
        return Err(io_err(path, "no such key file"));
    }
    let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
    rand::rng().fill_bytes(key.as_mut_slice());
    // create_new: two hooks starting at once must not each write a different key.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            adopt_owner(&file, queue_dir);
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(path, e))?;
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create_key(path, false, queue_dir)
        }
        Err(e) => Err(io_err(path, e)),
    }
}

/// The capture hook runs as root on the DC while the pusher may run as a service account
/// that owns the queue directory: files root creates there are handed to the directory's
/// owner so that account (and only it) can read them. Best effort: without the privilege
/// to chown, the file simply stays the writer's.
fn adopt_owner(file: &File, dir: &Path) {
    if let (Ok(dir_meta), Ok(file_meta)) = (std::fs::metadata(dir), file.metadata())
        && (dir_meta.uid() != file_meta.uid() || dir_meta.gid() != file_meta.gid())
    {
        let _ = std::os::unix::fs::fchown(file, Some(dir_meta.uid()), Some(dir_meta.gid()));
    }
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn item(dn: &str, pw: &str) -> Item {
        Item {
            entry: Entry::new(dn)
                .with("objectGUID", "6f2b8a5e-1c2d-4e3f-8a9b-0c1d2e3f4a5b")
                .with("sAMAccountName", "alice"),
            captured_at: Utc::now(),
            password: SecretString::from(pw.to_string()),
        }
    }

    fn private_tempdir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        t
    }

    #[test]
    fn round_trip_and_ciphertext_only_on_disk() {
        let t = private_tempdir();
        let dir = t.path().join("q");
        let q = Queue::open(&dir, None, true).unwrap();
        let pw = "Pässwörd-秘密-🔑";
        let id = q.enqueue(&item("CN=alice,DC=x", pw)).unwrap();
        assert_eq!(q.list().unwrap(), vec![id.clone()]);
        let raw = std::fs::read(dir.join(&id.0)).unwrap();
        for needle in [pw.as_bytes(), b"alice", b"CN=alice"] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle),
                "plaintext found in the queue file"
            );
        }
        let mode = std::fs::metadata(dir.join(&id.0))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);

        // A second handle with the same key file reads it back.
        let q2 = Queue::open(&dir, None, false).unwrap();
        let back = q2.read(&id).unwrap();
        assert_eq!(back.password.expose_secret(), pw);
        assert_eq!(back.entry.dn, "CN=alice,DC=x");
        assert_eq!(back.entry.first_str("samaccountname"), Some("alice"));
        q2.remove(&id).unwrap();
        assert!(q2.list().unwrap().is_empty());
        q2.remove(&id).unwrap();
    }

    #[test]
    fn wrong_key_and_tampering_are_detected() {
        let t = private_tempdir();
        let dir = t.path().join("q");
        let q = Queue::open(&dir, None, true).unwrap();
        let id = q.enqueue(&item("CN=a,DC=x", "secret-1")).unwrap();
        let other_key = t.path().join("other.key");
        let other = Queue::open(&dir, Some(&other_key), true).unwrap();
        assert!(matches!(other.read(&id), Err(QueueError::Decrypt { .. })));

        let path = dir.join(&id.0);
        let mut raw = std::fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        std::fs::write(&path, raw).unwrap();
        assert!(matches!(q.read(&id), Err(QueueError::Decrypt { .. })));
    }

    #[test]
    fn items_list_in_capture_order_and_temp_files_are_ignored() {
        let t = private_tempdir();
        let dir = t.path().join("q");
        let q = Queue::open(&dir, None, true).unwrap();
        let mut first = item("CN=first,DC=x", "a");
        first.captured_at = Utc::now() - chrono::Duration::seconds(10);
        let second = item("CN=second,DC=x", "b");
        let id2 = q.enqueue(&second).unwrap();
        let id1 = q.enqueue(&first).unwrap();
        std::fs::write(dir.join(".tmp-000-x.item"), b"partial").unwrap();
        assert_eq!(q.list().unwrap(), vec![id1, id2]);
    }

    #[test]
    fn open_queue_directory_is_refused() {
        let t = private_tempdir();
        let dir = t.path().join("q");
        Queue::open(&dir, None, true).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = Queue::open(&dir, None, false).err().unwrap();
        assert!(matches!(err, QueueError::Insecure { .. }), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(
            dir.join(DEFAULT_KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = Queue::open(&dir, None, false).err().unwrap();
        assert!(matches!(err, QueueError::Insecure { .. }), "{err}");
    }

    #[test]
    fn second_pusher_is_refused() {
        let t = private_tempdir();
        let q = Queue::open(&t.path().join("q"), None, true).unwrap();
        let _held = q.lock_pusher().unwrap();
        assert!(q.lock_pusher().is_err());
    }
}
