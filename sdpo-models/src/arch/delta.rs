//! Additive terms on a decoder layer's linear projections ([`ProjectionDelta`]).
//!
//! This is the seam through which LoRA adapters ([`crate::lora`]) reach the architecture: the
//! decoder knows only this trait, and a forward takes an optional `&dyn ProjectionDelta`, so
//! any number of adapter sets can share one base model without the base knowing about them.

use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};

use super::linear::linear;
use crate::kernels::DecoderBackend;

/// The seven linear projections of a decoder layer, named as in Hugging Face checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Projection {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl Projection {
    /// Every projection, in checkpoint order.
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    /// The module name (`q_proj`, ..., `down_proj`; PEFT's `target_modules` vocabulary).
    pub const fn name(self) -> &'static str {
        match self {
            Projection::Q => "q_proj",
            Projection::K => "k_proj",
            Projection::V => "v_proj",
            Projection::O => "o_proj",
            Projection::Gate => "gate_proj",
            Projection::Up => "up_proj",
            Projection::Down => "down_proj",
        }
    }

    /// The module path inside a decoder layer (`self_attn.q_proj`, ..., `mlp.down_proj`).
    pub const fn path(self) -> &'static str {
        match self {
            Projection::Q => "self_attn.q_proj",
            Projection::K => "self_attn.k_proj",
            Projection::V => "self_attn.v_proj",
            Projection::O => "self_attn.o_proj",
            Projection::Gate => "mlp.gate_proj",
            Projection::Up => "mlp.up_proj",
            Projection::Down => "mlp.down_proj",
        }
    }
}

/// Something added to the output of a decoder's linear projections: each projection computes
/// `y = x·W + b + Δ(x)`. LoRA adapter sets implement it
/// ([`LoraSet`](crate::lora::LoraSet)); [`CausalLm::forward_hidden_with`] applies one.
///
/// [`CausalLm::forward_hidden_with`]: super::CausalLm::forward_hidden_with
pub trait ProjectionDelta<B: Backend> {
    /// `Δ(x)` for `projection` of decoder layer `layer`, in `x`'s dtype, or `None` where this
    /// delta adds nothing.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, in]` → `[batch, seq, out]`
    fn delta(&self, layer: usize, projection: Projection, x: Tensor<B, 3>) -> Option<Tensor<B, 3>>;
}

/// A [`ProjectionDelta`] as one decoder layer sees it: the delta and that layer's index.
pub struct LayerDelta<'a, B: Backend> {
    /// The model-wide delta.
    pub delta: &'a dyn ProjectionDelta<B>,
    /// The layer being run.
    pub layer: usize,
}

impl<B: Backend> Clone for LayerDelta<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for LayerDelta<'_, B> {}

/// `x·W + b`, plus `Δ(x)` when a delta is given and covers `projection`. The product runs as
/// one 2-D matrix product ([`linear`]).
///
/// # Shapes
/// - `x`: `[batch, seq, in]` → `[batch, seq, out]`
pub(crate) fn project<B: DecoderBackend>(
    base: &Linear<B>,
    projection: Projection,
    delta: Option<LayerDelta<'_, B>>,
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let extra = delta.and_then(|d| d.delta.delta(d.layer, projection, x.clone()));
    let y = linear(base, x);
    match extra {
        Some(extra) => y.add(extra),
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_end_in_the_module_name() {
        for p in Projection::ALL {
            assert!(p.path().ends_with(&format!(".{}", p.name())));
        }
    }
}
