//! `idservice`: a SCIM 2.0 identity service with cloud-ID semantics (user states with
//! pending deletion, tenant rules, scoped bearer tokens), stored in SQLite.
//!
//! Layers: [`http`] (axum: routing, auth, SCIM wire format) → [`domain`] (states, tenant
//! rules, tokens, bulk) → [`store`] (sqlx SQLite, filter → SQL). The domain never sees HTTP
//! types and the store never decides rules.

pub mod config;
pub mod domain;
pub mod http;
pub mod i18n;
/// Email (behaviour §7.5): templates, durable outbox, SMTP sender, expiry checks.
pub mod mail;
/// Linked downstream applications (behaviour §7.6): outbound provisioning worker and admin ops.
pub mod outbound;
pub mod secret_file;
pub mod server;
pub mod store;
/// Sign-in and password-reset pages (server-rendered HTML at the server root).
pub mod web;
