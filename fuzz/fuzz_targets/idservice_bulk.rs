//! The `idservice_bulk` fuzz target: [`fuzz_targets::idservice_bulk`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::idservice_bulk::run(data));
