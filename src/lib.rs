//! `sdpo`: Self-Distilled Policy Optimization for language models on Burn.
//!
//! This facade re-exports the workspace crates:
//! - [`core`]: the algorithm (config, losses, reprompting, teacher updates);
//! - [`models`]: Burn language models, loading, tokenizer, generation;
//! - [`train`]: the trainer.
#![warn(missing_docs)]

pub use sdpo_core as core;
pub use sdpo_models as models;
pub use sdpo_train as train;

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
