//! The `config_load` fuzz target: [`fuzz_targets::config_load`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::config_load::run(data));
