//! `idservice`: a SCIM 2.0 identity service with cloud-ID semantics (user states with
//! pending deletion, tenant rules, scoped bearer tokens), stored in SQLite.
//!
//! Layers: [`http`] (axum: routing, auth, SCIM wire format) → [`domain`] (states, tenant
//! rules, tokens, bulk) → [`store`] (sqlx SQLite, filter → SQL). The domain never sees HTTP
//! types and the store never decides rules.

pub mod domain;
pub mod http;
pub mod server;
pub mod store;
