//! The `ldif` fuzz target: [`fuzz_targets::ldif`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::ldif::run(data));
