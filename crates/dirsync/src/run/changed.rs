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
    pub ownership: super::Ownership,
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

/// What an incremental run brings to [`prepare`]: the change set, the image's groups, the
/// directory kind, and whether groups carry the ownership mark.
pub(super) struct ChangedRead<'a> {
    pub changes: &'a DirChanges,
    pub groups: BTreeMap<String, crate::source::Entry>,
    pub kind: DirectoryKind,
    pub marks_groups: bool,
}

/// The planner's input over the changed users, or why the whole image must be planned.
pub(super) async fn prepare(
    config: &Config,
    state: &StateStore,
    read: ChangedRead<'_>,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut Report,
) -> Prepared {
    let ChangedRead {
        changes,
        groups,
        kind,
        marks_groups,
    } = read;
    if let Some(reason) = whole_plan_reason(config) {
        return Prepared::Whole(reason.into());
    }
    let mut t = std::time::Instant::now();
    let LoadedImage {
        image_users,
        candidates,
        mut image,
        cache,
        ownership,
    } = match load_image(state, changes, groups, kind).await {
        Ok(loaded) => loaded,
        Err(failure) => return failure.into(),
    };
    super::phase(
        "load the image keys, the target cache and the ownership records",
        &mut t,
    );
    let (changed_ids, removals) = apply_changes(config, &mut image, changes, kind);

    let mapped = map_changed_users(config, kind, &image, now, report);
    let unchanged = Unchanged::new(&image_users, &candidates);
    // The whole plan reports two directory users with one externalId or userName and syncs
    // neither; seeing only one of them, this plan could not.
    if unchanged.collides_with(&mapped) {
        return Prepared::Whole(
            "a changed user has the externalId or userName of an unchanged one".into(),
        );
    }
    let (desired_groups, unmapped_groups) =
        map_all_groups(config, kind, &image, marks_groups, &unchanged, &mapped);
    super::phase("map the changed users and every group", &mut t);

    let (anchors, names) = touched_keys(&candidates, &image_users, &mapped);
    let (snapshot, removable) = match cached_snapshot(state, cache, &anchors, &names).await {
        Ok(cached) => cached,
        Err(failure) => return failure.into(),
    };
    super::phase("load the touched users' cache rows", &mut t);

    let image = ImageWrite {
        upserts: changed_rows(kind, image, &changed_ids, mapped.keys),
        removals,
    };
    let read_users = unchanged.keys.len() + mapped.users.len() + mapped.unmapped.len();
    let unchanged_users = unchanged.anchors.len();
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
            unchanged_anchors: unchanged.anchors,
        }),
    };
    Prepared::Ready(Box::new(ChangedInput {
        desired,
        snapshot,
        ownership,
        image,
        unchanged_users,
        read_users,
        read_groups,
    }))
}

/// The state (named by the first field) could not be read: becomes [`Prepared::Failed`].
struct StateFailure(&'static str, crate::state::StateError);

impl From<StateFailure> for Prepared {
    fn from(failure: StateFailure) -> Prepared {
        Prepared::Failed(failure.0, failure.1)
    }
}

/// The state as the changes find it: the keys of every image user, the ids the changes may
/// concern, and the image rows of those users (with every group); the target cache without
/// the users' resources; the ownership records.
struct LoadedImage {
    image_users: HashMap<String, ImageKeys>,
    candidates: BTreeSet<String>,
    image: Image,
    cache: LightCache,
    ownership: super::Ownership,
}

/// The target cache as [`load_image`] reads it: every user without its resource, every group.
struct LightCache {
    users: Vec<CachedObject>,
    groups: Vec<CachedObject>,
}

/// Loads the image user keys, the light target cache and the ownership records at once (four
/// independent reads of about a row per user, on separate connections), then the image rows
/// of the users the changes may concern.
async fn load_image(
    state: &StateStore,
    changes: &DirChanges,
    groups: BTreeMap<String, crate::source::Entry>,
    kind: DirectoryKind,
) -> Result<LoadedImage, StateFailure> {
    let image_failed = |e| StateFailure("the directory image", e);
    let cache_failed = |e| StateFailure("the target cache", e);
    let (image_users, users, cached_groups, ownership) = tokio::try_join!(
        async { state.image_user_keys().await.map_err(image_failed) },
        async { state.cached_users_light().await.map_err(cache_failed) },
        async {
            state
                .cached_objects(ObjectKind::Group)
                .await
                .map_err(cache_failed)
        },
        async {
            super::load_ownership(state)
                .await
                .map_err(|(what, e)| StateFailure(what, e))
        },
    )?;
    let image_users: HashMap<String, ImageKeys> = image_users.into_iter().collect();
    let candidates = candidate_ids(changes, kind, &image_users);
    let ids: Vec<String> = candidates.iter().cloned().collect();
    let users_image = state
        .image_entries(ObjectKind::User, &ids)
        .await
        .map_err(image_failed)?;
    Ok(LoadedImage {
        image_users,
        candidates,
        image: Image {
            users: users_image,
            groups,
        },
        cache: LightCache {
            users,
            groups: cached_groups,
        },
        ownership,
    })
}

/// The changes applied to the loaded image: the keys of the rows they changed, and of those
/// they removed.
fn apply_changes(
    config: &Config,
    image: &mut Image,
    changes: &DirChanges,
    kind: DirectoryKind,
) -> (HashSet<super::ImageKey>, Vec<super::ImageKey>) {
    let before = image.hashes();
    image.apply(changes, kind, config);
    image.changes_since(&before)
}

/// The changed users as they are now, mapped.
fn map_changed_users(
    config: &Config,
    kind: DirectoryKind,
    image: &Image,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut Report,
) -> desired::MappedUsers {
    let changed_entries: Vec<crate::source::Entry> = image.users.values().cloned().collect();
    desired::map_users(config, kind, &changed_entries, now, report)
}

/// Unchanged users: every image user the changes did not name, by the keys its row keeps.
struct Unchanged<'a> {
    keys: Vec<&'a ImageKeys>,
    anchors: HashSet<String>,
    names: HashSet<&'a str>,
}

impl<'a> Unchanged<'a> {
    /// The image users not among the `candidates`.
    fn new(
        image_users: &'a HashMap<String, ImageKeys>,
        candidates: &BTreeSet<String>,
    ) -> Unchanged<'a> {
        let keys: Vec<&ImageKeys> = image_users
            .iter()
            .filter(|(k, _)| !candidates.contains(*k))
            .map(|(_, keys)| keys)
            .collect();
        let anchors: HashSet<String> = keys.iter().filter_map(|k| k.anchor.clone()).collect();
        let names: HashSet<&str> = keys.iter().filter_map(|k| k.name_key.as_deref()).collect();
        Unchanged {
            keys,
            anchors,
            names,
        }
    }

    /// Whether a changed user has the externalId or userName of an unchanged one.
    fn collides_with(&self, mapped: &desired::MappedUsers) -> bool {
        mapped.users.iter().any(|u| {
            self.anchors.contains(&u.anchor)
                || self.names.contains(u.user_name.to_lowercase().as_str())
        })
    }
}

/// Every group mapped, with its members: unchanged users by their stored keys, changed users
/// by their fresh ones.
fn map_all_groups(
    config: &Config,
    kind: DirectoryKind,
    image: &Image,
    marks_groups: bool,
    unchanged: &Unchanged<'_>,
    mapped: &desired::MappedUsers,
) -> (Vec<crate::plan::DesiredGroup>, Vec<mapping::MappingError>) {
    let mut by_key: HashMap<String, String> = HashMap::new();
    for keys in unchanged.keys.iter().copied().chain(mapped.keys.values()) {
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
    (desired::with_members(groups, members), unmapped_groups)
}

/// Target users the changes can touch, as anchors and lower-case names: the old and new ones
/// of the changed users (a rename can collide with a name, a deletion frees one).
fn touched_keys(
    candidates: &BTreeSet<String>,
    image_users: &HashMap<String, ImageKeys>,
    mapped: &desired::MappedUsers,
) -> (Vec<String>, Vec<String>) {
    let mut anchors: BTreeSet<String> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for id in candidates {
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
    (anchors.into_iter().collect(), names.into_iter().collect())
}

/// The target snapshot from the cache: the users the changes can touch whole, every other
/// user in its light form, and every group; with the ids of the touched users.
async fn cached_snapshot(
    state: &StateStore,
    cache: LightCache,
    anchors: &[String],
    names: &[String],
) -> Result<(TargetSnapshot, HashSet<String>), StateFailure> {
    let touched = state
        .cached_matching(ObjectKind::User, anchors, names)
        .await
        .map_err(|e| StateFailure("the target cache", e))?;
    let LightCache {
        users: mut light,
        groups,
    } = cache;
    let removable: HashSet<String> = touched.iter().map(|o| o.id.clone()).collect();
    light.retain(|o| !removable.contains(&o.id));
    let cache: Vec<CachedObject> = light.into_iter().chain(touched).chain(groups).collect();
    // No scope filter here (see `whole_plan_reason`): the lean form.
    Ok((TargetSnapshot::from_cache(cache, false), removable))
}

/// The image rows of the changed entries, with the keys the mapping gave them.
fn changed_rows(
    kind: DirectoryKind,
    image: Image,
    changed_ids: &HashSet<(ObjectKind, String)>,
    mut keys: HashMap<String, ImageKeys>,
) -> Vec<crate::state::ImageRow> {
    let Image { users, groups } = image;
    super::image_rows(
        kind,
        users.into_values().collect(),
        groups.into_values().collect(),
        Some(changed_ids),
        &mut keys,
    )
}
