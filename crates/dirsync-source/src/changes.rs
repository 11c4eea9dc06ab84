//! What an incremental read of the directory returns (SPEC 3 "Incremental reads"): the objects
//! that changed since a stored cursor, the objects positively known to be gone, and the next
//! cursor. Each incremental reader (OpenLDAP syncrepl, AD DirSync, AD uSNChanged) produces a
//! [`ChangeSet`]; applying it to the agent's cached image of the directory is the caller's job.
//! This module knows no LDAP connection and no SCIM.

use std::collections::{BTreeMap, BTreeSet};

use crate::Entry;

/// Which incremental mechanism a cursor belongs to; a cursor is never handed to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorKind {
    /// RFC 4533 syncrepl cookie (OpenLDAP).
    Syncrepl,
    /// AD DirSync control cookie.
    DirSync,
    /// AD `uSNChanged` high-water mark, valid only on the same DC with the same invocationId.
    Usn,
}

/// An opaque position in the directory's change stream, as stored in the state database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub kind: CursorKind,
    /// The server the cursor is tied to (URL or DC host name) and, for USNs, its
    /// invocationId: a different value means the cursor is invalid (full reconcile).
    pub origin: String,
    /// The mechanism's own value: the syncrepl cookie, the base64 DirSync cookie, or the
    /// highest committed USN as decimal text.
    pub value: String,
}

/// Changes since a cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Objects added or modified since the cursor, each complete (every requested attribute,
    /// not only the changed ones), so the caller can map them without the old version.
    pub upserts: Vec<Entry>,
    /// Stable ids (entryUUID / objectGUID text, as `stable_id` returns them) of objects that
    /// were deleted or no longer match the search: positive evidence, never mere absence.
    pub deleted: BTreeSet<String>,
    /// RFC 4533 present phase: when set, these are *all* the ids that still match; every
    /// cached object not listed (and not in `upserts`) is gone.
    pub present: Option<BTreeSet<String>>,
    /// The cursor to store, in the same transaction as the applied changes.
    pub next: Option<Cursor>,
    /// The server refused the cursor (e-syncRefreshRequired, a DirSync cookie error, another
    /// DC or invocationId): the caller must fall back to a full reconcile. Says why.
    pub full_reload_required: Option<String>,
}

impl ChangeSet {
    /// True when nothing changed (the cheap run SPEC 3 asks for).
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty()
            && self.deleted.is_empty()
            && self.present.is_none()
            && self.full_reload_required.is_none()
    }
}

/// Brings a cached image of the directory (stable id → entry) up to date with a change set:
/// the present set first (everything unlisted is gone), then deletions, then upserts. Entries
/// without a stable id are not cached. Returns how many cached objects were removed.
pub fn apply(
    image: &mut BTreeMap<String, Entry>,
    changes: &ChangeSet,
    stable_id: impl Fn(&Entry) -> Option<String>,
) -> usize {
    let before = image.len();
    let upserted: BTreeSet<String> = changes.upserts.iter().filter_map(&stable_id).collect();
    if let Some(present) = &changes.present {
        image.retain(|id, _| present.contains(id) || upserted.contains(id));
    }
    for id in &changes.deleted {
        image.remove(id);
    }
    let removed = before.saturating_sub(image.len());
    for e in &changes.upserts {
        if let Some(id) = stable_id(e) {
            image.insert(id, e.clone());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn id(e: &Entry) -> Option<String> {
        e.first_str("entryuuid").map(str::to_string)
    }

    fn entry(uuid: &str, cn: &str) -> Entry {
        Entry::new(format!("cn={cn},dc=x"))
            .with("entryUUID", uuid)
            .with("cn", cn)
    }

    #[test]
    fn present_phase_then_deletes_then_upserts() {
        let mut image: BTreeMap<String, Entry> = [("1", "a"), ("2", "b"), ("3", "c")]
            .into_iter()
            .map(|(u, c)| (u.to_string(), entry(u, c)))
            .collect();
        let changes = ChangeSet {
            upserts: vec![entry("2", "b2"), entry("4", "d")],
            deleted: BTreeSet::from(["1".to_string()]),
            // "3" is not present any more; "2" is upserted although not listed.
            present: Some(BTreeSet::from(["1".to_string()])),
            ..ChangeSet::default()
        };
        assert!(!changes.is_empty());
        let removed = apply(&mut image, &changes, id);
        assert_eq!(removed, 2);
        assert_eq!(image.keys().collect::<Vec<_>>(), ["2", "4"]);
        assert_eq!(image["2"].first_str("cn"), Some("b2"));
        assert!(ChangeSet::default().is_empty());
    }
}
