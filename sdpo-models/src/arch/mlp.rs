//! SwiGLU feed-forward block.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{activation::silu, backend::Backend, Device, Tensor};

use super::config::ModelConfig;

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
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate.mul(self.up_proj.forward(x)))
    }
}
