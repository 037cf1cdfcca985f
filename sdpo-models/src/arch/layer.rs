//! One pre-norm decoder layer.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Device, Tensor};

use super::attention::{Attention, AttentionMask};
use super::cache::KvCache;
use super::config::ModelConfig;
use super::delta::{LayerDelta, Projection};
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::RotaryAngles;
use crate::kernels::DecoderBackend;

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
    /// - `angles`, `mask`: as in [`Attention::forward`]
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        angles: &RotaryAngles<B>,
        mask: &AttentionMask<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3>
    where
        B: DecoderBackend,
    {
        self.forward_with(x, angles, mask, cache, None)
    }

    /// [`DecoderLayer::forward`] with an optional additive term on this layer's projections
    /// (e.g. LoRA).
    ///
    /// # Shapes
    /// As in [`DecoderLayer::forward`].
    pub fn forward_with(
        &self,
        x: Tensor<B, 3>,
        angles: &RotaryAngles<B>,
        mask: &AttentionMask<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
        delta: Option<LayerDelta<'_, B>>,
    ) -> Tensor<B, 3>
    where
        B: DecoderBackend,
    {
        let h = self.self_attn.forward_with(
            self.input_layernorm.forward(x.clone()),
            angles,
            mask,
            cache,
            delta,
        );
        let x = x.add(h);
        let h = self
            .mlp
            .forward_with(self.post_attention_layernorm.forward(x.clone()), delta);
        x.add(h)
    }

    /// The linear layer of `projection`.
    pub fn projection(&self, projection: Projection) -> &Linear<B> {
        let (a, m) = (&self.self_attn, &self.mlp);
        match projection {
            Projection::Q => &a.q_proj,
            Projection::K => &a.k_proj,
            Projection::V => &a.v_proj,
            Projection::O => &a.o_proj,
            Projection::Gate => &m.gate_proj,
            Projection::Up => &m.up_proj,
            Projection::Down => &m.down_proj,
        }
    }

    /// Mutable access to the linear layer of `projection`.
    pub fn projection_mut(&mut self, projection: Projection) -> &mut Linear<B> {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        match projection {
            Projection::Q => &mut a.q_proj,
            Projection::K => &mut a.k_proj,
            Projection::V => &mut a.v_proj,
            Projection::O => &mut a.o_proj,
            Projection::Gate => &mut m.gate_proj,
            Projection::Up => &mut m.up_proj,
            Projection::Down => &mut m.down_proj,
        }
    }
}
