//! The `scim_filter_sql` fuzz target: [`fuzz_targets::scim_filter_sql`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::scim_filter_sql::run(data));
