//! Attribute definitions (RFC 7643 §2, §4, §7) for the resources this project serves and
//! sends: User (core, enterprise, the two enterprise-JP extensions) and Group (+ extension).
//! The definitions drive case sensitivity in filters, multi-valued handling in PATCH,
//! `returned` in projections, and the `/Schemas` endpoint.
