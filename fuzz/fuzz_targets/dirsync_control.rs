//! The `dirsync_control` fuzz target: [`fuzz_targets::dirsync_control`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::dirsync_control::run(data));
