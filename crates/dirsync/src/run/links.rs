//! Groups an OpenLDAP server changed without reporting them. The refint overlay rewrites a
//! group's `member` values when a member is renamed or moved, and removes them when it is
//! deleted, but keeps the group's entryCSN: syncrepl never reports such a group, and the
//! cached image would keep the old values until the next full reconcile. So before an
//! incremental run plans, two kinds of groups are read again from the server and join the
//! change set as upserts (`source::changes::linked_groups` finds them):
//! - the image's groups that list a DN the changes touch (an old or new DN of a changed
//!   entry, the DN of a deleted one);
//! - the groups that list, now, an entry that arrived at a new DN (created, renamed, moved,
//!   back in scope): while it was outside the scope the image never saw its DN, so the image
//!   cannot know which groups refint rewrote when it came back.
//!
//! Whatever the server holds for those groups, the image then holds too. Active Directory
//! needs none of this here: its reader re-reads linked objects itself. This module does not
//! plan, map or write anything; it only completes a change set.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::mapping::DirectoryKind;
use crate::source::{self, Entry, changes, syncrepl};
use crate::state::{ObjectKind, StateError, StateStore};

#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error("the cached directory image: {0}")]
    State(#[from] StateError),
    #[error(transparent)]
    Directory(#[from] super::DirectoryError),
}

/// Adds to `changes` the groups of `groups` (the image's) that list a DN the changes touch,
/// as the server holds them now. Returns how many were read again.
pub(super) async fn refresh(
    config: &Config,
    state: &StateStore,
    kind: DirectoryKind,
    changes: &mut syncrepl::DirectoryChanges,
    groups: &BTreeMap<String, Entry>,
) -> Result<usize, LinkError> {
    let user_ids: Vec<String> = changes
        .users
        .upserts
        .iter()
        .filter_map(syncrepl::stable_id)
        .chain(changes.users.deleted.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut before = state.image_entries(ObjectKind::User, &user_ids).await?;
    let group_ids = changes
        .groups
        .upserts
        .iter()
        .filter_map(syncrepl::stable_id)
        .chain(changes.groups.deleted.iter().cloned());
    for id in group_ids {
        if let Some(g) = groups.get(&id) {
            before.insert(id, g.clone());
        }
    }
    let member_attribute = config
        .ad
        .ldap
        .search
        .group
        .member_attribute
        .as_deref()
        .unwrap_or(kind.defaults().member_attribute);
    let linked = changes::linked_groups(
        &[&changes.users, &changes.groups],
        &before,
        groups,
        member_attribute,
        syncrepl::stable_id,
    );
    if linked.is_empty() {
        return Ok(0);
    }
    // A dropped connection: read again from the start, as the change read does.
    let found = source::reconnect::reconnecting(config.sync.unreachable_after.0, || {
        connect_and_read(config, member_attribute, &linked)
    })
    .await
    .map_err(LinkError::Directory)?
    .value;
    // A group the change set has already is as the server holds it.
    let reported: BTreeSet<String> = changes
        .groups
        .upserts
        .iter()
        .filter_map(syncrepl::stable_id)
        .collect();
    let before = changes.groups.upserts.len();
    changes.groups.upserts.extend(
        found
            .into_iter()
            .filter(|e| syncrepl::stable_id(e).is_none_or(|id| !reported.contains(&id))),
    );
    Ok(changes.groups.upserts.len() - before)
}

/// One attempt of [`read_linked`] on a new connection.
async fn connect_and_read(
    config: &Config,
    member_attribute: &str,
    linked: &changes::LinkedGroups,
) -> Result<Vec<Entry>, super::DirectoryError> {
    let (ldap, kind) = super::connect(config).await?;
    let searches = source::ldap_searches(&config.ad.ldap, &config.iid.scim.attribute, kind);
    let found = read_linked(&ldap, &searches, member_attribute, linked).await;
    ldap.close().await;
    Ok(found?)
}

/// The groups that list an arrived DN now, and the stale ones not among them, as the server
/// holds them; each once.
async fn read_linked(
    ldap: &source::ldap::LdapSource,
    searches: &source::DirectorySearches,
    member_attribute: &str,
    linked: &changes::LinkedGroups,
) -> Result<Vec<Entry>, syncrepl::SyncreplError> {
    let mut found: BTreeMap<String, Entry> = BTreeMap::new();
    if !linked.arrived.is_empty() {
        let listing =
            syncrepl::groups_listing(ldap, searches, member_attribute, &linked.arrived).await?;
        found.extend(
            listing
                .into_iter()
                .filter_map(|e| syncrepl::stable_id(&e).map(|id| (id, e))),
        );
    }
    let rest: BTreeSet<String> = linked
        .stale
        .iter()
        .filter(|id| !found.contains_key(*id))
        .cloned()
        .collect();
    if !rest.is_empty() {
        let reread = syncrepl::reread_groups(ldap, searches, &rest).await?;
        found.extend(
            reread
                .into_iter()
                .filter_map(|e| syncrepl::stable_id(&e).map(|id| (id, e))),
        );
    }
    Ok(found.into_values().collect())
}
