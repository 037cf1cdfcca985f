//! One pre-norm decoder layer.

use burn::module::Module;
use burn::tensor::{backend::Backend, Bool, Device, Tensor};

use super::attention::Attention;
use super::cache::KvCache;
use super::config::ModelConfig;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use crate::lora::LayerLora;

/// `x + attn(norm(x))`, then `x + mlp(norm(x))`; field names as in HF checkpoints.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Self-attention.
    pub self_attn: Attention<B>,
    /// Feed-forward block.
    pub mlp: Mlp<B>,
    /// Norm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// Builds the layer (weights lazily initialized; loading overwrites them).
    pub fn new(config: &ModelConfig, device: &Device<B>) -> Self {
        Self {
            self_attn: Attention::new(config, device),
            mlp: Mlp::new(config, device),
            input_layernorm: RmsNorm::new(config.hidden_size, config.rms_norm_eps, device),
            post_attention_layernorm: RmsNorm::new(config.hidden_size, config.rms_norm_eps, device),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    /// - `cos`, `sin`, `mask`: as in [`Attention::forward`]
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: &Tensor<B, 4, Bool>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        self.forward_with(x, cos, sin, mask, cache, None)
    }

    /// [`DecoderLayer::forward`] with optional LoRA adapters for this layer.
    ///
    /// # Shapes
    /// As in [`DecoderLayer::forward`].
    pub fn forward_with(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: &Tensor<B, 4, Bool>,
        cache: Option<(&mut KvCache<B>, usize)>,
        lora: Option<&LayerLora<B>>,
    ) -> Tensor<B, 3> {
        let h = self.self_attn.forward_with(
            self.input_layernorm.forward(x.clone()),
            cos,
            sin,
            mask,
            cache,
            lora.map(|l| &l.self_attn),
        );
        let x = x.add(h);
        let h = self.mlp.forward_with(
            self.post_attention_layernorm.forward(x.clone()),
            lora.map(|l| &l.mlp),
        );
        x.add(h)
    }
}
