//! Resources as JSON objects with schema-aware, case-insensitive attribute access, plus
//! typed views for User and Group that keep unknown extension attributes.
