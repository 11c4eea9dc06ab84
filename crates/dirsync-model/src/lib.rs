//! The agent's shared vocabulary: directory entries, the directory kind, anchor text, mapped
//! users and groups, and JSON kept as text.
//!
//! Plain data and pure functions. It does not know connections (LDAP, HTTP), the
//! configuration file, the local state, or any other crate of the agent.

pub mod anchor;
pub mod entry;
pub mod json_text;
pub mod kind;
pub mod mapped;
