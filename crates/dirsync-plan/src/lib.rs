//! The planner: a pure function from (what the directory wants, what the target holds, the
//! rules) to an ordered list of operations, per-object errors, and safety decisions
//! (behaviour §4.1–4.3, 5).
//!
//! No I/O and no clock (`now` is an input), so every row of the tables in
//! docs/behaviour.md §4 is a unit test.
//! It does not know how operations are sent (HTTP, Bulk, retries), how the target was read,
//! or where ownership and the agent's pending dates are stored; those come in as data. The
//! rule it never breaks: on an incomplete or empty read nothing is deleted, pended or
//! removed, and a plan over the deletion thresholds contains no writes at all.
//!
//! Of the agent's crates it knows only the model: not the configuration file (the agent
//! turns it into [`Scope`] and [`Thresholds`]), the source, the state or the target client.
//! [`source_mark`] is the ownership mark the planner stamps on groups.

mod groups;
mod render;
pub mod source_mark;
mod users;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use dirsync_model::json_text::JsonText;
use dirsync_model::mapped::{MappedGroup, MappedUser, MappingError};

use groups::plan_groups;
use users::UserPlanner;

/// Everything the planner needs, already read and mapped.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub now: DateTime<Utc>,
    /// Users the directory wants (mapped, in scope of the LDAP search).
    pub users: Vec<MappedUser>,
    pub groups: Vec<DesiredGroup>,
    /// Directory objects that failed mapping. Their target counterparts (by anchor or
    /// userName, when known) are left alone: a bad phone number must not delete a user.
    pub unmapped_users: Vec<MappingError>,
    pub unmapped_groups: Vec<MappingError>,
    /// False when the read did not finish cleanly (behaviour §3): no deletions of any kind.
    pub read_complete: bool,
    /// Target users, including those pending deletion (on targets that keep them) and those
    /// outside the scope filter (so that collisions are seen).
    pub target_users: Vec<TargetUser>,
    pub target_groups: Vec<TargetGroup>,
    pub target: TargetKind,
    pub scope: Scope,
    pub ownership: Ownership,
    pub thresholds: Thresholds,
    /// How long the agent keeps a user disabled before deleting it on a plain target.
    pub retention: Duration,
    /// Members per AddMembers/RemoveMembers operation.
    pub member_chunk: usize,
    /// User attributes the mapping manages (`title`, `name`, `emails`,
    /// `urn:…:enterprise:2.0:User:department`, …): when the directory stops giving one, it is
    /// removed from the target. Attributes outside this list are only ever added or replaced,
    /// never removed, so values set on the target by other means survive.
    pub managed_user_attributes: Vec<String>,
    /// `Some` when an incremental run plans only the users its changes touch (see
    /// [`ChangedUsers`]); `None` plans the whole directory.
    pub changed_users_only: Option<ChangedUsers>,
}

/// An incremental plan over the changed users (issue #5). `users` and `unmapped_users` hold
/// the changed directory users only; `groups`, `target_users` and `target_groups` are
/// complete, but a target user that no changed user can match may come without its resource
/// (its caller makes sure of that, and plans whole when a scope filter would need it).
/// Absence from `users` then means "unchanged", not "gone": a target user is deleted only
/// when its id is in `removable` (its directory user was deleted, left the scope, or changed
/// and did not match it again), and the target user of an unchanged directory user (anchor
/// in `unchanged_anchors`) still counts as that user for group membership.
#[derive(Debug, Clone, Default)]
pub struct ChangedUsers {
    /// Target user ids the changes are evidence against.
    pub removable: HashSet<String>,
    /// Anchors of directory users that did not change and mapped the last time.
    pub unchanged_anchors: HashSet<String>,
}

/// A group the directory wants, with its members as user anchors.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredGroup {
    pub group: MappedGroup,
    pub member_anchors: Vec<String>,
}

/// A user as the target holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetUser {
    pub id: String,
    pub external_id: Option<String>,
    pub user_name: String,
    pub active: bool,
    /// Pending deletion: on targets that keep pending users, the target's own state; on plain
    /// targets, the agent's record (the user is disabled and waits for `retention`).
    pub pending: bool,
    pub pending_since: Option<DateTime<Utc>>,
    /// Parsed one user at a time while planning (a full run holds 100,000 of these).
    pub resource: JsonText,
}

/// A group as the target holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroup {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// Target ids of the direct members.
    pub members: Vec<String>,
    pub resource: Value,
}

/// What kind of target this is (behaviour §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetKind {
    /// True when a SCIM DELETE puts the user into pending deletion (idservice, the vendor's
    /// service); false for a plain SCIM target, where the agent keeps the lifecycle.
    pub keeps_pending: bool,
}

/// `iid.scim.filter.user/group`: target objects outside them are never touched.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub user: Option<scim::Filter>,
    pub group: Option<scim::Filter>,
}

impl Scope {
    /// Parses the resource only when there is a filter to evaluate.
    fn user_in(&self, resource: &JsonText) -> bool {
        self.user
            .as_ref()
            .is_none_or(|f| scim::filter::matches(f, &resource.value(), scim::schema::user()))
    }
    fn group_in(&self, resource: &Value) -> bool {
        self.group
            .as_ref()
            .is_none_or(|f| scim::filter::matches(f, resource, scim::schema::group()))
    }
}

/// Which target objects this instance created or adopted (behaviour §4.3).
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// `--adopt`: take over matching target objects this instance did not create.
    pub adopt: bool,
}

/// behaviour §5 deletion thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub max_deletions: u64,
    pub max_deletion_ratio: f64,
    /// The ratio gate applies only to a run that removes more than this many users (and,
    /// separately, more than this many group deletions + member removals): a few leavers in
    /// a small directory are never held back by a ratio meant for accidents.
    pub deletion_ratio_floor: u64,
    /// Group deletions + member removals; `None`: the same as `max_deletions`.
    pub max_group_deletions: Option<u64>,
    /// `--allow-deletions N`: a run with at most N deletions (of each kind) goes through.
    pub allow_deletions: Option<u64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_deletions: 500,
            max_deletion_ratio: 0.10,
            deletion_ratio_floor: 10,
            max_group_deletions: None,
            allow_deletions: None,
        }
    }
}

/// A group a member operation applies to: existing, or created earlier in the same plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRef {
    Id(String),
    /// The anchor (externalId) of a group created by this plan.
    New(String),
}

/// A member: an existing target user, or one created earlier in this plan (resolved by
/// anchor at apply time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    /// userName, for people reading the plan.
    pub user_name: String,
}

/// A [`MemberRef`] borrowed from the planner's input: one per directory user while the plan
/// is made (100,000 owned copies were ~17 MB), made owned only for the member operations.
#[derive(Clone, Copy)]
struct UserRef<'a> {
    id: Option<&'a str>,
    anchor: Option<&'a str>,
    user_name: &'a str,
}

impl UserRef<'_> {
    fn to_member(self) -> MemberRef {
        MemberRef {
            id: self.id.map(str::to_string),
            anchor: self.anchor.map(str::to_string),
            user_name: self.user_name.to_string(),
        }
    }
}

/// One attribute change, for people reading the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// One write (or state-only step) of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    CreateUser {
        anchor: String,
        user_name: String,
        dn: String,
        /// Shared with the mapped user (100,000 creates would otherwise hold every resource
        /// twice while the plan is built).
        resource: JsonText,
    },
    /// Record ownership of an existing target user (`--adopt`); no target write by itself.
    AdoptUser {
        id: String,
        user_name: String,
    },
    UpdateUser {
        id: String,
        user_name: String,
        changes: Vec<Change>,
        patch: Vec<scim::PatchOperation>,
    },
    EnableUser {
        id: String,
        user_name: String,
    },
    DisableUser {
        id: String,
        user_name: String,
    },
    /// Back from pending deletion. On a target that keeps pending users: POST `resource`
    /// (same userName and externalId) and the target restores it, all attributes overwritten;
    /// `patch` is then empty. On a plain target: apply `patch` (never empty: re-enable and
    /// bring attributes up to date) and drop the agent's pending record.
    RestoreUser {
        id: String,
        user_name: String,
        anchor: String,
        resource: JsonText,
        patch: Vec<scim::PatchOperation>,
    },
    /// DELETE on a target that keeps pending users: the user becomes pending deletion.
    DeleteUser {
        id: String,
        user_name: String,
    },
    /// Plain target: PATCH `active=false` and record the pending date (agent lifecycle).
    AgentPendUser {
        id: String,
        user_name: String,
    },
    /// Plain target: DELETE after the retention period.
    PurgeUser {
        id: String,
        user_name: String,
        pending_since: DateTime<Utc>,
    },
    CreateGroup {
        anchor: String,
        display_name: String,
        dn: String,
        resource: Value,
    },
    AdoptGroup {
        id: String,
        display_name: String,
    },
    UpdateGroup {
        id: String,
        display_name: String,
        changes: Vec<Change>,
        patch: Vec<scim::PatchOperation>,
    },
    DeleteGroup {
        id: String,
        display_name: String,
    },
    AddMembers {
        group: GroupRef,
        display_name: String,
        members: Vec<MemberRef>,
    },
    RemoveMembers {
        group: GroupRef,
        display_name: String,
        members: Vec<MemberRef>,
    },
}

impl Operation {
    /// The object the operation acts on, as a key (kind and id, or anchor for what this plan
    /// creates; member operations are keyed by their group) and a name for people (userName
    /// or displayName). A saved plan is compared with a fresh one object by object on it.
    pub fn subject(&self) -> (String, &str) {
        match self {
            Operation::CreateUser {
                anchor, user_name, ..
            } => (format!("user anchor {anchor}"), user_name),
            Operation::AdoptUser { id, user_name }
            | Operation::UpdateUser { id, user_name, .. }
            | Operation::EnableUser { id, user_name }
            | Operation::DisableUser { id, user_name }
            | Operation::RestoreUser { id, user_name, .. }
            | Operation::DeleteUser { id, user_name }
            | Operation::AgentPendUser { id, user_name }
            | Operation::PurgeUser { id, user_name, .. } => (format!("user id {id}"), user_name),
            Operation::CreateGroup {
                anchor,
                display_name,
                ..
            } => (format!("group anchor {anchor}"), display_name),
            Operation::AdoptGroup { id, display_name }
            | Operation::UpdateGroup {
                id, display_name, ..
            }
            | Operation::DeleteGroup { id, display_name } => {
                (format!("group id {id}"), display_name)
            }
            Operation::AddMembers {
                group,
                display_name,
                ..
            }
            | Operation::RemoveMembers {
                group,
                display_name,
                ..
            } => match group {
                GroupRef::Id(id) => (format!("members of group id {id}"), display_name),
                GroupRef::New(anchor) => {
                    (format!("members of group anchor {anchor}"), display_name)
                }
            },
        }
    }

    /// The id of the existing target object the operation acts on (`None` for creates, and
    /// for member operations on a group this plan creates).
    pub fn target_id(&self) -> Option<&str> {
        match self {
            Operation::CreateUser { .. } | Operation::CreateGroup { .. } => None,
            Operation::AdoptUser { id, .. }
            | Operation::UpdateUser { id, .. }
            | Operation::EnableUser { id, .. }
            | Operation::DisableUser { id, .. }
            | Operation::RestoreUser { id, .. }
            | Operation::DeleteUser { id, .. }
            | Operation::AgentPendUser { id, .. }
            | Operation::PurgeUser { id, .. }
            | Operation::AdoptGroup { id, .. }
            | Operation::UpdateGroup { id, .. }
            | Operation::DeleteGroup { id, .. } => Some(id),
            Operation::AddMembers { group, .. } | Operation::RemoveMembers { group, .. } => {
                match group {
                    GroupRef::Id(id) => Some(id),
                    GroupRef::New(_) => None,
                }
            }
        }
    }
}

/// Why an object is not synchronised this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The directory object could not be mapped.
    Mapping,
    DuplicateUserName,
    DuplicateExternalId,
    DuplicateGroupName,
    DuplicateGroupExternalId,
    /// A user was re-created in the directory while the old one is pending deletion.
    RecreatedUser,
    /// The userName (or group displayName) is used by a target object this instance does
    /// not manage.
    NameTaken,
    /// The matching target object was not created by this instance (and no `--adopt`).
    NotOwned,
    /// The matching target object is outside `iid.scim.filter.*`.
    OutOfScope,
    /// Creating the object would put it outside this instance's `iid.scim.filter.*`.
    WouldLeaveScope,
    /// The change cannot be expressed as SCIM PATCH.
    Internal,
}

/// A per-object error: the object is left as it is; the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanError {
    pub kind: ErrorKind,
    /// The DN (or DNs), or the name, of the object.
    pub object: String,
    pub message: String,
}

/// The result of planning.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Plan {
    /// In execution order.
    pub operations: Vec<Operation>,
    pub errors: Vec<PlanError>,
    /// Safety decisions and other things the report should say.
    pub notes: Vec<String>,
    /// Set when the plan exceeds a deletion threshold: `operations` is then empty.
    pub refused: Option<String>,
    pub unchanged_users: usize,
    pub unchanged_groups: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }
}

/// The explanation for behaviour §4.1 "user re-created in the directory".
fn recreated_message(
    user_name: &str,
    old_id: &str,
    old_ext: Option<&str>,
    new_ext: &str,
) -> String {
    format!(
        "userName {user_name} belongs to a user pending deletion in the target (id {old_id}, externalId {}), \
         and this directory user has a different externalId ({new_ext}): it was re-created in the directory. \
         The target keeps the old user's userName until it is purged, so nothing was changed. \
         Purge the old user first (idservice: `idservice users purge-pending --user {user_name}`; \
         other services: their permanent-delete function), then run again; or, to survive \
         re-creation, anchor users on a stable attribute (ad_bind.externalId: mS-DS-ConsistencyGuid).",
        old_ext.unwrap_or("none")
    )
}

#[derive(Default)]
struct Buckets {
    early_users: Vec<Operation>,
    group_writes: Vec<Operation>,
    member_adds: Vec<Operation>,
    member_removes: Vec<Operation>,
    user_disables: Vec<Operation>,
    group_deletes: Vec<Operation>,
    user_pendings: Vec<Operation>,
}

/// Computes the plan. See the module doc and behaviour §4–5.
pub fn plan(input: &PlanInput) -> Plan {
    let mut users = UserPlanner::new(input);
    users.report_unmapped();
    users.exclude_duplicates();
    users.plan_users();
    let managed_users = managed_users(input);
    let may_remove = may_remove(input, &managed_users, &mut users.out.notes);
    let user_removals = if may_remove {
        users.plan_removals(&managed_users)
    } else {
        0
    };
    users.keep_unchanged_members();
    let errored = users.errored();
    let UserPlanner {
        mut out,
        mut b,
        user_refs,
        ..
    } = users;
    // Groups. Members whose user is in error keep their memberships too.
    let group_removals = plan_groups(input, &mut out, &mut b, &user_refs, &errored, may_remove);
    let population = managed_users
        .iter()
        .filter(|i| !input.target_users[**i].pending)
        .count() as u64;
    let refusals = threshold_refusals(
        &input.thresholds,
        (user_removals, population),
        group_removals,
    );
    if !refusals.is_empty() {
        let needed = user_removals.max(group_removals.0);
        out.refused = Some(format!(
            "{}. Nothing was written. If this is intended, run once with --allow-deletions {needed}.",
            refusals.join("; ")
        ));
        return out;
    }
    out.operations = b.into_operations();
    out
}

/// The target users this instance manages: its own, inside its scope.
fn managed_users(input: &PlanInput) -> Vec<usize> {
    input
        .target_users
        .iter()
        .enumerate()
        .filter(|(_, t)| input.ownership.users.contains(&t.id) && input.scope.user_in(&t.resource))
        .map(|(i, _)| i)
        .collect()
}

/// The safety gate (behaviour §3, 5): nothing is removed on the strength of an incomplete or
/// empty read. Says why in `notes` when it closes.
fn may_remove(input: &PlanInput, managed_users: &[usize], notes: &mut Vec<String>) -> bool {
    // An empty change set says nothing about the directory's size.
    let empty_read = input.changed_users_only.is_none()
        && input.users.is_empty()
        && input.unmapped_users.is_empty();
    if !input.read_complete {
        notes.push(
            "the directory read was incomplete: no user or group is deleted or moved to pending deletion, and no member is removed this run".into(),
        );
        false
    } else if empty_read && !managed_users.is_empty() {
        notes.push(format!(
            "the directory returned no users while the target holds {} managed users: treated as a failed read, nothing is deleted or removed this run",
            managed_users.len()
        ));
        false
    } else {
        true
    }
}

/// The deletion thresholds (behaviour §5): why the plan is refused, if it is. `users` and
/// `groups`: (removals, managed population) of each kind.
fn threshold_refusals(th: &Thresholds, users: (u64, u64), groups: (u64, u64)) -> Vec<String> {
    let allowed = |n: u64| th.allow_deletions.is_some_and(|a| a >= n);
    let mut refusals = Vec::new();
    let (user_removals, population) = users;
    if user_removals > 0 && !allowed(user_removals) {
        let ratio_limit = th.max_deletion_ratio * population as f64;
        if user_removals > th.max_deletions {
            refusals.push(format!(
                "{user_removals} users would be deleted or moved to pending deletion, more than sync.max_deletions ({})",
                th.max_deletions
            ));
        } else if user_removals > th.deletion_ratio_floor && user_removals as f64 > ratio_limit {
            refusals.push(format!(
                "{user_removals} of {population} managed users ({:.0}%) would be deleted or moved to pending deletion, more than sync.max_deletion_ratio ({:.0}%)",
                100.0 * user_removals as f64 / population.max(1) as f64,
                100.0 * th.max_deletion_ratio
            ));
        }
    }
    let (group_count, group_population) = groups;
    if group_count > 0 && !allowed(group_count) {
        let max = th.max_group_deletions.unwrap_or(th.max_deletions);
        if group_count > max {
            refusals.push(format!(
                "{group_count} group deletions and member removals, more than the limit ({max})"
            ));
        } else if group_count > th.deletion_ratio_floor
            && group_count as f64 > th.max_deletion_ratio * group_population as f64
        {
            refusals.push(format!(
                "{group_count} group deletions and member removals out of {group_population} managed groups and memberships, more than sync.max_deletion_ratio ({:.0}%)",
                100.0 * th.max_deletion_ratio
            ));
        }
    }
    refusals
}

impl Buckets {
    /// The operations in execution order.
    fn into_operations(self) -> Vec<Operation> {
        // Moved onto the first bucket, not copied: it holds the 100,000 creates of an
        // initial run.
        let mut operations = self.early_users;
        for bucket in [
            self.group_writes,
            self.member_adds,
            self.member_removes,
            self.user_disables,
            self.group_deletes,
            self.user_pendings,
        ] {
            operations.extend(bucket);
        }
        operations
    }
}

/// The update of a matched, live user: the target's managed view and the desired resource
/// (both without `active`, which has operations of its own) and the patch between them.
fn user_update(
    target: &Value,
    desired: &Value,
    managed: &[String],
) -> (Value, Value, Vec<scim::PatchOperation>) {
    let old = without_active(&managed_view(target, desired, managed));
    let new = without_active(desired);
    let patch = scim::patch::diff(&old, &new, scim::schema::user());
    (old, new, patch)
}

/// True when the planner would send no attribute update from `target` to `desired` (a live
/// user matched by externalId). A full run then lets the target user share the desired
/// resource's text instead of holding its own (issue #5: 100,000 target resources): the
/// planner's comparison of the two comes out the same, empty.
pub fn same_attributes(target: &Value, desired: &Value, managed: &[String]) -> bool {
    user_update(target, desired, managed).2.is_empty()
}

/// The target resource reduced to what the planner may change: attributes the directory
/// gives now, plus the managed ones (which are removed when the directory stops giving them).
/// Everything else on the target is invisible to the diff and therefore never removed.
fn managed_view(target: &Value, desired: &Value, managed: &[String]) -> Value {
    let (Some(t), Some(d)) = (target.as_object(), desired.as_object()) else {
        return target.clone();
    };
    let is_managed = |name: &str| managed.iter().any(|m| m.eq_ignore_ascii_case(name));
    let mut out = serde_json::Map::new();
    for (k, v) in t {
        let in_desired = d.keys().any(|dk| dk.eq_ignore_ascii_case(k));
        if k.starts_with("urn:") {
            // Extension object: the same rule per member, with `urn:…:attr` names.
            let (Some(tv), dv) = (
                v.as_object(),
                d.iter()
                    .find(|(dk, _)| dk.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v),
            ) else {
                continue;
            };
            let dv = dv.and_then(Value::as_object);
            let mut ext = serde_json::Map::new();
            for (sk, sv) in tv {
                let keep = dv.is_some_and(|o| o.keys().any(|x| x.eq_ignore_ascii_case(sk)))
                    || is_managed(&format!("{k}:{sk}"));
                if keep {
                    ext.insert(sk.clone(), sv.clone());
                }
            }
            if !ext.is_empty() {
                out.insert(k.clone(), Value::Object(ext));
            }
        } else if in_desired || is_managed(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Keys with the indexes they belong to, sorted: a lookup finds every index of a key. The
/// planner's indexes over 100,000 users were maps of one small vector per key; a sorted list is
/// a fraction of that memory (issue #5).
struct KeyIndex<K> {
    entries: Vec<(K, usize)>,
}

impl<K: Ord> KeyIndex<K> {
    fn new(mut entries: Vec<(K, usize)>) -> KeyIndex<K> {
        entries.sort();
        KeyIndex { entries }
    }

    /// The entries of `key`, by index.
    fn get<Q>(&self, key: &Q) -> &[(K, usize)]
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let start = self.entries.partition_point(|(k, _)| k.borrow() < key);
        let end = start + self.entries[start..].partition_point(|(k, _)| k.borrow() == key);
        &self.entries[start..end]
    }

    /// Keys held by more than one index, in key order, each with its indexes.
    fn repeated(self) -> Vec<(K, Vec<usize>)> {
        let mut out: Vec<(K, Vec<usize>)> = Vec::new();
        let mut entries = self.entries.into_iter().peekable();
        while let Some((key, i)) = entries.next() {
            let mut idx = vec![i];
            while let Some((_, j)) = entries.next_if(|(k, _)| *k == key) {
                idx.push(j);
            }
            if idx.len() > 1 {
                out.push((key, idx));
            }
        }
        out
    }
}

/// Lower case, without a copy when the text already is (userNames mostly are: 100,000 index
/// keys of a full run).
fn lower(text: &str) -> Cow<'_, str> {
    let changes = |c: char| {
        let mut l = c.to_lowercase();
        l.next() != Some(c) || l.next().is_some()
    };
    if text.chars().any(changes) {
        Cow::Owned(text.to_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

fn without_active(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| !k.eq_ignore_ascii_case("active"));
    }
    v
}

fn without_members(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| !k.eq_ignore_ascii_case("members"));
    }
    v
}

#[cfg(test)]
mod tests;
