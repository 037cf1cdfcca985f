//! Top-k supports: the tail bucket and renormalization.

use burn::tensor::{backend::Backend, Tensor};

use super::log_probs::logsumexp;
use super::math::expm1;

/// Largest allowed log of the top-k mass: keeps `1 − Σp` strictly positive
/// (the reference's clamp).
const MAX_LOG_MASS: f64 = -1e-7;

/// Appends a tail bucket `log(1 − Σ_k p)` to top-k log-probabilities, computed
/// as `log(−expm1(min(logsumexp, −1e-7)))`.
///
/// # Shapes
/// `log_probs: [batch, len, k]` → `[batch, len, k + 1]`.
pub fn with_tail_bucket<B: Backend>(log_probs: Tensor<B, 3>) -> Tensor<B, 3> {
    let mass = logsumexp(log_probs.clone()).clamp_max(MAX_LOG_MASS);
    let tail = expm1(mass).neg().log();
    Tensor::cat(vec![log_probs, tail], 2)
}

/// Renormalizes top-k log-probabilities over the top-k: `lp − logsumexp(lp)`.
///
/// # Shapes
/// `log_probs: [batch, len, k]` → `[batch, len, k]`.
pub fn renormalized<B: Backend>(log_probs: Tensor<B, 3>) -> Tensor<B, 3> {
    let z = logsumexp(log_probs.clone());
    log_probs - z
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f64>;

    #[test]
    fn tail_holds_the_missing_mass() {
        let lp = Tensor::<B, 3>::from_data([[[0.5f64.ln(), 0.2f64.ln()]]], &Default::default());
        let got = with_tail_bucket(lp).into_data().to_vec::<f64>().unwrap();
        assert_eq!(got.len(), 3);
        assert!((got[2] - 0.3f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn tail_is_clamped_when_topk_holds_all_mass() {
        let lp = Tensor::<B, 3>::from_data([[[0.0, -200.0]]], &Default::default());
        let got = with_tail_bucket(lp).into_data().to_vec::<f64>().unwrap();
        assert!((got[2] - (1e-7f64).ln()).abs() < 1e-6, "{}", got[2]);
    }

    #[test]
    fn renormalized_sums_to_one() {
        let lp = Tensor::<B, 3>::from_data([[[0.1f64.ln(), 0.3f64.ln()]]], &Default::default());
        let got = renormalized(lp).into_data().to_vec::<f64>().unwrap();
        assert!((got[0] - 0.25f64.ln()).abs() < 1e-12);
        assert!((got[1] - 0.75f64.ln()).abs() < 1e-12);
    }
}
