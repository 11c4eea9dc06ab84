//! What the mapping produces and the planner consumes: a user or group as the directory wants
//! it in the target, and the error for one object that could not be mapped.

use serde::Serialize;
use serde_json::Value;

use crate::json_text::JsonText;

/// A user as the directory wants it in the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappedUser {
    pub dn: String,
    /// The source anchor, sent as `externalId`.
    pub anchor: String,
    pub user_name: String,
    pub active: bool,
    /// The full SCIM resource (core attributes, extensions under their URN keys, `schemas`),
    /// shared with the plan's create operation; kept as text (100,000 of them are held at once
    /// in a full run; the planner parses one at a time).
    pub resource: JsonText,
    /// Non-fatal problems (skipped values, dropped addresses).
    pub warnings: Vec<String>,
}

/// A group as the directory wants it, without members (members are resolved by the mapping).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappedGroup {
    pub dn: String,
    pub anchor: String,
    pub display_name: String,
    pub resource: Value,
    /// Raw values of the member attribute (DNs, or user attribute values for `memberUid`);
    /// emptied once resolved to member anchors (`run::desired::with_members`).
    pub member_values: Vec<String>,
}

/// One object could not be mapped. The anchor and userName are given when they were known,
/// so the planner can leave the object's target counterpart alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{dn}: {attribute}: {message}")]
pub struct MappingError {
    pub dn: String,
    pub attribute: String,
    pub message: String,
    pub anchor: Option<String>,
    pub user_name: Option<String>,
}
