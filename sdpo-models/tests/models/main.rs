//! sdpo-models' integration tests, one binary (each test binary links all of Burn: one
//! binary instead of five keeps `cargo test` fast and small). Run one group with e.g.
//! `cargo test -p sdpo-models --test models lora_export::`. The numerical tests of models,
//! LoRA and generation are backend-generic and live in the root package's suite
//! (`tests/backends/`).

#[path = "../support/lora_fixtures.rs"]
mod lora_fixtures;

mod export_check;
mod hf_parity;
mod lora_export;
mod smollm2;
