//! The `scim_patch` fuzz target: [`fuzz_targets::scim_patch`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::scim_patch::run(data));
