//! Group membership in source terms: which in-scope users (by anchor) are members of each
//! group, from member values that are DNs (`member`, `uniqueMember`) or user attribute values
//! (`memberUid` + `member_user_attribute: uid`).
//!
//! Only direct members that are in-scope users count (behaviour §4.2); a member that is a group is
//! skipped unless flattening is on, when its users become direct members (cycles are cut).
//! This module does not know target ids; the planner translates anchors.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{MappedGroup, MappedUser};
use dirsync_model::entry::{Entry, normalize_dn};

/// How member values identify users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// `dn` (or empty): values are user DNs. Otherwise a user attribute, e.g. `uid`.
    pub member_user_attribute: String,
    pub flatten_nested_groups: bool,
}

impl MemberSpec {
    fn by_dn(&self) -> bool {
        self.member_user_attribute.is_empty()
            || self.member_user_attribute.eq_ignore_ascii_case("dn")
    }
}

/// The keys a user entry answers to in group member values: its normalised DN, or the
/// values of `member_user_attribute` (trimmed, lower case).
pub fn member_keys(spec: &MemberSpec, entry: &Entry) -> Vec<String> {
    if spec.by_dn() {
        vec![normalize_dn(&entry.dn)]
    } else {
        entry
            .strs(&spec.member_user_attribute)
            .into_iter()
            .map(|v| v.trim().to_lowercase())
            .collect()
    }
}

/// For each group (same order as `groups`), the sorted anchors of its member users.
/// `users` pairs each mapped user with the entry it came from (for `memberUid`-style keys).
pub fn resolve_members(
    spec: &MemberSpec,
    users: &[(&Entry, &MappedUser)],
    groups: &[MappedGroup],
) -> Vec<Vec<String>> {
    let mut by_key: HashMap<String, String> = HashMap::new();
    for (entry, user) in users {
        for k in member_keys(spec, entry) {
            by_key.insert(k, user.anchor.clone());
        }
    }
    resolve_members_by_key(spec, &by_key, groups)
}

/// [`resolve_members`] with the users given as member key → anchor (an incremental run keeps
/// the keys of unchanged users in the state instead of mapping them again).
pub fn resolve_members_by_key(
    spec: &MemberSpec,
    by_key: &HashMap<String, String>,
    groups: &[MappedGroup],
) -> Vec<Vec<String>> {
    let key = |v: &str| {
        if spec.by_dn() {
            normalize_dn(v)
        } else {
            v.trim().to_lowercase()
        }
    };
    let group_index: HashMap<String, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (normalize_dn(&g.dn), i))
        .collect();

    groups
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let mut out = BTreeSet::new();
            let mut seen = HashSet::new();
            let mut stack = vec![i];
            while let Some(gi) = stack.pop() {
                if !seen.insert(gi) {
                    continue;
                }
                for v in &groups[gi].member_values {
                    let k = key(v);
                    if let Some(anchor) = by_key.get(&k) {
                        out.insert(anchor.clone());
                    } else if spec.flatten_nested_groups
                        && spec.by_dn()
                        && let Some(child) = group_index.get(&k)
                    {
                        stack.push(*child);
                    }
                }
            }
            out.into_iter().collect()
        })
        .collect()
}
