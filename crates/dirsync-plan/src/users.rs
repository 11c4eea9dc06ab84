//! Users: each directory user matched against the target (by externalId, then userName),
//! created, updated, enabled, disabled or restored; the target users nobody wants any more
//! pended or purged. The refusals of one user (duplicates, names taken, objects outside the
//! scope) are per-object errors that protect the target user from removal.
//!
//! It does not know groups (they are planned after, from the user references this leaves) or
//! the deletion thresholds (applied to the whole plan by the caller).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use dirsync_model::json_text::JsonText;
use dirsync_model::mapped::MappedUser;

use super::{
    Buckets, ErrorKind, KeyIndex, Operation, Plan, PlanError, PlanInput, TargetUser, UserRef,
    lower, managed_view, recreated_message, render, user_update,
};

/// The user half of a plan, built step by step.
pub(super) struct UserPlanner<'a> {
    input: &'a PlanInput,
    pub(super) out: Plan,
    pub(super) b: Buckets,
    by_ext: HashMap<&'a str, usize>,
    by_name: KeyIndex<Cow<'a, str>>,
    /// Target users that must not be deleted or have memberships removed this run.
    protected: HashSet<usize>,
    /// Directory users left out (duplicates).
    excluded: HashSet<usize>,
    /// Target users a directory user matched.
    matched: HashSet<usize>,
    /// anchor → how group operations refer to the user.
    pub(super) user_refs: HashMap<&'a str, UserRef<'a>>,
}

impl<'a> UserPlanner<'a> {
    /// Indexes the target users by externalId and by lower-case userName.
    pub(super) fn new(input: &'a PlanInput) -> UserPlanner<'a> {
        let mut b = Buckets::default();
        // Room for one operation per directory user up front: an initial run pushes 100,000
        // creates, and a growing vector would copy them while both copies are resident (the
        // capacity a full reconcile does not use is never touched, so it costs no memory).
        b.early_users.reserve(input.users.len());
        let by_ext = input
            .target_users
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.external_id.as_deref().map(|e| (e, i)))
            .collect();
        let by_name = KeyIndex::new(
            input
                .target_users
                .iter()
                .enumerate()
                .map(|(i, t)| (lower(&t.user_name), i))
                .collect(),
        );
        UserPlanner {
            input,
            out: Plan::default(),
            b,
            by_ext,
            by_name,
            protected: HashSet::new(),
            excluded: HashSet::new(),
            matched: HashSet::new(),
            user_refs: HashMap::with_capacity(input.users.len()),
        }
    }

    /// The target user matching an externalId, else a userName (a live one before a pending
    /// one of the same name), and whether it matched by name only.
    fn find_user(&self, ext: Option<&str>, name: Option<&str>) -> Option<(usize, bool)> {
        if let Some(i) = ext.and_then(|e| self.by_ext.get(e)) {
            return Some((*i, false));
        }
        let same = self.by_name.get(lower(name?).as_ref());
        same.iter()
            .map(|(_, i)| *i)
            .find(|i| !self.input.target_users[*i].pending)
            .or_else(|| same.first().map(|(_, i)| *i))
            .map(|i| (i, true))
    }

    /// Reports the users that failed mapping and protects their target counterparts.
    pub(super) fn report_unmapped(&mut self) {
        for e in &self.input.unmapped_users {
            if let Some((i, _)) = self.find_user(e.anchor.as_deref(), e.user_name.as_deref()) {
                self.protected.insert(i);
            }
            self.out.errors.push(PlanError {
                kind: ErrorKind::Mapping,
                object: e.dn.clone(),
                message: format!("{}: {}", e.attribute, e.message),
            });
        }
    }

    /// Duplicates in the source: all involved are reported and none is sent; their target
    /// counterparts are protected.
    pub(super) fn exclude_duplicates(&mut self) {
        let input: &'a PlanInput = self.input;
        let users = &input.users;
        let ext_groups = KeyIndex::new(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.anchor.as_str(), i))
                .collect(),
        )
        .repeated();
        let name_groups = KeyIndex::new(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| (lower(&u.user_name), i))
                .collect(),
        )
        .repeated();
        for (ext, idx) in &ext_groups {
            self.exclude(idx, ErrorKind::DuplicateExternalId, "externalId", ext);
        }
        for (name, idx) in &name_groups {
            self.exclude(idx, ErrorKind::DuplicateUserName, "userName", name);
        }
        for i in self.excluded.clone() {
            let u = &users[i];
            if let Some((t, _)) = self.find_user(Some(&u.anchor), Some(&u.user_name)) {
                self.protected.insert(t);
            }
        }
    }

    /// Reports the directory users `idx` that share the `what` `value`, and leaves them out.
    fn exclude(&mut self, idx: &[usize], kind: ErrorKind, what: &str, value: &str) {
        let dns: Vec<&str> = idx
            .iter()
            .map(|i| self.input.users[*i].dn.as_str())
            .collect();
        self.out.errors.push(PlanError {
            kind,
            object: dns.join(" | "),
            message: format!(
                "{} directory users map to the same {what} {value}; none of them is synchronised",
                idx.len()
            ),
        });
        self.excluded.extend(idx.iter().copied());
    }

    /// Plans every directory user that is not left out.
    pub(super) fn plan_users(&mut self) {
        let input: &'a PlanInput = self.input;
        for (i, d) in input.users.iter().enumerate() {
            if self.excluded.contains(&i) {
                continue;
            }
            match self.find_user(Some(&d.anchor), Some(&d.user_name)) {
                None => self.plan_create(d),
                Some((ti, by_name_only)) => self.plan_matched(d, ti, by_name_only),
            }
        }
    }

    /// A directory user with no target user: created, unless it would land outside the scope.
    fn plan_create(&mut self, d: &'a MappedUser) {
        if !self.input.scope.user_in(&d.resource) {
            self.out.errors.push(PlanError {
                kind: ErrorKind::WouldLeaveScope,
                object: d.dn.clone(),
                message: format!(
                    "user {} would be created outside this instance's iid.scim.filter.user, so it could never be managed; not created",
                    d.user_name
                ),
            });
            return;
        }
        self.b.early_users.push(Operation::CreateUser {
            anchor: d.anchor.clone(),
            user_name: d.user_name.clone(),
            dn: d.dn.clone(),
            resource: d.resource.clone(),
        });
        self.user_refs.insert(
            &d.anchor,
            UserRef {
                id: None,
                anchor: Some(&d.anchor),
                user_name: &d.user_name,
            },
        );
    }

    /// A directory user matched to target user `ti`: refused, restored, or brought up to date.
    fn plan_matched(&mut self, d: &'a MappedUser, ti: usize, by_name_only: bool) {
        let input: &'a PlanInput = self.input;
        let t = &input.target_users[ti];
        self.protected.insert(ti);
        let Some(owned) = self.may_touch(d, t, by_name_only) else {
            return;
        };
        self.matched.insert(ti);
        self.user_refs.insert(
            &d.anchor,
            UserRef {
                id: Some(&t.id),
                anchor: None,
                user_name: &d.user_name,
            },
        );
        if !owned {
            self.b.early_users.push(Operation::AdoptUser {
                id: t.id.clone(),
                user_name: d.user_name.clone(),
            });
        }
        if t.pending {
            self.plan_restore(d, t);
        } else {
            self.plan_update(d, t, owned);
        }
    }

    /// Whether the matched target user may be written: `Some(owned)`, or `None` after
    /// reporting why not (outside the scope, re-created, or not this instance's).
    fn may_touch(&mut self, d: &MappedUser, t: &TargetUser, by_name_only: bool) -> Option<bool> {
        let refusal = if !self.input.scope.user_in(&t.resource) {
            Some((
                ErrorKind::OutOfScope,
                format!(
                    "user {} matches target user {} ({}), which is outside this instance's iid.scim.filter.user; not touched",
                    d.user_name, t.id, t.user_name
                ),
            ))
        } else if t.pending && by_name_only {
            Some((
                ErrorKind::RecreatedUser,
                recreated_message(&d.user_name, &t.id, t.external_id.as_deref(), &d.anchor),
            ))
        } else {
            None
        };
        let owned = self.input.ownership.users.contains(&t.id);
        let refusal = refusal.or_else(|| {
            (!owned && !self.input.ownership.adopt).then(|| not_owned(d, t, by_name_only))
        });
        match refusal {
            Some((kind, message)) => {
                self.out.errors.push(PlanError {
                    kind,
                    object: d.dn.clone(),
                    message,
                });
                None
            }
            None => Some(owned),
        }
    }

    /// A matched user pending deletion comes back.
    fn plan_restore(&mut self, d: &MappedUser, t: &TargetUser) {
        let input = self.input;
        let user_schema = scim::schema::user();
        // The pair's resources, parsed for this comparison only.
        let (t_resource, d_resource) = (t.resource.value(), d.resource.value());
        // A target that keeps pending users restores on POST (all attributes overwritten)
        // and refuses a PATCH of a pending user, so the patch is for plain targets only,
        // where it is never empty (apply tells the two cases apart by it).
        let patch = if input.target.keeps_pending {
            Vec::new()
        } else {
            let patch = scim::patch::diff(
                &managed_view(&t_resource, &d_resource, &input.managed_user_attributes),
                &d_resource,
                user_schema,
            );
            if patch.is_empty() {
                // Already as wanted: the PATCH only confirms `active`.
                scim::patch::diff(
                    &serde_json::json!({"active": !d.active}),
                    &serde_json::json!({"active": d.active}),
                    user_schema,
                )
            } else {
                patch
            }
        };
        // Such a target restores on a POST with the pending user's own userName and
        // externalId; a user that comes back under a new userName is restored under the
        // old one and renamed right after (the next operation, so not concurrently).
        let renamed = input.target.keeps_pending && t.user_name != d.user_name;
        let resource = if renamed {
            let mut restored = d_resource.clone();
            restored["userName"] = serde_json::Value::String(t.user_name.clone());
            JsonText::new(&restored)
        } else {
            d.resource.clone()
        };
        let rename = renamed.then(|| {
            let old = resource.value();
            let patch = scim::patch::diff(&old, &d_resource, user_schema);
            Operation::UpdateUser {
                id: t.id.clone(),
                user_name: d.user_name.clone(),
                changes: render::changes(&patch, &old, &d_resource),
                patch,
            }
        });
        self.b.early_users.push(Operation::RestoreUser {
            id: t.id.clone(),
            user_name: d.user_name.clone(),
            anchor: d.anchor.clone(),
            resource,
            patch,
        });
        self.b.early_users.extend(rename);
    }

    /// A matched live user: its attributes and `active` brought up to date.
    fn plan_update(&mut self, d: &MappedUser, t: &TargetUser, owned: bool) {
        let (t_resource, d_resource) = (t.resource.value(), d.resource.value());
        let (old, new, patch) = user_update(
            &t_resource,
            &d_resource,
            &self.input.managed_user_attributes,
        );
        let mut changed = false;
        if !patch.is_empty() {
            changed = true;
            self.b.early_users.push(Operation::UpdateUser {
                id: t.id.clone(),
                user_name: d.user_name.clone(),
                changes: render::changes(&patch, &old, &new),
                patch,
            });
        }
        if d.active && !t.active {
            changed = true;
            self.b.early_users.push(Operation::EnableUser {
                id: t.id.clone(),
                user_name: d.user_name.clone(),
            });
        } else if !d.active && t.active {
            changed = true;
            self.b.user_disables.push(Operation::DisableUser {
                id: t.id.clone(),
                user_name: d.user_name.clone(),
            });
        }
        if !changed && owned {
            self.out.unchanged_users += 1;
        }
    }

    /// The managed target users no directory user wants (and none protects) are pended, or
    /// purged after the retention on a plain target. Returns how many are removed.
    pub(super) fn plan_removals(&mut self, managed_users: &[usize]) -> u64 {
        let input = self.input;
        let mut removals = 0u64;
        for &ti in managed_users {
            if self.matched.contains(&ti) || self.protected.contains(&ti) {
                continue;
            }
            let t = &input.target_users[ti];
            if input
                .changed_users_only
                .as_ref()
                .is_some_and(|c| !c.removable.contains(&t.id))
            {
                continue;
            }
            removals += self.plan_removal(t);
        }
        removals
    }

    /// One unwanted target user; 1 when it counts as a removal for the thresholds.
    fn plan_removal(&mut self, t: &TargetUser) -> u64 {
        let input = self.input;
        let (id, user_name) = (t.id.clone(), t.user_name.clone());
        match (input.target.keeps_pending, t.pending) {
            (true, false) => {
                self.b
                    .user_pendings
                    .push(Operation::DeleteUser { id, user_name });
                1
            }
            (false, false) => {
                self.b
                    .user_pendings
                    .push(Operation::AgentPendUser { id, user_name });
                1
            }
            // The target purges its pending users itself.
            (true, true) => 0,
            (false, true) => {
                match t.pending_since {
                    Some(since) if since + input.retention <= input.now => {
                        self.b.user_pendings.push(Operation::PurgeUser {
                            id,
                            user_name,
                            pending_since: since,
                        });
                    }
                    Some(_) => {}
                    None => self.out.notes.push(format!(
                        "user {user_name} is marked pending without a date; it is kept until the agent records one"
                    )),
                }
                0
            }
        }
    }

    /// Incremental runs: unchanged directory users keep their target users as members.
    pub(super) fn keep_unchanged_members(&mut self) {
        let input: &'a PlanInput = self.input;
        let Some(changed) = &input.changed_users_only else {
            return;
        };
        for (ti, t) in input.target_users.iter().enumerate() {
            let Some(anchor) = t.external_id.as_deref() else {
                continue;
            };
            if t.pending
                || self.matched.contains(&ti)
                || self.protected.contains(&ti)
                || !changed.unchanged_anchors.contains(anchor)
                || !input.ownership.users.contains(&t.id)
            {
                continue;
            }
            self.user_refs.entry(anchor).or_insert(UserRef {
                id: Some(&t.id),
                anchor: None,
                user_name: &t.user_name,
            });
        }
    }

    /// Target users whose directory user is in error: their memberships are kept too.
    pub(super) fn errored(&self) -> HashSet<usize> {
        self.protected.difference(&self.matched).copied().collect()
    }
}

/// Why a matched target user that this instance did not create is not touched.
fn not_owned(d: &MappedUser, t: &TargetUser, by_name_only: bool) -> (ErrorKind, String) {
    if by_name_only {
        (
            ErrorKind::NameTaken,
            format!(
                "userName {} is already used by target user {} (externalId {}), which this instance does not manage; \
                 rename one of them, or take it over with --adopt",
                d.user_name,
                t.id,
                t.external_id.as_deref().unwrap_or("none")
            ),
        )
    } else {
        (
            ErrorKind::NotOwned,
            format!(
                "target user {} has this user's externalId but was not created by this instance; take it over with --adopt",
                t.id
            ),
        )
    }
}
