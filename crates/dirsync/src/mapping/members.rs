//! Group membership in source terms: which in-scope users (by anchor) are members of each
//! group, from member values that are DNs (`member`, `uniqueMember`) or user attribute values
//! (`memberUid` + `member_user_attribute: uid`).
//!
//! Only direct members that are in-scope users count (SPEC 4.2); a member that is a group is
//! skipped unless flattening is on, when its users become direct members (cycles are cut).
//! This module does not know target ids; the planner translates anchors.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{MappedGroup, MappedUser};
use crate::source::{Entry, normalize_dn};

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

/// For each group (same order as `groups`), the sorted anchors of its member users.
/// `users` pairs each mapped user with the entry it came from (for `memberUid`-style keys).
pub fn resolve_members(
    spec: &MemberSpec,
    users: &[(&Entry, &MappedUser)],
    groups: &[MappedGroup],
) -> Vec<Vec<String>> {
    let mut by_key: HashMap<String, &str> = HashMap::new();
    for (entry, user) in users {
        if spec.by_dn() {
            by_key.insert(normalize_dn(&entry.dn), &user.anchor);
        } else {
            for v in entry.strs(&spec.member_user_attribute) {
                by_key.insert(v.trim().to_lowercase(), &user.anchor);
            }
        }
    }
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
                        out.insert((*anchor).to_string());
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
