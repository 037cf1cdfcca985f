//! Decoder-only language models on Burn (Llama / Qwen family), their loading,
//! tokenizer, chat templates and generation.
//!
//! This crate never names SDPO: it is a model library the trainer builds on.
//! Entry points: [`load()`], [`Loaded`], [`CausalLm::forward_logits`],
//! [`Tokenizer`]; docs/ARCHITECTURE.md places the modules.
#![warn(missing_docs)]

pub mod arch;
pub mod hf;
#[cfg(feature = "hub")]
pub mod hub;

pub use sdpo_core::ChatMessage;

pub mod tokenizer;
pub use tokenizer::{Tokenizer, TokenizerError};

pub mod export;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod load;
pub mod lora;
pub mod precision;
pub mod scoring;
pub use arch::{CausalDecoder, CausalLm, KvCache, ModelConfig};
pub use hf::{load_hf_dir, LoadError};
pub use load::{load, Loaded, ModelSource};
pub use precision::{Precision, PrecisionError};
