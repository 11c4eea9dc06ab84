//! The directory synchronisation agent.

pub mod config;
pub mod ldap_filter;
pub mod mapping;
pub mod plan;
pub mod source;
pub mod state;
