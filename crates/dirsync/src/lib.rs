//! The directory synchronisation agent: wires the agent's crates into one run — read the
//! directory, map, plan against what the SCIM target holds, apply, record — plus password
//! sync and the end-of-run report. See ARCHITECTURE.md for the crate map.
//!
//! The other crates are re-exported under their old module names (`dirsync::config`,
//! `dirsync::plan`, …) so callers of the library keep one entry point.

pub use dirsync_apply as apply;
pub use dirsync_apply::{journal, target};
pub use dirsync_config as config;
pub use dirsync_ldap_filter as ldap_filter;
pub use dirsync_mapping as mapping;
pub use dirsync_model::json_text;
pub use dirsync_plan as plan;
pub use dirsync_plan::source_mark;
pub use dirsync_state as state;

pub mod client;
pub mod daemon;
pub mod kerberos_env;
pub mod logging;
pub mod notify;
pub mod password_sync;
pub mod report;
pub mod run;
pub mod run_report;
pub mod saved_plan;
pub mod source;
