//! The `idservice_users` fuzz target: [`fuzz_targets::idservice_users`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::idservice_users::run(data));
