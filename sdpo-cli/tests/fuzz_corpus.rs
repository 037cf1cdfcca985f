//! Replays every committed fuzz input (`fuzz/corpus/<target>/`: seeds and the inputs of bugs
//! the fuzzers found) through its target, so `cargo test` keeps them fixed without nightly or
//! cargo-fuzz. Fuzzing itself: `fuzz/README.md`.

#![cfg(feature = "ndarray")]

use std::path::Path;

use sdpo_cli::fuzzing::{run, TARGETS};

#[test]
fn every_committed_fuzz_input_runs_without_a_crash() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for target in TARGETS {
        let dir = corpus.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no seeds for `{target}`");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            eprintln!("{target}: {}", input.display());
            run(target, &data);
        }
    }
}
