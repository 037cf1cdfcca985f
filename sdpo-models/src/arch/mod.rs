//! The decoder-only architecture shared by Llama, Mistral, Qwen2 and Qwen3: configuration,
//! RMSNorm, RoPE, grouped-query attention, SwiGLU MLP, decoder layer and [`CausalLm`].
//! Families differ by [`ModelConfig`] flags, not by copies.

pub mod attention;
pub mod cache;
pub mod config;
pub mod decoder;
pub mod delta;
pub mod layer;
pub mod linear;
pub mod mask;
pub mod mlp;
pub mod model;
pub mod norm;
pub mod rope;

pub use attention::AttentionMask;
pub use cache::KvCache;
pub use config::{ConfigError, HfConfig, ModelConfig, RopeScaling};
pub use decoder::CausalDecoder;
pub use delta::{LayerDelta, Projection, ProjectionDelta};
pub use linear::linear;
pub use mask::{attention_mask, positions_from_mask};
pub use model::{CausalLm, DecoderModel};
