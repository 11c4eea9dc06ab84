//! What an incremental read of the directory returns (behaviour §3 "Incremental reads"): the objects
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
    /// True when nothing changed (the cheap run behaviour §3 asks for).
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

/// Groups a server may have changed without reporting them, found from a change set: see
/// [`linked_groups`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkedGroups {
    /// Image groups whose member values name an old or new DN of a changed entry, or the DN
    /// of a deleted one: read them again.
    pub stale: BTreeSet<String>,
    /// The DNs (as the server wrote them) of entries that are new to the image or whose DN
    /// changed: ask the server which groups list them now.
    pub arrived: BTreeSet<String>,
}

impl LinkedGroups {
    pub fn is_empty(&self) -> bool {
        self.stale.is_empty() && self.arrived.is_empty()
    }
}

/// The groups a server may have rewritten without reporting them.
///
/// OpenLDAP's refint overlay rewrites (or removes) a group's `member` values when a member is
/// renamed, moved or deleted, but keeps the group's entryCSN, so syncrepl never reports the
/// group. So the image's groups that list a DN a change touched are stale, and an entry that
/// arrives at a new DN (created, renamed, moved, back in scope) may already be listed by
/// groups the image has with another value (the DN it had outside the scope, which the image
/// never saw). `before` holds the image entries of the changed ids as they were (users and
/// groups), `groups` the image's groups; DNs compare normalised ([`super::normalize_dn`]).
/// Groups the changes themselves upsert or delete are left out of `stale`.
pub fn linked_groups(
    changes: &[&ChangeSet],
    before: &BTreeMap<String, Entry>,
    groups: &BTreeMap<String, Entry>,
    member_attribute: &str,
    stable_id: impl Fn(&Entry) -> Option<String>,
) -> LinkedGroups {
    let mut out = LinkedGroups::default();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut dns: BTreeSet<String> = BTreeSet::new();
    for set in changes {
        for e in &set.upserts {
            let id = stable_id(e);
            let new = super::normalize_dn(&e.dn);
            match id.as_ref().and_then(|id| before.get(id)) {
                Some(old) if super::normalize_dn(&old.dn) == new => {}
                Some(old) => {
                    dns.insert(super::normalize_dn(&old.dn));
                    out.arrived.insert(e.dn.clone());
                }
                None => {
                    out.arrived.insert(e.dn.clone());
                }
            }
            dns.insert(new);
            touched.extend(id);
        }
        for id in &set.deleted {
            if let Some(old) = before.get(id) {
                dns.insert(super::normalize_dn(&old.dn));
            }
            touched.insert(id.clone());
        }
    }
    out.stale = groups
        .iter()
        .filter(|(id, _)| !touched.contains(*id))
        .filter(|(_, g)| {
            g.strs(member_attribute)
                .iter()
                .any(|m| dns.contains(&super::normalize_dn(m)))
        })
        .map(|(id, _)| id.clone())
        .collect();
    out
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

    #[test]
    fn linked_groups_name_the_groups_that_list_an_old_or_new_dn() {
        let user = |uuid: &str, dn: &str| Entry::new(dn).with("entryUUID", uuid);
        let group = |uuid: &str, members: &[&str]| {
            members.iter().fold(
                Entry::new(format!("cn=g{uuid},dc=x")).with("entryUUID", uuid),
                |e, m| e.with("member", m),
            )
        };
        let before: BTreeMap<String, Entry> = [
            ("u1", "uid=a,dc=x"),
            ("u2", "uid=b,dc=x"),
            ("u3", "uid=c,dc=x"),
        ]
        .into_iter()
        .map(|(id, dn)| (id.to_string(), user(id, dn)))
        .collect();
        let groups: BTreeMap<String, Entry> = [
            // lists the renamed user's old DN (spelled differently)
            ("g1", group("g1", &["UID=a, dc=x"])),
            // lists the deleted user
            ("g2", group("g2", &["uid=b,dc=x"])),
            // lists the DN a new entry takes
            ("g3", group("g3", &["uid=new,dc=x"])),
            // lists an unchanged user only
            ("g4", group("g4", &["uid=c,dc=x"])),
            // lists the renamed user but is itself upserted: already read
            ("g5", group("g5", &["uid=a,dc=x"])),
        ]
        .into_iter()
        .map(|(id, e)| (id.to_string(), e))
        .collect();
        let users = ChangeSet {
            upserts: vec![user("u1", "uid=a2,dc=x"), user("u9", "uid=new,dc=x")],
            deleted: BTreeSet::from(["u2".to_string()]),
            ..ChangeSet::default()
        };
        let group_changes = ChangeSet {
            upserts: vec![group("g5", &["uid=a2,dc=x"])],
            ..ChangeSet::default()
        };
        let linked = linked_groups(&[&users, &group_changes], &before, &groups, "member", id);
        assert_eq!(
            linked.stale.into_iter().collect::<Vec<_>>(),
            ["g1", "g2", "g3"]
        );
        // The renamed user, the new one and the renamed group (not the deleted user).
        assert_eq!(
            linked.arrived.into_iter().collect::<Vec<_>>(),
            ["cn=gg5,dc=x", "uid=a2,dc=x", "uid=new,dc=x"]
        );
    }
}
