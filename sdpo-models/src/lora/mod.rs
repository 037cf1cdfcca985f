//! LoRA adapters (PEFT names) over a frozen base; merging; several adapter sets on one base.
//!
//! A [`LoraSet`] holds only adapters: for each decoder layer and each targeted projection
//! (`q_proj` … `down_proj`), `A: in → r` (Kaiming-uniform) and `B: r → out` (zeros), applied
//! as `y = W x + (alpha / r) · B(A(dropout(x)))`. The base model is never copied:
//!
//! - [`WithLora`] borrows a base and a set and implements
//!   [`CausalDecoder`](crate::CausalDecoder), so generation and scoring run on it; a LoRA-EMA
//!   teacher is a second set viewed over the same base;
//! - [`LoraModel`] owns a frozen base and a trainable set, for an optimizer;
//! - [`merge`] folds a set into a copy of the base (for export);
//! - [`LoraSet::save_peft`] / [`LoraSet::load_peft`] read and write PEFT adapter folders;
//! - [`param_bytes`] counts what a module's parameters occupy.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Bool, Int, Tensor};
//! use sdpo_models::lora::{LoraConfig, LoraSet, WithLora};
//! use sdpo_models::{CausalLm, ModelConfig};
//!
//! type B = NdArray<f32>;
//! let device = Default::default();
//! let config = ModelConfig::from_json(
//!     r#"{"model_type": "qwen2", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 32,
//!         "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1}"#,
//! )
//! .unwrap();
//! let base = CausalLm::<B>::new(&config, &device);
//! let student = LoraSet::<B>::new(&LoraConfig::default(), &config, &device).unwrap();
//! let teacher = LoraSet::<B>::new(&LoraConfig::default(), &config, &device).unwrap();
//! let ids = Tensor::<B, 2, Int>::from_ints([[1, 2, 3]], &device);
//! let mask = Tensor::<B, 2, Bool>::from_bool([[true, true, true]].into(), &device);
//! let s = WithLora::new(&base, &student).unwrap().forward_logits(ids.clone(), mask.clone());
//! let t = WithLora::new(&base, &teacher).unwrap().forward_logits(ids, mask);
//! assert_eq!(s.dims(), [1, 3, 32]);
//! // Fresh adapters are zero: both views compute the base model.
//! assert_eq!(s.into_data(), t.into_data());
//! ```

mod adapter;
mod config;
mod error;
mod merge;
mod peft;
mod size;
mod view;

pub use adapter::{AttentionLora, LayerLora, LoraAdapter, LoraSet, MlpLora};
pub use config::{LoraConfig, TARGET_MODULES};
pub use error::LoraError;
pub use merge::merge;
pub(crate) use peft::temp_path;
pub use peft::{peft_key, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
pub use size::{materialize, param_bytes};
pub use view::{LoraModel, WithLora};
