//! `cargo +nightly fuzz run jsonl`: see `sdpo_cli::fuzzing::jsonl`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: sdpo_cli::fuzzing::count_only_escaping_panics(),
    |data: &[u8]| sdpo_cli::fuzzing::jsonl(data)
);
