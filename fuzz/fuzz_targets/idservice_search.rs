//! The `idservice_search` fuzz target: [`fuzz_targets::idservice_search`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::idservice_search::run(data));
