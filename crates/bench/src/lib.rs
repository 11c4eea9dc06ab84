//! Shared code of the bench binaries (`bench-idservice`, `bench-dirsync`, `bench-scale`): a
//! library target so each binary uses only what it needs without dead-code warnings.

pub mod common;
pub mod error;
pub mod gen_ldif;
pub mod postgres;

pub use error::{Error, Result};
