//! The incremental plan over the changed users (issue #5). From a change set and the stored
//! image it builds the desired state of the users the changes touch and of every group, and
//! the target snapshot they need: every cached user, but only those the changes can touch
//! with their resource. Unchanged users are neither decoded nor mapped again; the keys their
//! image rows keep (anchor, userName, member keys) stand in for them, so the cost of a run
//! follows the size of the change, plus one pass over small per-user rows and the groups.
//!
//! It knows when this shortcut would not give the whole plan's answer and says why
//! ([`Prepared::Whole`]); the caller then plans the whole image.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::config::Config;
use crate::mapping::{self, DirectoryKind};
use crate::plan::ChangedUsers;
use crate::report::Report;
use crate::state::{CachedObject, ImageKeys, ObjectKind, StateStore};
use crate::target::TargetSnapshot;

use super::desired::{self, Desired};
use super::{DirChanges, Image, ImageWrite, stable_id};

/// Everything an incremental plan over the changed users needs.
pub(super) struct ChangedInput {
    pub desired: Desired,
    pub snapshot: TargetSnapshot,
    pub image: ImageWrite,
    /// Users the changes did not touch (for the report).
    pub unchanged_users: usize,
    pub read_users: usize,
    pub read_groups: usize,
}

pub(super) enum Prepared {
    Ready(Box<ChangedInput>),
    /// Plan the whole image instead, for this reason.
    Whole(String),
    /// The state (named by the first field) could not be read: the run stops (exit 5).
    Failed(&'static str, crate::state::StateError),
}

/// Why this configuration needs the whole image in every incremental plan, if it does.
pub(super) fn whole_plan_reason(config: &Config) -> Option<&'static str> {
    let filter = &config.iid.scim.filter;
    // A scope filter is evaluated on target resources, which unchanged users do not load.
    (filter.user.is_some() || filter.group.is_some()).then_some("iid.scim.filter is set")
}

/// The stable ids of users a change set may concern (upserted, deleted, or missing from a
/// present phase), given the ids the image holds.
fn candidate_ids(
    changes: &DirChanges,
    kind: DirectoryKind,
    image_users: &HashMap<String, ImageKeys>,
) -> BTreeSet<String> {
    let id = stable_id(kind);
    let mut out = BTreeSet::new();
    let sets = match changes {
        DirChanges::OpenLdap(c) => vec![&c.users],
        // AD's change set mixes users and groups; ids that are groups find no user row.
        DirChanges::Ad(c) => vec![c],
    };
    for set in sets {
        out.extend(set.upserts.iter().filter_map(&id));
        out.extend(set.deleted.iter().cloned());
        if let Some(present) = &set.present {
            out.extend(
                image_users
                    .keys()
                    .filter(|k| !present.contains(*k))
                    .cloned(),
            );
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn prepare(
    config: &Config,
    state: &StateStore,
    changes: &DirChanges,
    groups: BTreeMap<String, crate::source::Entry>,
    kind: DirectoryKind,
    marks_groups: bool,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut Report,
) -> Prepared {
    if let Some(reason) = whole_plan_reason(config) {
        return Prepared::Whole(reason.into());
    }
    let fail = |what: &'static str, e: crate::state::StateError| Prepared::Failed(what, e);
    let mut t = std::time::Instant::now();
    let image_users: HashMap<String, ImageKeys> = match state.image_user_keys().await {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => return fail("the directory image", e),
    };
    let candidates = candidate_ids(changes, kind, &image_users);
    let ids: Vec<String> = candidates.iter().cloned().collect();
    let mut image = Image::default();
    match state.image_entries(ObjectKind::User, &ids).await {
        Ok(users) => image.users = users,
        Err(e) => return fail("the directory image", e),
    }
    image.groups = groups;
    super::phase("load the image rows", &mut t);
    let before = image.hashes();
    image.apply(changes, kind, config);
    let (changed_ids, removals) = image.changes_since(&before);
    drop(before);

    // The changed users as they are now, mapped.
    let changed_entries: Vec<crate::source::Entry> = image.users.values().cloned().collect();
    let mapped = desired::map_users(config, kind, &changed_entries, now, report);
    drop(changed_entries);

    // Unchanged users: every image user the changes did not name.
    let unchanged: Vec<&ImageKeys> = image_users
        .iter()
        .filter(|(k, _)| !candidates.contains(*k))
        .map(|(_, keys)| keys)
        .collect();
    let unchanged_anchors: HashSet<String> =
        unchanged.iter().filter_map(|k| k.anchor.clone()).collect();
    let unchanged_names: HashSet<&str> = unchanged
        .iter()
        .filter_map(|k| k.name_key.as_deref())
        .collect();
    // The whole plan reports two directory users with one externalId or userName and syncs
    // neither; seeing only one of them, this plan could not.
    if mapped.users.iter().any(|u| {
        unchanged_anchors.contains(&u.anchor)
            || unchanged_names.contains(u.user_name.to_lowercase().as_str())
    }) {
        return Prepared::Whole(
            "a changed user has the externalId or userName of an unchanged one".into(),
        );
    }

    // Members: unchanged users by their stored keys, changed users by their fresh ones.
    let mut by_key: HashMap<String, String> = HashMap::new();
    for keys in &unchanged {
        if let Some(anchor) = &keys.anchor {
            for k in &keys.member_keys {
                by_key.insert(k.clone(), anchor.clone());
            }
        }
    }
    for keys in mapped.keys.values() {
        if let Some(anchor) = &keys.anchor {
            for k in &keys.member_keys {
                by_key.insert(k.clone(), anchor.clone());
            }
        }
    }
    let (groups, unmapped_groups) =
        desired::map_groups(config, kind, image.groups.values(), marks_groups);
    let members =
        mapping::resolve_members_by_key(&desired::member_spec(config, kind), &by_key, &groups);
    drop(by_key);
    let desired_groups = desired::with_members(groups, members);

    super::phase("map the changed users and every group", &mut t);
    // Target users the changes can touch: by the old and new anchors and names of the
    // changed users (a rename can collide with a name, a deletion frees one).
    let mut anchors: BTreeSet<String> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for id in &candidates {
        if let Some(old) = image_users.get(id) {
            anchors.extend(old.anchor.clone());
            names.extend(old.name_key.clone());
        }
    }
    for u in &mapped.users {
        anchors.insert(u.anchor.clone());
        names.insert(u.user_name.to_lowercase());
    }
    for e in &mapped.unmapped {
        anchors.extend(e.anchor.clone());
        names.extend(e.user_name.as_ref().map(|n| n.to_lowercase()));
    }
    let anchors: Vec<String> = anchors.into_iter().collect();
    let names: Vec<String> = names.into_iter().collect();
    let touched = match state
        .cached_matching(ObjectKind::User, &anchors, &names)
        .await
    {
        Ok(t) => t,
        Err(e) => return fail("the target cache", e),
    };
    let mut light = match state.cached_users_light().await {
        Ok(l) => l,
        Err(e) => return fail("the target cache", e),
    };
    let removable: HashSet<String> = touched.iter().map(|o| o.id.clone()).collect();
    light.retain(|o| !removable.contains(&o.id));
    let cached_groups = match state.cached_objects(ObjectKind::Group).await {
        Ok(g) => g,
        Err(e) => return fail("the target cache", e),
    };
    let cache: Vec<CachedObject> = light
        .into_iter()
        .chain(touched)
        .chain(cached_groups)
        .collect();
    // No scope filter here (see `whole_plan_reason`): the lean form.
    let snapshot = TargetSnapshot::from_cache(cache, false);
    super::phase("load the target cache", &mut t);

    let mut keys = mapped.keys;
    let Image { users, groups } = image;
    let upserts = super::image_rows(
        kind,
        users.into_values().collect(),
        groups.into_values().collect(),
        Some(&changed_ids),
        &mut keys,
    );
    let changed_present = mapped.users.len() + mapped.unmapped.len();
    let read_users = unchanged.len() + changed_present;
    let unchanged_users = unchanged_anchors.len();
    let read_groups = desired_groups.len() + unmapped_groups.len();
    let desired = Desired {
        users: mapped.users,
        unmapped_users: mapped.unmapped,
        groups: desired_groups,
        unmapped_groups,
        read_complete: true,
        unchanged_anchors: desired::AnchorSet::default(),
        changed_users_only: Some(ChangedUsers {
            removable,
            unchanged_anchors,
        }),
    };
    Prepared::Ready(Box::new(ChangedInput {
        desired,
        snapshot,
        image: ImageWrite { upserts, removals },
        unchanged_users,
        read_users,
        read_groups,
    }))
}
