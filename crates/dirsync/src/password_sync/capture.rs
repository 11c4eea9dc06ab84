//! The `samba-tool user syncpasswords --script` hook: one object's LDIF on stdin, the cleartext
//! in `virtualClearTextUTF8`, a `DONE-EXIT: …` line on stdout once the change is durably
//! queued.
//!
//! syncpasswords calls the hook for every change of a watched attribute, not only passwords
//! (a userAccountControl change, a rename), always with the current state. Entries without a
//! cleartext are acknowledged and dropped; an entry whose pwdLastSet was already queued is
//! acknowledged without queueing it again (see [`Seen`]), so disabling an account does not
//! push its password a second time.
//!
//! The LDIF is parsed here rather than with `source::ldif`: the whole text and every buffer
//! that held the password are zeroised, and secret attributes (every `virtual…` attribute,
//! hashes) are dropped before anything else sees the entry. Nothing is written to stderr
//! before the reply: samba-tool reads stdout and stderr as one stream and wants the reply
//! first.

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::Utc;
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::queue::{Item, Queue, QueueError};
use crate::source::{Entry, EntryBuilder};

/// The attribute that carries the cleartext (UTF-8) in syncpasswords' LDIF.
pub const CLEARTEXT_ATTR: &str = "virtualcleartextutf8";

/// Attributes never kept in a queue item (lower case). Every `virtual*` attribute is dropped
/// too: they are password derivatives (hashes, Kerberos keys, the GPG blob).
const SECRET_ATTRS: &[&str] = &[
    "unicodepwd",
    "dbcspwd",
    "ntpwdhistory",
    "lmpwdhistory",
    "supplementalcredentials",
    "userpassword",
    "clearTextPassword",
];

/// Upper bound of the LDIF accepted on stdin (one account; guards the pre-sized buffer).
const MAX_LDIF: usize = 1 << 20;

/// One account as syncpasswords handed it over.
pub struct Captured {
    pub entry: Entry,
    /// The cleartext, when the object carried one.
    pub password: Option<SecretString>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("line {0}: expected 'attribute: value'")]
    Syntax(usize),
    #[error("line {0}: invalid base64 value")]
    Base64(usize),
    #[error("the LDIF has no 'dn:' line")]
    NoDn,
    #[error("the cleartext password is not valid UTF-8")]
    NotUtf8,
    #[error("more than one record on stdin")]
    SeveralRecords,
}

/// Parses one record of syncpasswords' LDIF. Error messages never quote a value.
pub fn parse(text: &str) -> Result<Captured, ParseError> {
    // Unfold continuation lines (a leading space) into zeroised logical lines.
    let mut lines: Vec<(usize, Zeroizing<String>)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match (line.strip_prefix(' '), lines.last_mut()) {
            (Some(cont), Some((_, prev))) => prev.push_str(cont),
            _ => lines.push((i + 1, Zeroizing::new(line.to_string()))),
        }
    }
    let mut entry: Option<EntryBuilder> = None;
    let mut ended = false;
    let mut password: Option<SecretString> = None;
    for (number, line) in &lines {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if entry.is_some() {
                ended = true;
            }
            continue;
        }
        let (name, rest) = line.split_once(':').ok_or(ParseError::Syntax(*number))?;
        let name = dirsync_model::entry::attribute_base(name).to_ascii_lowercase();
        if name.trim().is_empty() {
            // `: value` or `;option: value` names no attribute.
            return Err(ParseError::Syntax(*number));
        }
        let value: Zeroizing<Vec<u8>> = match rest.strip_prefix(':') {
            Some(b64) => Zeroizing::new(
                B64.decode(b64.trim())
                    .map_err(|_| ParseError::Base64(*number))?,
            ),
            None => Zeroizing::new(rest.trim_start_matches(' ').as_bytes().to_vec()),
        };
        if name == "dn" {
            if entry.is_some() {
                return Err(ParseError::SeveralRecords);
            }
            let dn = std::str::from_utf8(&value).map_err(|_| ParseError::Syntax(*number))?;
            entry = Some(EntryBuilder::new(strip_extended_dn(dn)));
            continue;
        }
        let Some(e) = entry.as_mut() else {
            return Err(ParseError::NoDn);
        };
        if ended {
            return Err(ParseError::SeveralRecords);
        }
        if name == CLEARTEXT_ATTR {
            let text = std::str::from_utf8(&value).map_err(|_| ParseError::NotUtf8)?;
            password = Some(SecretString::from(text.to_string()));
        } else if name.starts_with("virtual")
            || SECRET_ATTRS.iter().any(|s| s.eq_ignore_ascii_case(&name))
        {
            // dropped: password derivatives never reach the queue
        } else {
            e.push(&name, value.to_vec());
        }
    }
    let entry = entry.ok_or(ParseError::NoDn)?.build();
    Ok(Captured { entry, password })
}

/// `<GUID=…>;<SID=…>;CN=x,…` → `CN=x,…` (samba may write the extended DN form).
fn strip_extended_dn(dn: &str) -> String {
    let mut rest = dn;
    while let Some(after) = rest.strip_prefix('<') {
        match after.split_once(">;") {
            Some((_, tail)) => rest = tail,
            None => break,
        }
    }
    rest.to_string()
}

/// The last queued password version of each account, so that a non-password change of an
/// account (which syncpasswords reports with the current cleartext) is not queued again. A
/// file per account in `<queue>/seen/`, named by a hash of the objectGUID and holding a hash
/// of pwdLastSet and msDS-KeyVersionNumber: neither reveals the password. Losing it only
/// means one harmless repeat of the same password.
struct Seen {
    dir: std::path::PathBuf,
    key: Option<String>,
    version: Option<String>,
}

impl Seen {
    fn new(queue: &Queue, entry: &Entry) -> Seen {
        let guid = entry.values("objectguid").next();
        let version = entry.first_str("pwdlastset").map(|p| {
            let kvno = entry.first_str("msds-keyversionnumber").unwrap_or("");
            hex::encode(Sha256::digest(format!("{p}/{kvno}").as_bytes()))
        });
        Seen {
            dir: queue.dir().join("seen"),
            key: guid.map(|g| hex::encode(Sha256::digest(g))),
            version,
        }
    }

    fn already_queued(&self) -> bool {
        match (&self.key, &self.version) {
            (Some(key), Some(version)) => std::fs::read_to_string(self.dir.join(key))
                .is_ok_and(|stored| stored.trim() == version),
            _ => false,
        }
    }

    fn remember(&self) {
        let (Some(key), Some(version)) = (&self.key, &self.version) else {
            return;
        };
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&self.dir);
        let tmp = self.dir.join(format!(".tmp-{key}"));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(version.as_bytes()));
        if written.is_ok() {
            let _ = std::fs::rename(&tmp, self.dir.join(key));
        }
    }
}

/// What the hook did with one object (for the reply line and the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureOutcome {
    Queued { dn: String },
    NoPassword { dn: String },
    Unchanged { dn: String },
}

/// Reads the LDIF from `input`, queues the password if there is one, and returns what
/// happened. The caller writes the reply (see [`reply`]).
pub fn capture(
    queue_dir: &Path,
    key_file: Option<&Path>,
    input: &mut dyn Read,
) -> Result<CaptureOutcome, CaptureError> {
    let text = read_all(input)?;
    let captured = parse(&text).map_err(CaptureError::Parse)?;
    let dn = captured.entry.dn.clone();
    let Some(password) = captured.password else {
        return Ok(CaptureOutcome::NoPassword { dn });
    };
    let queue = Queue::open(queue_dir, key_file, true).map_err(CaptureError::Queue)?;
    let seen = Seen::new(&queue, &captured.entry);
    if seen.already_queued() {
        return Ok(CaptureOutcome::Unchanged { dn });
    }
    queue
        .enqueue(&Item {
            entry: captured.entry,
            captured_at: Utc::now(),
            password,
        })
        .map_err(CaptureError::Queue)?;
    seen.remember();
    Ok(CaptureOutcome::Queued { dn })
}

/// The line samba-tool expects on stdout: `DONE-EXIT: …` on success (anything else makes it
/// fail the pass and hand the object over again next time, which is what a failed capture
/// needs).
pub fn reply(result: &Result<CaptureOutcome, CaptureError>) -> String {
    match result {
        Ok(CaptureOutcome::Queued { dn }) => format!("DONE-EXIT: queued password change of {dn}"),
        Ok(CaptureOutcome::NoPassword { dn }) => format!("DONE-EXIT: no password in {dn}"),
        Ok(CaptureOutcome::Unchanged { dn }) => {
            format!("DONE-EXIT: password of {dn} already queued")
        }
        Err(e) => format!("FAILED: {e}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read the LDIF on stdin: {0}")]
    Read(String),
    #[error("cannot parse the LDIF on stdin: {0}")]
    Parse(ParseError),
    #[error("cannot queue the password change: {0}")]
    Queue(QueueError),
}

fn read_all(input: &mut dyn Read) -> Result<Zeroizing<String>, CaptureError> {
    // One buffer of fixed capacity: growing a Vec would leave unzeroised copies behind.
    let mut buf = Zeroizing::new(vec![0u8; MAX_LDIF]);
    let mut len = 0;
    while let Some(free) = buf.get_mut(len..) {
        if free.is_empty() {
            return Err(CaptureError::Read(format!(
                "more than {MAX_LDIF} bytes on stdin"
            )));
        }
        match input.read(free) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CaptureError::Read(e.kind().to_string())),
        }
    }
    // default: `len` never exceeds the buffer.
    let text = std::str::from_utf8(buf.get(..len).unwrap_or_default())
        .map_err(|_| CaptureError::Read("stdin is not UTF-8".into()))?;
    Ok(Zeroizing::new(text.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use secrecy::ExposeSecret as _;
    use std::os::unix::fs::PermissionsExt as _;

    /// The shape samba-tool 4.17 writes (captured from the DC in the e2e test; folded at 78).
    const SAMPLE: &str = "dn: CN=bob,CN=Users,DC=example,DC=test\n\
objectGUID: 6f2b8a5e-1c2d-4e3f-8a9b-0c1d2e3f4a5b\n\
objectSid: S-1-5-21-1-2-3-1104\n\
sAMAccountName: bob\n\
userPrincipalName: bob@example.test\n\
userAccountControl: 512\n\
pwdLastSet: 133456789012345678\n\
msDS-KeyVersionNumber: 3\n\
virtualCryptSHA512: {CRYPT}$6$rounds=5000$abcdefgh$ijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTU\n \
VWXYZabcdef\n\
virtualClearTextUTF8:: UMOkc3N3w7ZyZCHnp5jlr4Y=\n\n";

    #[test]
    fn parses_the_cleartext_and_drops_derivatives() {
        let c = parse(SAMPLE).unwrap();
        assert_eq!(c.entry.dn, "CN=bob,CN=Users,DC=example,DC=test");
        assert_eq!(c.password.unwrap().expose_secret(), "Pässwörd!秘密");
        assert_eq!(c.entry.first_str("samaccountname"), Some("bob"));
        assert_eq!(
            c.entry.first_str("objectguid"),
            Some("6f2b8a5e-1c2d-4e3f-8a9b-0c1d2e3f4a5b")
        );
        assert!(c.entry.bytes("virtualcryptsha512").is_empty());
        assert!(c.entry.bytes(CLEARTEXT_ATTR).is_empty());
    }

    #[test]
    fn non_password_change_has_no_password() {
        let text = "# comment\ndn: CN=bob,DC=x\nuserAccountControl: 514\n";
        let c = parse(text).unwrap();
        assert!(c.password.is_none());
        assert_eq!(c.entry.first_str("useraccountcontrol"), Some("514"));
    }

    #[test]
    fn extended_dn_and_errors() {
        let c = parse("dn: <GUID=abc>;<SID=S-1-5>;CN=a,DC=x\nvirtualClearTextUTF8: pw\n").unwrap();
        assert_eq!(c.entry.dn, "CN=a,DC=x");
        assert_eq!(parse("sAMAccountName: a\n").err(), Some(ParseError::NoDn));
        assert_eq!(
            parse("dn: CN=a\nvirtualClearTextUTF8:: !!!\n").err(),
            Some(ParseError::Base64(2))
        );
        assert_eq!(
            parse("dn: CN=a\n\ndn: CN=b\n").err(),
            Some(ParseError::SeveralRecords)
        );
        // Errors never quote the value.
        let e = parse("dn: CN=a\nvirtualClearTextUTF8:: /w==\n")
            .err()
            .unwrap();
        assert_eq!(e, ParseError::NotUtf8);
    }

    /// Found by the `password_capture` fuzz target: a line `: value` (or `;x: value`) was
    /// kept as an attribute with an empty name.
    #[test]
    fn regression_fuzz_an_attribute_line_needs_a_name() {
        assert_eq!(parse("dn:\n:").err(), Some(ParseError::Syntax(2)));
        assert_eq!(
            parse("dn: CN=a\n;binary:: AAAA\n").err(),
            Some(ParseError::Syntax(2))
        );
    }

    #[test]
    fn capture_queues_once_per_password_version() {
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let q = t.path().join("q");
        let out = capture(&q, None, &mut SAMPLE.as_bytes()).unwrap();
        assert!(matches!(out, CaptureOutcome::Queued { .. }));
        assert!(reply(&Ok(out)).starts_with("DONE-EXIT: "));
        // The same state again (e.g. a userAccountControl change): not queued twice.
        let again = capture(&q, None, &mut SAMPLE.as_bytes()).unwrap();
        assert!(matches!(again, CaptureOutcome::Unchanged { .. }));
        // A new password version is queued.
        let newer = SAMPLE.replace(
            "pwdLastSet: 133456789012345678",
            "pwdLastSet: 133456789099999999",
        );
        let third = capture(&q, None, &mut newer.as_bytes()).unwrap();
        assert!(matches!(third, CaptureOutcome::Queued { .. }));
        let queue = Queue::open(&q, None, false).unwrap();
        assert_eq!(queue.list().unwrap().len(), 2);
        // No password: acknowledged, nothing queued.
        let none = capture(
            &q,
            None,
            &mut "dn: CN=x,DC=y\nuserAccountControl: 514\n".as_bytes(),
        );
        assert!(matches!(none, Ok(CaptureOutcome::NoPassword { .. })));
        assert_eq!(queue.list().unwrap().len(), 2);
        // A failure does not answer DONE-EXIT (samba-tool then retries the object).
        let bad = capture(&q, None, &mut "garbage".as_bytes());
        assert!(!reply(&bad).starts_with("DONE-EXIT"));
    }
}
