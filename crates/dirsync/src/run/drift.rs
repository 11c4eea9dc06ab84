//! Drift: plan operations on objects whose directory entry did not change since the last run.

use super::*;

/// Plan operations on objects whose directory entry did not change since the last run: the
/// target differs from what the last run left, or the incremental path missed a change.
pub(super) fn plan_drift(
    plan: &Plan,
    anchors: &HashMap<String, String>,
    unchanged: &desired::AnchorSet,
) -> Vec<String> {
    use plan::Operation as Op;
    let mut out = BTreeSet::new();
    let by_id = |id: &str| anchors.get(id).is_some_and(|a| unchanged.contains(a));
    for op in &plan.operations {
        let (hit, name) = match op {
            Op::CreateUser {
                anchor, user_name, ..
            } => (unchanged.contains(anchor), format!("user {user_name}")),
            Op::CreateGroup {
                anchor,
                display_name,
                ..
            } => (unchanged.contains(anchor), format!("group {display_name}")),
            Op::UpdateUser { id, user_name, .. }
            | Op::EnableUser { id, user_name }
            | Op::DisableUser { id, user_name }
            | Op::RestoreUser { id, user_name, .. } => (by_id(id), format!("user {user_name}")),
            Op::UpdateGroup {
                id, display_name, ..
            } => (by_id(id), format!("group {display_name}")),
            Op::AddMembers {
                group: plan::GroupRef::Id(id),
                display_name,
                ..
            }
            | Op::RemoveMembers {
                group: plan::GroupRef::Id(id),
                display_name,
                ..
            } => (by_id(id), format!("group {display_name}")),
            _ => (false, String::new()),
        };
        if hit {
            out.insert(name);
        }
    }
    out.into_iter().collect()
}
