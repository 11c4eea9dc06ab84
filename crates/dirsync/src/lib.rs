//! The directory synchronisation agent: reads users and groups from an LDAP directory (or an
//! LDIF file), maps them to SCIM resources, plans the difference with what a SCIM 2.0 target
//! holds, and applies it safely. See ARCHITECTURE.md for the module map.

pub mod apply;
pub mod config;
pub mod journal;
pub mod json_text;
pub mod ldap_filter;
pub mod mapping;
pub mod password_sync;
pub mod plan;
pub mod report;
pub mod run;
pub mod source;
pub mod source_mark;
pub mod state;
pub mod target;
