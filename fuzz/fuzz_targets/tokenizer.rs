//! `cargo +nightly fuzz run tokenizer`: see `sdpo_cli::fuzzing::tokenizer`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: sdpo_cli::fuzzing::count_only_escaping_panics(),
    |data: &[u8]| sdpo_cli::fuzzing::tokenizer(data)
);
