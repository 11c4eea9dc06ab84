//! Groups: each directory group matched against the target (by externalId, then
//! displayName), created or brought up to date with its members; the managed target groups
//! nobody wants any more deleted. Members are the user references the user half of the plan
//! left; a member whose user is in error, or outside this instance's user scope, is never
//! removed.
//!
//! It does not know how users were matched (it gets their references) or the thresholds.

use std::collections::{BTreeMap, HashMap, HashSet};

use dirsync_model::mapped::MappedGroup;

use super::{
    Buckets, DesiredGroup, ErrorKind, GroupRef, MemberRef, Operation, Plan, PlanError, PlanInput,
    TargetGroup, UserRef, render, source_mark, without_members,
};

/// Plans groups; returns (group deletions + member removals, managed groups + their
/// memberships) for the threshold. `protected_users`: target users whose directory user is
/// in error (their memberships stay); `may_remove`: the safety gate's answer.
pub(super) fn plan_groups<'a>(
    input: &'a PlanInput,
    out: &mut Plan,
    b: &mut Buckets,
    user_refs: &HashMap<&'a str, UserRef<'a>>,
    protected_users: &HashSet<usize>,
    may_remove: bool,
) -> (u64, u64) {
    let mut groups = GroupPlanner::new(input, user_refs, protected_users, may_remove);
    groups.report_unmapped(out);
    groups.exclude_duplicates(out);
    for (i, d) in input.groups.iter().enumerate() {
        if !groups.excluded.contains(&i) {
            groups.plan_group(d, out, b);
        }
    }
    groups.plan_deletions(out, b)
}

struct GroupPlanner<'a, 'r> {
    input: &'a PlanInput,
    user_refs: &'r HashMap<&'a str, UserRef<'a>>,
    protected_users: &'r HashSet<usize>,
    may_remove: bool,
    by_ext: HashMap<&'a str, usize>,
    by_name: HashMap<String, usize>,
    /// Target user id → index, for the members.
    target_users: HashMap<&'a str, usize>,
    /// Target groups that must not be deleted this run.
    protected: HashSet<usize>,
    /// Directory groups left out (duplicates).
    excluded: HashSet<usize>,
    /// Target groups a directory group matched.
    matched: HashSet<usize>,
    /// Member removals so far (group deletions are added at the end).
    removals: u64,
    /// Members per AddMembers/RemoveMembers operation.
    chunk: usize,
}

impl<'a, 'r> GroupPlanner<'a, 'r> {
    fn new(
        input: &'a PlanInput,
        user_refs: &'r HashMap<&'a str, UserRef<'a>>,
        protected_users: &'r HashSet<usize>,
        may_remove: bool,
    ) -> GroupPlanner<'a, 'r> {
        let groups = &input.target_groups;
        GroupPlanner {
            input,
            user_refs,
            protected_users,
            may_remove,
            by_ext: groups
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.external_id.as_deref().map(|e| (e, i)))
                .collect(),
            by_name: groups
                .iter()
                .enumerate()
                .map(|(i, t)| (t.display_name.to_lowercase(), i))
                .collect(),
            target_users: input
                .target_users
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.as_str(), i))
                .collect(),
            protected: HashSet::new(),
            excluded: HashSet::new(),
            matched: HashSet::new(),
            removals: 0,
            chunk: input.member_chunk.max(1),
        }
    }

    /// The target group matching an externalId, else a displayName, and whether it matched
    /// by name only.
    fn find(&self, ext: Option<&str>, name: Option<&str>) -> Option<(usize, bool)> {
        if let Some(i) = ext.and_then(|e| self.by_ext.get(e)) {
            return Some((*i, false));
        }
        self.by_name.get(&name?.to_lowercase()).map(|i| (*i, true))
    }

    /// Reports the groups that failed mapping and protects their target counterparts.
    fn report_unmapped(&mut self, out: &mut Plan) {
        for e in &self.input.unmapped_groups {
            if let Some((i, _)) = self.find(e.anchor.as_deref(), None) {
                self.protected.insert(i);
            }
            out.errors.push(PlanError {
                kind: ErrorKind::Mapping,
                object: e.dn.clone(),
                message: format!("{}: {}", e.attribute, e.message),
            });
        }
    }

    /// Two directory groups with one displayName (or one externalId): report all, sync none.
    fn exclude_duplicates(&mut self, out: &mut Plan) {
        let input: &'a PlanInput = self.input;
        let mut names: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut exts: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, g) in input.groups.iter().enumerate() {
            names
                .entry(g.group.display_name.to_lowercase())
                .or_default()
                .push(i);
            exts.entry(g.group.anchor.as_str()).or_default().push(i);
        }
        let dns = |idx: &[usize]| -> String {
            let dns: Vec<&str> = idx
                .iter()
                .map(|i| input.groups[*i].group.dn.as_str())
                .collect();
            dns.join(" | ")
        };
        for (name, idx) in names.iter().filter(|(_, v)| v.len() > 1) {
            out.errors.push(PlanError {
                kind: ErrorKind::DuplicateGroupName,
                object: dns(idx),
                message: format!(
                    "{} directory groups have the displayName {name:?}, which can exist only once in the target; \
                     none of them is synchronised until the conflict is resolved (rename one, or narrow ad.ldap.filter.group)",
                    idx.len()
                ),
            });
            self.excluded.extend(idx.iter().copied());
        }
        for (ext, idx) in exts.iter().filter(|(_, v)| v.len() > 1) {
            out.errors.push(PlanError {
                kind: ErrorKind::DuplicateGroupExternalId,
                object: dns(idx),
                message: format!(
                    "directory groups share the externalId {ext}; none of them is synchronised"
                ),
            });
            self.excluded.extend(idx.iter().copied());
        }
        for i in self.excluded.clone() {
            let g = &input.groups[i].group;
            if let Some((t, _)) = self.find(Some(&g.anchor), Some(&g.display_name)) {
                self.protected.insert(t);
            }
        }
    }

    /// One directory group: created, refused, or brought up to date.
    fn plan_group(&mut self, d: &DesiredGroup, out: &mut Plan, b: &mut Buckets) {
        let g = &d.group;
        let desired: Vec<UserRef<'a>> = d
            .member_anchors
            .iter()
            .filter_map(|a| self.user_refs.get(a.as_str()).copied())
            .collect();
        match self.find(Some(&g.anchor), Some(&g.display_name)) {
            None => self.plan_create(g, &desired, out, b),
            Some((ti, by_name_only)) => {
                let input: &'a PlanInput = self.input;
                let t = &input.target_groups[ti];
                self.protected.insert(ti);
                if let Some(owned) = self.may_touch(g, t, by_name_only, out) {
                    self.matched.insert(ti);
                    self.plan_update(g, t, &desired, owned, out, b);
                }
            }
        }
    }

    /// A directory group with no target group: created with its members, unless it would
    /// land outside the scope.
    fn plan_create(
        &self,
        g: &MappedGroup,
        desired: &[UserRef<'_>],
        out: &mut Plan,
        b: &mut Buckets,
    ) {
        if !self.input.scope.group_in(&g.resource) {
            out.errors.push(PlanError {
                kind: ErrorKind::WouldLeaveScope,
                object: g.dn.clone(),
                message: format!(
                    "group {} would be created outside this instance's iid.scim.filter.group; not created",
                    g.display_name
                ),
            });
            return;
        }
        b.group_writes.push(Operation::CreateGroup {
            anchor: g.anchor.clone(),
            display_name: g.display_name.clone(),
            dn: g.dn.clone(),
            resource: g.resource.clone(),
        });
        for part in desired.chunks(self.chunk) {
            b.member_adds.push(Operation::AddMembers {
                group: GroupRef::New(g.anchor.clone()),
                display_name: g.display_name.clone(),
                members: part.iter().map(|m| m.to_member()).collect(),
            });
        }
    }

    /// Whether the matched target group may be written: `Some(owned)`, or `None` after
    /// reporting why not (outside the scope, or not this instance's).
    fn may_touch(
        &self,
        g: &MappedGroup,
        t: &TargetGroup,
        by_name_only: bool,
        out: &mut Plan,
    ) -> Option<bool> {
        let input = self.input;
        let (kind, message) = if !input.scope.group_in(&t.resource) {
            (
                ErrorKind::OutOfScope,
                format!(
                    "group {} matches target group {}, which is outside this instance's iid.scim.filter.group; not touched",
                    g.display_name, t.id
                ),
            )
        } else if !input.ownership.groups.contains(&t.id) && !input.ownership.adopt {
            not_owned(t, by_name_only)
        } else {
            return Some(input.ownership.groups.contains(&t.id));
        };
        out.errors.push(PlanError {
            kind,
            object: g.dn.clone(),
            message,
        });
        None
    }

    /// A matched group: adopted if need be, its attributes and members brought up to date.
    fn plan_update(
        &mut self,
        g: &MappedGroup,
        t: &TargetGroup,
        desired: &[UserRef<'_>],
        owned: bool,
        out: &mut Plan,
        b: &mut Buckets,
    ) {
        if !owned {
            b.group_writes.push(Operation::AdoptGroup {
                id: t.id.clone(),
                display_name: g.display_name.clone(),
            });
        }
        let old = without_members(&t.resource);
        let new = without_members(&g.resource);
        let patch = scim::patch::diff(&old, &new, scim::schema::group());
        let mut changed = false;
        if !patch.is_empty() {
            changed = true;
            b.group_writes.push(Operation::UpdateGroup {
                id: t.id.clone(),
                display_name: g.display_name.clone(),
                changes: render::changes(&patch, &old, &new),
                patch,
            });
        }
        let current: HashSet<&str> = t.members.iter().map(String::as_str).collect();
        let adds: Vec<MemberRef> = desired
            .iter()
            .filter(|m| m.id.is_none_or(|id| !current.contains(id)))
            .map(|m| m.to_member())
            .collect();
        let removes = self.member_removals(t, desired);
        changed |= !adds.is_empty() || !removes.is_empty();
        self.removals += removes.len() as u64;
        let group = || GroupRef::Id(t.id.clone());
        for part in adds.chunks(self.chunk) {
            b.member_adds.push(Operation::AddMembers {
                group: group(),
                display_name: g.display_name.clone(),
                members: part.to_vec(),
            });
        }
        for part in removes.chunks(self.chunk) {
            b.member_removes.push(Operation::RemoveMembers {
                group: group(),
                display_name: g.display_name.clone(),
                members: part.to_vec(),
            });
        }
        if !changed && owned {
            out.unchanged_groups += 1;
        }
    }

    /// The members of `t` to remove: not wanted, in this instance's user scope, and not in
    /// error; none when the safety gate is closed.
    fn member_removals(&self, t: &TargetGroup, desired: &[UserRef<'_>]) -> Vec<MemberRef> {
        if !self.may_remove {
            return Vec::new();
        }
        let wanted: HashSet<&str> = desired.iter().filter_map(|m| m.id).collect();
        t.members
            .iter()
            .filter(|id| !wanted.contains(id.as_str()))
            .filter_map(|id| {
                self.removable_member(id).map(|user_name| MemberRef {
                    id: Some(id.clone()),
                    anchor: None,
                    user_name,
                })
            })
            .collect()
    }

    /// The userName of a member that may be removed. Target users whose membership this
    /// instance manages: in its user scope. Members outside it (another instance's users,
    /// cloud-only users) are never removed.
    fn removable_member(&self, id: &str) -> Option<String> {
        let i = *self.target_users.get(id)?;
        let t = &self.input.target_users[i];
        (self.input.scope.user_in(&t.resource) && !self.protected_users.contains(&i))
            .then(|| t.user_name.clone())
    }

    /// The managed target groups nobody wants are deleted (unless the read says nothing
    /// about groups). Returns (removals, managed population) for the thresholds.
    fn plan_deletions(self, out: &mut Plan, b: &mut Buckets) -> (u64, u64) {
        let input = self.input;
        let managed: Vec<usize> = input
            .target_groups
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                input.ownership.groups.contains(&t.id) && input.scope.group_in(&t.resource)
            })
            .map(|(i, _)| i)
            .collect();
        let empty_groups = input.groups.is_empty() && input.unmapped_groups.is_empty();
        let population = managed
            .iter()
            .map(|i| 1 + input.target_groups[*i].members.len() as u64)
            .sum();
        if !self.may_remove {
            return (0, population);
        }
        if empty_groups && !managed.is_empty() {
            out.notes.push(format!(
                "the directory returned no groups while the target holds {} managed groups: treated as a failed read, no group is deleted this run",
                managed.len()
            ));
            return (self.removals, population);
        }
        let mut removals = self.removals;
        for ti in managed {
            if self.matched.contains(&ti) || self.protected.contains(&ti) {
                continue;
            }
            let t = &input.target_groups[ti];
            removals += 1;
            b.group_deletes.push(Operation::DeleteGroup {
                id: t.id.clone(),
                display_name: t.display_name.clone(),
            });
        }
        (removals, population)
    }
}

/// Why a matched target group that this instance does not manage is not touched. The
/// externalId identifies the holder in its own directory (another domain's objectGUID when
/// two domains share the target, behaviour §4.2); where the holder marks its source
/// (behaviour §4.3), its DN is named too.
fn not_owned(t: &TargetGroup, by_name_only: bool) -> (ErrorKind, String) {
    let (kind, what) = if by_name_only {
        (ErrorKind::NameTaken, "has the same displayName")
    } else {
        (ErrorKind::NotOwned, "has this group's externalId")
    };
    let source = source_mark::read(&t.resource)
        .map(|m| {
            if m.directory.is_empty() {
                format!(", synced from {}", m.dn)
            } else {
                format!(
                    ", synced from {} by the instance reading {}",
                    m.dn, m.directory
                )
            }
        })
        // default: a holder without a source mark adds nothing to the message.
        .unwrap_or_default();
    (
        kind,
        format!(
            "target group {} ({}, externalId {}{source}) {what} but is not managed by this instance (another instance may own it: rename one of the groups or narrow a filter); take it over with --adopt",
            t.id,
            t.display_name,
            t.external_id.as_deref().unwrap_or("none"),
        ),
    )
}
