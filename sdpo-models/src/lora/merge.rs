//! Folding an adapter set into the base weights: `W' = W + scale · A·B`.

use burn::tensor::backend::Backend;

use super::adapter::LoraSet;
use super::error::LoraError;
use super::size::materialize;
use crate::arch::{CausalLm, Projection};

/// A copy of `base` with every adapted projection's weight replaced by
/// `W + scale · A·B` (Burn's `[in, out]` layout; biases are not adapted). Its logits equal
/// those of [`WithLora`](super::WithLora)`(base, lora)` up to rounding; use it to export or
/// to run without the adapter overhead.
///
/// The merged weights are fresh leaves (detached from any autograd graph) that keep each base
/// parameter's id and `require_grad` flag. `base` is materialized first, so a lazily
/// initialized base and its merged copy share the same values.
///
/// # Errors
/// [`LoraError::Incompatible`] when the set does not fit the base.
pub fn merge<B: Backend>(base: &CausalLm<B>, lora: &LoraSet<B>) -> Result<CausalLm<B>, LoraError> {
    lora.check_compatible(base)?;
    materialize(base);
    let mut merged = base.clone();
    for (layer, adapters) in merged.model.layers.iter_mut().zip(&lora.layers) {
        for projection in Projection::ALL {
            let Some(adapter) = adapters.adapter(projection) else {
                continue;
            };
            let linear = layer.projection_mut(projection);
            let delta = adapter.delta_weight().detach();
            linear.weight = linear.weight.clone().map(|w| {
                let require_grad = w.is_require_grad();
                w.detach()
                    .add(delta)
                    .detach()
                    .set_require_grad(require_grad)
            });
        }
    }
    Ok(merged)
}
