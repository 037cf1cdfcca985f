//! What `sdpo train` runs with nothing downloaded: a character-level tokenizer, a small
//! Llama-architecture model and verifiable tasks.

pub mod tasks;
pub mod tokenizer;
pub mod warm_start;

pub use tasks::Task;
pub use tokenizer::char_tokenizer;

use sdpo_models::arch::{ModelConfig, RopeScaling};

/// The built-in model's architecture: a 2-layer Llama (tied embeddings, GQA) over the built-in
/// character vocabulary, ~0.2 M parameters — small enough to train on a laptop CPU in minutes.
pub fn tiny_model_config(vocab_size: usize) -> ModelConfig {
    ModelConfig {
        model_type: "llama".to_string(),
        vocab_size,
        hidden_size: 64,
        intermediate_size: 192,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        qk_norm: false,
        sliding_window: None,
    }
}
