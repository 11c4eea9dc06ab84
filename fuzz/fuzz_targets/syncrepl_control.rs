//! The `syncrepl_control` fuzz target: [`fuzz_targets::syncrepl_control`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: { fuzz_targets::syncrepl_control::init(); },
    |data: &[u8]| fuzz_targets::syncrepl_control::run(data)
);
