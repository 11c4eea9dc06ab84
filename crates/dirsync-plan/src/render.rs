//! The plan as people read it (`--dry-run`): one line per operation in a diff style
//! (`+ user alice`, `~ user bob: title "A" -> "B"`, `- user carol (pending deletion)`),
//! errors, notes and a summary. JSON comes from `Serialize` on the same types.
//!
//! Presentation only: it decides nothing.

use std::fmt;

use serde_json::Value;

use super::{Change, MemberRef, Operation, Plan};

/// Attribute changes of a PATCH, with the old values looked up in `old`.
pub(super) fn changes(patch: &[scim::PatchOperation], old: &Value, new: &Value) -> Vec<Change> {
    patch
        .iter()
        .map(|op| {
            let (path, value) = match op {
                scim::PatchOperation::Add(t) | scim::PatchOperation::Replace(t) => match t {
                    scim::OperationTarget::WithPath { path, value } => (Some(path), value.clone()),
                    scim::OperationTarget::WithoutPath { value } => {
                        (None, Some(Value::Object(value.clone())))
                    }
                },
                scim::PatchOperation::Remove { path, .. } => (Some(path), None),
            };
            let Some(path) = path else {
                return Change {
                    path: String::new(),
                    old: None,
                    new: value,
                };
            };
            let (old_v, new_v) = match path {
                scim::PatchPath::Attr(a) => (lookup(old, a), value.or_else(|| lookup(new, a))),
                scim::PatchPath::Value(_) => (None, value),
            };
            Change {
                path: path.to_string(),
                old: old_v,
                new: if matches!(op, scim::PatchOperation::Remove { .. }) {
                    None
                } else {
                    new_v
                },
            }
        })
        .collect()
}

/// The value at an attribute path of a resource, if any.
fn lookup(resource: &Value, a: &scim::AttrPath) -> Option<Value> {
    let base = match &a.uri {
        Some(uri)
            if !uri.eq_ignore_ascii_case(scim::urn::USER)
                && !uri.eq_ignore_ascii_case(scim::urn::GROUP) =>
        {
            scim::resource::member(resource, uri)?
        }
        _ => resource,
    };
    let v = scim::resource::member(base, &a.name)?;
    match &a.sub_attr {
        Some(sub) => scim::resource::member(v, sub).cloned(),
        None => Some(v.clone()),
    }
}

/// Attribute names lose their URN prefix for display (`department`, not
/// `urn:…:enterprise:2.0:User:department`).
fn short_path(path: &str) -> &str {
    if path.starts_with("urn:") {
        path.rsplit(':').next().unwrap_or(path)
    } else {
        path
    }
}

/// A value as displayed: its JSON, or `(none)`.
fn show(v: &Option<Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => v.to_string(),
    }
}

/// Member user names, comma-separated.
fn members(ms: &[MemberRef]) -> String {
    let names: Vec<&str> = ms.iter().map(|m| m.user_name.as_str()).collect();
    names.join(", ")
}

/// A user's changes: `path old -> new`, or `path removed (was old)`, joined by `; `.
fn user_changes(changes: &[Change]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|c| match &c.new {
            None => format!("{} removed (was {})", short_path(&c.path), show(&c.old)),
            Some(_) => format!(
                "{} {} -> {}",
                short_path(&c.path),
                show(&c.old),
                show(&c.new)
            ),
        })
        .collect();
    parts.join("; ")
}

/// A group's changes: `path old -> new`, joined by `; `.
fn group_changes(changes: &[Change]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "{} {} -> {}",
                short_path(&c.path),
                show(&c.old),
                show(&c.new)
            )
        })
        .collect();
    parts.join("; ")
}

/// Writes a membership line: `~ group <name>: <sign> <n> member(s): <names>`.
fn member_line(
    f: &mut fmt::Formatter<'_>,
    sign: char,
    display_name: &str,
    ms: &[MemberRef],
) -> fmt::Result {
    write!(
        f,
        "~ group {}: {sign} {} member(s): {}",
        display_name,
        ms.len(),
        members(ms)
    )
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::CreateUser {
                user_name,
                resource,
                ..
            } => {
                let inactive = resource.value().get("active") == Some(&Value::Bool(false));
                write!(
                    f,
                    "+ user {user_name}{}",
                    if inactive { " (inactive)" } else { "" }
                )
            }
            Operation::AdoptUser { user_name, id } => {
                write!(f, "= user {user_name}: adopted (target id {id})")
            }
            Operation::UpdateUser {
                user_name, changes, ..
            } => write!(f, "~ user {user_name}: {}", user_changes(changes)),
            Operation::EnableUser { user_name, .. } => write!(f, "~ user {user_name}: enabled"),
            Operation::DisableUser { user_name, .. } => write!(f, "~ user {user_name}: disabled"),
            Operation::RestoreUser { user_name, .. } => {
                write!(f, "+ user {user_name} (restored from pending deletion)")
            }
            Operation::DeleteUser { user_name, .. } => {
                write!(f, "- user {user_name} (pending deletion)")
            }
            Operation::AgentPendUser { user_name, .. } => write!(
                f,
                "- user {user_name} (disabled; pending deletion kept by the agent)"
            ),
            Operation::PurgeUser {
                user_name,
                pending_since,
                ..
            } => write!(
                f,
                "- user {user_name} (deleted: pending since {})",
                pending_since.format("%Y-%m-%d")
            ),
            Operation::CreateGroup { display_name, .. } => write!(f, "+ group {display_name}"),
            Operation::AdoptGroup { display_name, id } => {
                write!(f, "= group {display_name}: adopted (target id {id})")
            }
            Operation::UpdateGroup {
                display_name,
                changes,
                ..
            } => write!(f, "~ group {display_name}: {}", group_changes(changes)),
            Operation::DeleteGroup { display_name, .. } => write!(f, "- group {display_name}"),
            Operation::AddMembers {
                display_name,
                members: ms,
                ..
            } => member_line(f, '+', display_name, ms),
            Operation::RemoveMembers {
                display_name,
                members: ms,
                ..
            } => member_line(f, '-', display_name, ms),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = &self.refused {
            writeln!(f, "REFUSED: {reason}")?;
        }
        for op in &self.operations {
            writeln!(f, "{op}")?;
        }
        for e in &self.errors {
            writeln!(f, "! {}: {}", e.object, e.message)?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        let count =
            |pred: fn(&Operation) -> bool| self.operations.iter().filter(|o| pred(o)).count();
        write!(
            f,
            "{} user(s) to create, {} to update, {} to restore, {} to disable, {} to delete or pend; \
             {} group(s) to create, {} to delete, {} membership change(s); {} error(s); {} user(s) and {} group(s) unchanged",
            count(|o| matches!(o, Operation::CreateUser { .. })),
            count(|o| matches!(
                o,
                Operation::UpdateUser { .. } | Operation::EnableUser { .. }
            )),
            count(|o| matches!(o, Operation::RestoreUser { .. })),
            count(|o| matches!(o, Operation::DisableUser { .. })),
            count(|o| matches!(
                o,
                Operation::DeleteUser { .. }
                    | Operation::AgentPendUser { .. }
                    | Operation::PurgeUser { .. }
            )),
            count(|o| matches!(o, Operation::CreateGroup { .. })),
            count(|o| matches!(o, Operation::DeleteGroup { .. })),
            count(|o| matches!(
                o,
                Operation::AddMembers { .. } | Operation::RemoveMembers { .. }
            )),
            self.errors.len(),
            self.unchanged_users,
            self.unchanged_groups,
        )
    }
}
