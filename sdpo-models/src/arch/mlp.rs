//! SwiGLU feed-forward block.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{activation::silu, backend::Backend, Device, Tensor};

use super::config::ModelConfig;
use super::delta::{project, LayerDelta, Projection};
use crate::kernels::{self, DecoderBackend};

/// `down_proj(silu(gate_proj(x)) * up_proj(x))`, field names as in HF checkpoints.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `hidden → intermediate`, gated by SiLU.
    pub gate_proj: Linear<B>,
    /// `hidden → intermediate`.
    pub up_proj: Linear<B>,
    /// `intermediate → hidden`.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Builds the block (weights lazily initialized; loading overwrites them).
    pub fn new(config: &ModelConfig, device: &Device<B>) -> Self {
        let (h, i, bias) = (
            config.hidden_size,
            config.intermediate_size,
            config.mlp_bias,
        );
        Self {
            gate_proj: LinearConfig::new(h, i).with_bias(bias).init(device),
            up_proj: LinearConfig::new(h, i).with_bias(bias).init(device),
            down_proj: LinearConfig::new(i, h).with_bias(bias).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3>
    where
        B: DecoderBackend,
    {
        self.forward_with(x, None)
    }

    /// [`Mlp::forward`] with an optional additive term on the projections (e.g. LoRA); the
    /// gate runs as one fused kernel ([`kernels::swiglu`](crate::kernels::swiglu)) where the
    /// backend has one.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward_with(&self, x: Tensor<B, 3>, delta: Option<LayerDelta<'_, B>>) -> Tensor<B, 3>
    where
        B: DecoderBackend,
    {
        let gate = project(&self.gate_proj, Projection::Gate, delta, x.clone());
        let up = project(&self.up_proj, Projection::Up, delta, x);
        let hidden = kernels::swiglu(&gate, &up).unwrap_or_else(|| swiglu_composite(gate, up));
        project(&self.down_proj, Projection::Down, delta, hidden)
    }
}

/// `silu(gate) · up` as tensor operations: the reference the kernels are tested against.
pub fn swiglu_composite<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    silu(gate).mul(up)
}
