//! Groups an OpenLDAP server changed without reporting them. The refint overlay rewrites a
//! group's `member` values when a member is renamed or moved, and removes them when it is
//! deleted, but keeps the group's entryCSN: syncrepl never reports such a group, and the
//! cached image would keep the old values until the next full reconcile. So before an
//! incremental run plans, the groups of the image that list a DN the changes touch (an old
//! or new DN of a changed entry, the DN of a deleted one) are read again from the server
//! and join the change set as upserts; whatever the server holds, the image then holds too.
//! Active Directory needs none of this here: its reader re-reads linked objects itself.
//!
//! This module does not plan, map or write anything; it only completes a change set.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::mapping::DirectoryKind;
use crate::source::{self, Entry, changes, syncrepl};
use crate::state::{ObjectKind, StateError, StateStore};

#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error("the cached directory image: {0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Directory(String),
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
    let (ldap, kind) = super::connect(config).await.map_err(LinkError::Directory)?;
    let searches = source::ldap_searches(&config.ad.ldap, &config.iid.scim.attribute, kind);
    let reread = syncrepl::reread_groups(&ldap, &searches, &linked).await;
    ldap.close().await;
    let reread = reread.map_err(|e| LinkError::Directory(e.to_string()))?;
    let count = reread.len();
    changes.groups.upserts.extend(reread);
    Ok(count)
}
