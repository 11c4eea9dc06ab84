//! idservice library.
