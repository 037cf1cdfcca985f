//! sdpo-models' integration tests, one binary (each test binary links all of Burn: one
//! binary instead of five keeps `cargo test` fast and small). Run one group with e.g.
//! `cargo test -p sdpo-models --test models generation::`.

mod export_check;
mod generation;
mod hf_parity;
mod lora_export;
mod smollm2;
