//! Reading GGUF files (llama.cpp's model format): metadata, tensors
//! dequantized to `f32`, a Hugging Face-style config and tokenizer.
//!
//! ```no_run
//! use sdpo_models::gguf::{GgufFile, GgufModelConfig, GgufTokenizerMeta};
//!
//! # fn main() -> Result<(), sdpo_models::gguf::GgufError> {
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let config = GgufModelConfig::from_gguf(&file)?;
//! for tensor in file.hf_tensors() {
//!     let tensor = tensor?; // e.g. "model.layers.0.self_attn.q_proj.weight", [576, 576]
//!     println!("{} {:?}", tensor.name, tensor.tensor.shape);
//! }
//! let tokenizer_json = GgufTokenizerMeta::from_gguf(&file)?.to_hf_tokenizer_json(&file)?;
//! # let _ = (config, tokenizer_json);
//! # Ok(())
//! # }
//! ```
//!
//! - [`reader`]: the file layout, [`GgufFile`], typed metadata access.
//! - [`dequant`]: [`GgmlType`] and dequantization, bit-exact with gguf-py.
//! - [`names`]: GGUF → Hugging Face tensor names, the q/k un-permutation.
//! - [`config`]: [`GgufModelConfig`], a `config.json` mirror.
//! - [`tokenizer_meta`]: [`GgufTokenizerMeta`] and the `tokenizer.json` builder.
//!
//! Tests that read the real SmolLM2 file need `SDPO_SMOLLM2_GGUF` set to its
//! path (see `tests.rs`).

pub mod config;
pub mod dequant;
mod error;
pub mod names;
pub mod reader;
pub mod tokenizer_meta;

#[cfg(test)]
mod tests;

pub use config::GgufModelConfig;
pub use dequant::GgmlType;
pub use error::GgufError;
pub use names::{gguf_tensor_name, hf_tensor_name, unpermute_qk, HfTensor};
pub use reader::{GgufFile, MetadataValue, TensorData, TensorInfo};
pub use tokenizer_meta::GgufTokenizerMeta;
