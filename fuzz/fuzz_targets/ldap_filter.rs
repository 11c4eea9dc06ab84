//! The `ldap_filter` fuzz target: [`fuzz_targets::ldap_filter`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::ldap_filter::run(data));
