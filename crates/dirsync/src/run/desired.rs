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
use crate::state::{
    ImageKeys, ImageRow, ObjectKey, ObjectKind, STAGE_BATCH, StateStore, entry_hash,
};
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
    /// In a full run with a previous image: anchors of entries unchanged since it (drift).
    pub unchanged_anchors: AnchorSet,
    pub changed_users_only: Option<ChangedUsers>,
}

/// Anchors of the entries a full run found unchanged since the last image, kept as 64-bit
/// hashes: only drift reporting asks (a hash collision could at worst name one more object as
/// drift), and 100,000 anchors as strings were some 7 MB of a full run's peak (issue #5).
#[derive(Default)]
pub(super) struct AnchorSet(HashSet<u64>);

impl AnchorSet {
    fn key(anchor: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        anchor.hash(&mut h);
        h.finish()
    }

    pub fn insert(&mut self, anchor: &str) {
        self.0.insert(Self::key(anchor));
    }

    pub fn contains(&self, anchor: &str) -> bool {
        self.0.contains(&Self::key(anchor))
    }
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

/// The mapping of user entries: mapped users, failures, and the image keys of every entry
/// that has a stable id.
pub(super) struct MappedUsers {
    pub users: Vec<MappedUser>,
    pub unmapped: Vec<MappingError>,
    pub keys: HashMap<String, ImageKeys>,
}

/// Maps user entries one by one (see [`MappedUsers`]).
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
    for entry in entries {
        let (mapped, keys) = map_user_entry(config, kind, &spec, entry, now, report);
        match mapped {
            Ok(u) => out.users.push(u),
            Err(e) => out.unmapped.push(e),
        }
        if let Some(k) = id(entry) {
            out.keys.insert(k, keys);
        }
    }
    out
}

/// One user entry mapped, with what its image row keeps of the mapping (the keys group
/// member values resolve to; anchor and lower-case userName when it mapped). The mapping's
/// warnings go to the report.
fn map_user_entry(
    config: &Config,
    kind: DirectoryKind,
    spec: &MemberSpec,
    entry: &Entry,
    now: DateTime<Utc>,
    report: &mut Report,
) -> (Result<MappedUser, MappingError>, ImageKeys) {
    let mut keys = ImageKeys {
        member_keys: mapping::member_keys(spec, entry),
        ..ImageKeys::default()
    };
    let mapped = mapping::map_user(entry, &config.iid.scim.attribute.user, kind, now);
    if let Ok(u) = &mapped {
        report
            .warnings
            .extend(u.warnings.iter().map(|w| format!("{}: {w}", u.dn)));
        keys.anchor = Some(u.anchor.clone());
        keys.name_key = Some(u.user_name.to_lowercase());
    }
    (mapped, keys)
}

/// Maps group entries (members still as raw values); stamps the ownership mark when the
/// target takes it (behaviour §4.3).
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

/// Groups with their resolved member anchors (`members` in the same order). The raw member
/// values are dropped: resolved, they are not needed again (150,000 DNs at 100,000 users).
pub(super) fn with_members(
    groups: Vec<MappedGroup>,
    members: Vec<Vec<String>>,
) -> Vec<DesiredGroup> {
    groups
        .into_iter()
        .zip(members)
        .map(|(mut group, member_anchors)| {
            group.member_values = Vec::new();
            DesiredGroup {
                group,
                member_anchors,
            }
        })
        .collect()
}

/// Stages `rows` and empties it; if staging fails, the rows stay (and every later one: no
/// more staging), to be written with the commit.
async fn stage_rows(stage: &mut Option<&StateStore>, rows: &mut Vec<ImageRow>) {
    let Some(state) = *stage else {
        return;
    };
    if rows.is_empty() {
        return;
    }
    match state.stage_image(rows).await {
        Ok(()) => rows.clear(),
        Err(e) => {
            tracing::warn!(error = %e, "could not stage the image rows; they are kept for the commit");
            *stage = None;
        }
    }
}

/// A question about one entry, by kind, stable id and [`entry_hash`].
pub(super) type EntryTest<'a> = &'a dyn Fn(ObjectKind, &str, u64) -> bool;

/// Which image rows a whole read turns into, and which entries the last run saw as they are
/// now. Both are asked with the entry's kind, stable id and [`entry_hash`].
pub(super) struct RowChoice<'a> {
    /// The rows to write (none when the run keeps no image).
    pub write: EntryTest<'a>,
    /// Where rows are staged as they accumulate ([`StateStore::stage_image`]), so that a
    /// full run never holds them all; `None` (a dry run, an incremental run): all are
    /// returned.
    pub stage: Option<&'a StateStore>,
    /// `Some` in a full run with a previous image: entries unchanged since it (drift).
    pub unchanged: Option<EntryTest<'a>>,
}

/// A whole read, mapped: the desired state, the image rows [`RowChoice::write`] picked (those
/// not staged), and the key of every entry read (what the image holds after this run).
pub(super) struct MappedRead {
    pub desired: Desired,
    pub rows: Vec<ImageRow>,
    pub present: HashSet<(ObjectKind, String)>,
}

/// The desired state of a whole read. Each user entry is mapped, becomes an image row (if
/// chosen) and is dropped before the next: 100,000 parsed entries never sit next to 100,000
/// mapped users (issue #5). Members are resolved from the keys the entries answer to.
pub(super) async fn from_read(
    config: &Config,
    kind: DirectoryKind,
    read: crate::source::DirectoryRead,
    marks_groups: bool,
    now: DateTime<Utc>,
    report: &mut Report,
    choice: &RowChoice<'_>,
) -> MappedRead {
    let mapping = ReadMapping {
        config,
        kind,
        id: super::stable_id(kind),
        spec: member_spec(config, kind),
        now,
        choice,
    };
    let mut acc = Accumulated::new(choice.stage, read.users.len());
    let by_key = mapping.add_users(read.users, report, &mut acc).await;
    let (groups, unmapped_groups) = map_groups(config, kind, &read.groups, marks_groups);
    let members = mapping::resolve_members_by_key(&mapping.spec, &by_key, &groups);
    drop(by_key);
    let groups = with_members(groups, members);
    let same_dns = mapping.add_group_rows(read.groups, &mut acc);
    for g in &groups {
        if same_dns.contains(&g.group.dn) {
            acc.unchanged_anchors.insert(&g.group.anchor);
        }
    }
    stage_rows(&mut acc.stage, &mut acc.rows).await;
    MappedRead {
        desired: Desired {
            users: acc.users,
            unmapped_users: acc.unmapped_users,
            groups,
            unmapped_groups,
            read_complete: read.complete,
            unchanged_anchors: acc.unchanged_anchors,
            changed_users_only: None,
        },
        rows: acc.rows,
        present: acc.present,
    }
}

/// How a whole read's entries are mapped and chosen as image rows.
struct ReadMapping<'a> {
    config: &'a Config,
    kind: DirectoryKind,
    id: fn(&Entry) -> Option<String>,
    spec: MemberSpec,
    now: DateTime<Utc>,
    choice: &'a RowChoice<'a>,
}

/// What a whole read's entries have given so far: mapped users, image rows (staged as they
/// accumulate), the key of every entry, and the anchors of unchanged entries.
struct Accumulated<'a> {
    users: Vec<MappedUser>,
    unmapped_users: Vec<MappingError>,
    rows: Vec<ImageRow>,
    stage: Option<&'a StateStore>,
    present: HashSet<(ObjectKind, String)>,
    unchanged_anchors: AnchorSet,
}

impl<'a> Accumulated<'a> {
    /// Nothing yet, with room for `users` mapped users.
    fn new(stage: Option<&'a StateStore>, users: usize) -> Accumulated<'a> {
        Accumulated {
            // Sized up front: a growing vector of 100,000 would copy itself while both copies
            // are resident (capacity left unused is never touched, so it costs no memory).
            users: Vec::with_capacity(users),
            unmapped_users: Vec::new(),
            rows: Vec::new(),
            stage,
            present: HashSet::new(),
            unchanged_anchors: AnchorSet::default(),
        }
    }
}

impl ReadMapping<'_> {
    /// Maps each user entry in turn, keeping its image row (if chosen, staged by batches);
    /// returns the anchor each member key names.
    async fn add_users(
        &self,
        entries: Vec<Entry>,
        report: &mut Report,
        acc: &mut Accumulated<'_>,
    ) -> HashMap<String, String> {
        let mut by_key: HashMap<String, String> = HashMap::new();
        for entry in entries {
            let stable = (self.id)(&entry);
            let hash = entry_hash(&entry);
            let same = |k: &str| {
                self.choice
                    .unchanged
                    .is_some_and(|f| f(ObjectKind::User, k, hash))
            };
            let (mapped, keys) =
                map_user_entry(self.config, self.kind, &self.spec, &entry, self.now, report);
            match mapped {
                Ok(u) => {
                    for k in &keys.member_keys {
                        by_key.insert(k.clone(), u.anchor.clone());
                    }
                    if stable.as_deref().is_some_and(same) {
                        acc.unchanged_anchors.insert(&u.anchor);
                    }
                    acc.users.push(u);
                }
                Err(e) => acc.unmapped_users.push(e),
            }
            if let Some(k) = stable {
                if (self.choice.write)(ObjectKind::User, &k, hash) {
                    acc.rows
                        .push(ImageRow::new(ObjectKind::User, k.clone(), &entry, keys));
                    if acc.rows.len() >= STAGE_BATCH {
                        stage_rows(&mut acc.stage, &mut acc.rows).await;
                    }
                }
                acc.present.insert((ObjectKind::User, k));
            }
        }
        by_key
    }

    /// Keeps each group entry's image row (if chosen) and key; returns the DNs of groups
    /// unchanged since the last image (groups are mapped in entry order, skipping failures:
    /// matched to their entries by DN).
    fn add_group_rows(&self, entries: Vec<Entry>, acc: &mut Accumulated<'_>) -> HashSet<String> {
        let mut same_dns: HashSet<String> = HashSet::new();
        for entry in entries {
            let Some(k) = (self.id)(&entry) else {
                continue;
            };
            let hash = entry_hash(&entry);
            if self
                .choice
                .unchanged
                .is_some_and(|f| f(ObjectKind::Group, &k, hash))
            {
                same_dns.insert(entry.dn.clone());
            }
            if (self.choice.write)(ObjectKind::Group, &k, hash) {
                acc.rows.push(ImageRow::new(
                    ObjectKind::Group,
                    k.clone(),
                    &entry,
                    ImageKeys::default(),
                ));
            }
            acc.present.insert((ObjectKind::Group, k));
        }
        same_dns
    }
}

/// What the run settles for the planner: configuration, command line, directory kind,
/// whether the target keeps pending users, and the run's time.
pub(super) struct PlanSettings<'a> {
    pub config: &'a Config,
    pub options: &'a SyncOptions,
    pub kind: DirectoryKind,
    pub keeps_pending: bool,
    pub now: DateTime<Utc>,
}

/// The planner's input: the desired state, the target snapshot, and what this instance
/// owns (behaviour §4.3).
pub(super) fn plan_input(
    settings: &PlanSettings<'_>,
    desired: &mut Desired,
    snapshot: target::TargetSnapshot,
    records: &[ObjectKey],
    group_records: &[ObjectKey],
) -> PlanInput {
    let PlanSettings {
        config,
        options,
        kind,
        keeps_pending,
        now,
    } = *settings;
    let (owned_users, owned_groups) = owned(desired, records, group_records, &snapshot);
    let mut target_users = snapshot.users;
    if !keeps_pending {
        mark_agent_pending(records, &mut target_users);
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
        scope: scope(&config.iid.scim.filter),
        ownership: Ownership {
            users: owned_users,
            groups: owned_groups,
            adopt: options.adopt,
        },
        thresholds: thresholds(&config.sync, options.allow_deletions),
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

/// The target ids this instance owns, users and groups (behaviour §4.3).
fn owned(
    desired: &Desired,
    records: &[ObjectKey],
    group_records: &[ObjectKey],
    snapshot: &target::TargetSnapshot,
) -> (BTreeSet<String>, BTreeSet<String>) {
    // Ownership (behaviour §4.3): what this instance recorded as created or adopted, plus target
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
    for u in &snapshot.users {
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
    (owned_users, owned_groups)
}

/// Plain target: the agent's own pending records marked on the target users they name.
fn mark_agent_pending(records: &[ObjectKey], target_users: &mut [crate::plan::TargetUser]) {
    let pending: HashMap<&str, DateTime<Utc>> = records
        .iter()
        .filter_map(|r| r.pending_since.map(|p| (r.target_id.as_str(), p)))
        .collect();
    for u in target_users {
        if let Some(since) = pending.get(u.id.as_str()) {
            u.pending = true;
            u.pending_since = Some(*since);
        }
    }
}

/// The planner's scope from `iid.scim.filter.*` (already parsed at load).
fn scope(filters: &crate::config::ScimFilters) -> Scope {
    Scope {
        user: filters.user.as_ref().map(|f| f.parsed.clone()),
        group: filters.group.as_ref().map(|f| f.parsed.clone()),
    }
}

/// The deletion thresholds from `sync.*` and the `--allow-deletions` option.
fn thresholds(sync: &crate::config::SyncConfig, allow_deletions: Option<u64>) -> Thresholds {
    Thresholds {
        max_deletions: sync.max_deletions,
        max_deletion_ratio: sync.max_deletion_ratio.0,
        deletion_ratio_floor: sync.deletion_ratio_floor,
        max_group_deletions: sync.max_group_deletions,
        allow_deletions,
    }
}
