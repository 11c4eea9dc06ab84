//! An HTTP client for any SCIM 2.0 service provider (RFC 7644), used by the `dirsync` agent
//! to converge its target and by `idservice` to provision downstream applications.
//!
//! It knows the protocol's HTTP shape — authentication, `application/scim+json`, pagination,
//! PATCH answered with 200 or 204, Bulk, `/ServiceProviderConfig` — and the transport rules:
//! retries with backoff for 429/5xx that honour `Retry-After`, never retrying a request that
//! may have been applied, and an adaptive limit on requests in flight that halves on overload
//! and grows while the service keeps up. It does not know what to send: that is the caller's plan.
//! Secrets (bearer tokens, client secrets, proxy passwords) never appear in its errors or logs.

mod adaptive;
mod auth;
mod client;
mod discovery;
mod error;
mod retry;

pub use adaptive::ConcurrencyStats;
pub use auth::{Auth, OAuth2ClientCredentials};
pub use client::{
    BulkOperation, BulkResult, ClientOptions, ProxyOptions, ResourceKind, ScimClient,
};
pub use discovery::ServiceProviderInfo;
pub use error::ClientError;
