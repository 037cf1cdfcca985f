//! `cargo +nightly fuzz run hf_model`: see `sdpo_cli::fuzzing::hf_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: sdpo_cli::fuzzing::count_only_escaping_panics(),
    |data: &[u8]| sdpo_cli::fuzzing::hf_model(data)
);
