//! `cargo +nightly fuzz run run_config`: see `sdpo_cli::fuzzing::run_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: sdpo_cli::fuzzing::count_only_escaping_panics(),
    |data: &[u8]| sdpo_cli::fuzzing::run_config(data)
);
