//! Importance weights for off-policy tokens.

use burn::tensor::{backend::Backend, Tensor};

/// Bound of the log-ratio before exponentiation (the reference's clamp).
pub const LOG_RATIO_CLAMP: f64 = 20.0;

/// `min(exp(clamp(logp − logp_old, ±20)), clip)`, detached.
///
/// # Shapes
/// `log_probs, old_log_probs: [batch, len]` → `[batch, len]`.
pub fn importance_weights<B: Backend>(
    log_probs: Tensor<B, 2>,
    old_log_probs: Tensor<B, 2>,
    clip: f64,
) -> Tensor<B, 2> {
    (log_probs.detach() - old_log_probs.detach())
        .clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        .exp()
        .clamp_max(clip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f64>;

    #[test]
    fn weights_are_clipped_and_clamped() {
        let dev = Default::default();
        let lp = Tensor::<B, 2>::from_data([[0.0, -1.0, -100.0, 0.5]], &dev);
        let old = Tensor::<B, 2>::from_data([[0.0, 0.0, 0.0, 0.0]], &dev);
        let w = importance_weights(lp, old, 1.5)
            .into_data()
            .to_vec::<f64>()
            .unwrap();
        assert_eq!(w[0], 1.0);
        assert!((w[1] - (-1f64).exp()).abs() < 1e-15);
        assert!((w[2] - (-20f64).exp()).abs() < 1e-20);
        assert_eq!(w[3], 1.5);
    }
}
