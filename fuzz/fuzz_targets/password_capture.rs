//! The `password_capture` fuzz target: [`fuzz_targets::password_capture`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::password_capture::run(data));
