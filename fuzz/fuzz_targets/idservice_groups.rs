//! The `idservice_groups` fuzz target: [`fuzz_targets::idservice_groups`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::idservice_groups::run(data));
