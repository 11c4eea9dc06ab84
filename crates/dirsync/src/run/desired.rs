//! What the directory wants, mapped, and the planner's input around it. The desired state
//! comes from a whole read (full runs, and incremental runs that plan the whole image) or
//! from a change set over the stored image ([`super::changed`]); either way it ends in the
//! same [`PlanInput`], so the planner cannot tell the two apart except by
//! `changed_users_only`.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::mapping::{self, DirectoryKind, MappedGroup, MappedUser, MappingError, MemberSpec};
use crate::plan::{
    ChangedUsers, DesiredGroup, Ownership, PlanInput, Scope, TargetKind, Thresholds,
};
use crate::report::Report;
use crate::source::Entry;
use crate::source_mark;
use crate::state::{ImageKeys, ObjectRecord};
use crate::target;

use super::SyncOptions;

/// The mapped directory, ready for [`plan_input`].
#[derive(Default)]
pub(super) struct Desired {
    pub users: Vec<MappedUser>,
    pub unmapped_users: Vec<MappingError>,
    pub groups: Vec<DesiredGroup>,
    pub unmapped_groups: Vec<MappingError>,
    pub read_complete: bool,
    /// Stable id → what the mapping made of the user entry, for the image rows.
    pub user_keys: HashMap<String, ImageKeys>,
    /// In a full run with a previous image: anchors of entries unchanged since it (drift).
    pub unchanged_anchors: HashSet<String>,
    pub changed_users_only: Option<ChangedUsers>,
}

/// How member values name users, from `ad.ldap.search.group` and the directory kind.
pub(super) fn member_spec(config: &Config, kind: DirectoryKind) -> MemberSpec {
    let defaults = kind.defaults();
    MemberSpec {
        member_user_attribute: config
            .ad
            .ldap
            .search
            .group
            .member_user_attribute
            .clone()
            .unwrap_or_else(|| defaults.member_user_attribute.to_string()),
        flatten_nested_groups: config.sync.flatten_nested_groups,
    }
}

/// The mapping of user entries: mapped users (with the index of their entry), failures, and
/// the image keys of every entry that has a stable id.
pub(super) struct MappedUsers {
    pub users: Vec<(usize, MappedUser)>,
    pub unmapped: Vec<MappingError>,
    pub keys: HashMap<String, ImageKeys>,
}

pub(super) fn map_users(
    config: &Config,
    kind: DirectoryKind,
    entries: &[Entry],
    now: DateTime<Utc>,
    report: &mut Report,
) -> MappedUsers {
    let id = super::stable_id(kind);
    let spec = member_spec(config, kind);
    let mut out = MappedUsers {
        users: Vec::new(),
        unmapped: Vec::new(),
        keys: HashMap::new(),
    };
    for (i, entry) in entries.iter().enumerate() {
        let mut keys = ImageKeys {
            member_keys: mapping::member_keys(&spec, entry),
            ..ImageKeys::default()
        };
        match mapping::map_user(entry, &config.iid.scim.attribute.user, kind, now) {
            Ok(u) => {
                report
                    .warnings
                    .extend(u.warnings.iter().map(|w| format!("{}: {w}", u.dn)));
                keys.anchor = Some(u.anchor.clone());
                keys.name_key = Some(u.user_name.to_lowercase());
                out.users.push((i, u));
            }
            Err(e) => out.unmapped.push(e),
        }
        if let Some(k) = id(entry) {
            out.keys.insert(k, keys);
        }
    }
    out
}

/// Maps group entries (members still as raw values); stamps the ownership mark when the
/// target takes it (SPEC 4.3).
pub(super) fn map_groups<'e>(
    config: &Config,
    kind: DirectoryKind,
    entries: impl IntoIterator<Item = &'e Entry>,
    marks_groups: bool,
) -> (Vec<MappedGroup>, Vec<MappingError>) {
    let member_attribute = config
        .ad
        .ldap
        .search
        .group
        .member_attribute
        .clone()
        .unwrap_or_else(|| kind.defaults().member_attribute.to_string());
    let mut groups = Vec::new();
    let mut unmapped = Vec::new();
    for entry in entries {
        match mapping::map_group(
            entry,
            &config.iid.scim.attribute.group,
            kind,
            &member_attribute,
        ) {
            Ok(mut g) => {
                if marks_groups {
                    source_mark::stamp(&mut g.resource, &config.ad.ldap.base_dn, &g.dn);
                }
                groups.push(g)
            }
            Err(e) => unmapped.push(e),
        }
    }
    (groups, unmapped)
}

/// Groups with their resolved member anchors (`members` in the same order).
pub(super) fn with_members(
    groups: Vec<MappedGroup>,
    members: Vec<Vec<String>>,
) -> Vec<DesiredGroup> {
    groups
        .into_iter()
        .zip(members)
        .map(|(group, member_anchors)| DesiredGroup {
            group,
            member_anchors,
        })
        .collect()
}

/// The desired state of a whole read. `unchanged`, in a full run with a previous image,
/// tells the entries the last run saw as they are now (their anchors are collected).
pub(super) fn from_read(
    config: &Config,
    kind: DirectoryKind,
    read: &crate::source::DirectoryRead,
    marks_groups: bool,
    now: DateTime<Utc>,
    report: &mut Report,
    unchanged: Option<&dyn Fn(&Entry) -> bool>,
) -> Desired {
    let mapped = map_users(config, kind, &read.users, now, report);
    let (groups, unmapped_groups) = map_groups(config, kind, &read.groups, marks_groups);
    let spec = member_spec(config, kind);
    let pairs: Vec<(&Entry, &MappedUser)> = mapped
        .users
        .iter()
        .map(|(i, u)| (&read.users[*i], u))
        .collect();
    let members = mapping::resolve_members(&spec, &pairs, &groups);
    drop(pairs);
    let mut unchanged_anchors = HashSet::new();
    if let Some(same) = unchanged {
        for (i, u) in &mapped.users {
            if same(&read.users[*i]) {
                unchanged_anchors.insert(u.anchor.clone());
            }
        }
    }
    let groups = with_members(groups, members);
    if let Some(same) = unchanged {
        // Groups are mapped in entry order, skipping failures: match them by DN.
        let same_dns: HashSet<String> = read
            .groups
            .iter()
            .filter(|e| same(e))
            .map(|e| e.dn.clone())
            .collect();
        for g in &groups {
            if same_dns.contains(&g.group.dn) {
                unchanged_anchors.insert(g.group.anchor.clone());
            }
        }
    }
    Desired {
        users: mapped.users.into_iter().map(|(_, u)| u).collect(),
        unmapped_users: mapped.unmapped,
        groups,
        unmapped_groups,
        read_complete: read.complete,
        user_keys: mapped.keys,
        unchanged_anchors,
        changed_users_only: None,
    }
}

/// The planner's input: the desired state, the target snapshot, and what this instance
/// owns (SPEC 4.3).
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_input(
    config: &Config,
    options: &SyncOptions,
    kind: DirectoryKind,
    desired: &mut Desired,
    snapshot: target::TargetSnapshot,
    records: &[ObjectRecord],
    group_records: &[ObjectRecord],
    keeps_pending: bool,
    now: DateTime<Utc>,
) -> PlanInput {
    // Ownership (SPEC 4.3): what this instance recorded as created or adopted, plus target
    // objects whose externalId is the anchor of a directory object this instance reads —
    // anchors are directory-unique ids, and this is what lets a run after a crash (or after
    // the cache was deleted) converge instead of refusing its own objects.
    let desired_user_anchors: HashSet<&str> =
        desired.users.iter().map(|u| u.anchor.as_str()).collect();
    let desired_group_anchors: HashSet<&str> = desired
        .groups
        .iter()
        .map(|g| g.group.anchor.as_str())
        .collect();
    let mut owned_users: BTreeSet<String> = records
        .iter()
        .filter(|r| r.owned)
        .map(|r| r.target_id.clone())
        .collect();
    let mut owned_groups: BTreeSet<String> = group_records
        .iter()
        .filter(|r| r.owned)
        .map(|r| r.target_id.clone())
        .collect();
    let mut target_users = snapshot.users;
    for u in &target_users {
        if u.external_id
            .as_deref()
            .is_some_and(|e| desired_user_anchors.contains(e))
        {
            owned_users.insert(u.id.clone());
        }
    }
    for g in &snapshot.groups {
        if g.external_id
            .as_deref()
            .is_some_and(|e| desired_group_anchors.contains(e))
        {
            owned_groups.insert(g.id.clone());
        }
    }
    if !keeps_pending {
        // Plain target: the agent's own pending records.
        let pending: HashMap<&str, DateTime<Utc>> = records
            .iter()
            .filter_map(|r| r.pending_since.map(|p| (r.target_id.as_str(), p)))
            .collect();
        for u in &mut target_users {
            if let Some(since) = pending.get(u.id.as_str()) {
                u.pending = true;
                u.pending_since = Some(*since);
            }
        }
    }
    PlanInput {
        now,
        users: std::mem::take(&mut desired.users),
        groups: std::mem::take(&mut desired.groups),
        unmapped_users: std::mem::take(&mut desired.unmapped_users),
        unmapped_groups: std::mem::take(&mut desired.unmapped_groups),
        read_complete: desired.read_complete,
        target_users,
        target_groups: snapshot.groups,
        target: TargetKind { keeps_pending },
        scope: Scope::from_config(&config.iid.scim.filter),
        ownership: Ownership {
            users: owned_users,
            groups: owned_groups,
            adopt: options.adopt,
        },
        thresholds: Thresholds::from_config(&config.sync, options.allow_deletions),
        retention: chrono::Duration::from_std(config.sync.pending_deletion.retention.0)
            .unwrap_or_else(|_| chrono::Duration::days(30)),
        member_chunk: config.sync.member_chunk.0 as usize,
        managed_user_attributes: mapping::managed_user_attributes(
            &config.iid.scim.attribute.user,
            kind,
        ),
        changed_users_only: desired.changed_users_only.take(),
    }
}
