//! SCIM 2.0 protocol (RFC 7643 / RFC 7644), shared by the `dirsync` client and the
//! `idservice` server.
//!
//! This crate does no I/O. It knows the resource schemas, evaluates filters against
//! resources, applies PATCH operations, projects `attributes`/`excludedAttributes`, and maps
//! errors to the RFC 7644 §3.12 error format. Parsing of filters and PATCH paths is done by
//! the `scim_v2` crate; everything that *acts* on the parsed form lives here.

pub mod error;
pub mod filter;
pub mod patch;
pub mod projection;
pub mod resource;
pub mod run_report;
pub mod schema;
pub mod urn;

pub use error::{ScimError, ScimType};
pub use scim_v2::filter::{
    AttrExp, AttrPath, CompValue, CompareOp, Filter, PatchPath, PatchValuePath, ValFilter,
    ValuePath,
};
pub use scim_v2::models::others::{OperationTarget, PatchOp, PatchOperation};
