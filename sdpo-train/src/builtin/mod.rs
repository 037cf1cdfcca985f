//! What `sdpo train` runs with nothing downloaded: a character-level tokenizer, a small
//! Llama-architecture model and verifiable tasks.

pub mod job;
pub mod tasks;
pub mod tokenizer;
pub mod warm_start;

pub use tasks::Task;
pub use tokenizer::char_tokenizer;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Device, Distribution, Tensor};
use sdpo_models::arch::{ModelConfig, RopeScaling};
use sdpo_models::CausalLm;

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

/// Standard deviation of the initial weights, as Hugging Face's `initializer_range`.
pub const INIT_STD: f64 = 0.02;

/// A freshly initialized model the way transformers initializes one: every matrix (linear
/// weights, embeddings) drawn from N(0, 0.02²), norms at 1, biases at 0. Burn's own defaults
/// (embeddings N(0, 1)) make a tied-embedding model echo its last input token.
///
/// Seed the backend (`B::seed`) first for reproducible weights.
pub fn init_model<B: Backend>(config: &ModelConfig, device: &Device<B>) -> CausalLm<B> {
    CausalLm::new(config, device).map(&mut HfInit)
}

/// Re-draws every parameter of two or more dimensions from N(0, [`INIT_STD`]²).
struct HfInit;

impl<B: Backend> ModuleMapper<B> for HfInit {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if D < 2 {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        // A fresh model trains every weight; a new tensor does not require gradients on an
        // autodiff backend unless told so.
        let fresh = Tensor::random(
            tensor.shape(),
            Distribution::Normal(0.0, INIT_STD),
            &tensor.device(),
        )
        .require_grad();
        Param::from_mapped_value(id, fresh, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn init_draws_small_matrices_and_keeps_norms() {
        type B = NdArray<f32>;
        let device = Default::default();
        B::seed(&device, 1);
        let m = init_model::<B>(&tiny_model_config(99), &device);
        let e = m
            .model
            .embed_tokens
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let std = (e.iter().map(|x| x * x).sum::<f32>() / e.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.002, "{std}");
        let norm = m
            .model
            .norm
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(norm.iter().all(|&x| x == 1.0));
        // Every weight of a fresh model is trainable.
        type A = burn::backend::Autodiff<B>;
        let m = init_model::<A>(&tiny_model_config(99), &device);
        assert!(m.model.embed_tokens.weight.val().is_require_grad());
        assert!(m.model.layers[0].mlp.up_proj.weight.val().is_require_grad());
    }
}
