//! Rollout importance-sampling weights: verl's `compute_rollout_importance_weights` in its
//! truncated mode, which the SDPO recipe enables at token level with threshold 2.
//!
//! The rollout's tokens were drawn with log-probs `log π_rollout` (the sampler's, from the
//! KV-cache decode); the trainer scores them again as `log π_old`. The weight
//! `min(exp(log π_old − log π_rollout), threshold)` (per token, or one per sequence from the
//! summed log-ratio) multiplies every per-token loss term.

use burn::tensor::{backend::Backend, Tensor};

use crate::config::{RolloutIs, RolloutIsLevel};
use crate::loss::importance::LOG_RATIO_CLAMP;

/// The weights of `cfg`, detached and zero on masked tokens; `None` for level `none`.
///
/// The log-ratio (per token, or summed over the sequence's unmasked tokens) is clamped to
/// ±20 before `exp`, as the reference does, then truncated at `cfg.threshold`.
///
/// # Shapes
/// - `old_log_probs`, `rollout_log_probs`, `response_mask`: `[batch, R]`
/// - returns `[batch, R]`
pub fn rollout_is_weights<B: Backend>(
    old_log_probs: Tensor<B, 2>,
    rollout_log_probs: Tensor<B, 2>,
    response_mask: Tensor<B, 2>,
    cfg: &RolloutIs,
) -> Option<Tensor<B, 2>> {
    let log_ratio = (old_log_probs.detach() - rollout_log_probs.detach()) * response_mask.clone();
    let log_ratio = match cfg.level {
        RolloutIsLevel::None => return None,
        RolloutIsLevel::Token => log_ratio,
        RolloutIsLevel::Sequence => {
            let dims = log_ratio.dims();
            log_ratio.sum_dim(1).expand(dims)
        }
    };
    let weights = log_ratio
        .clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        .exp()
        .clamp_max(cfg.threshold);
    Some((weights * response_mask).detach())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn t(rows: [[f32; 3]; 2]) -> Tensor<B, 2> {
        Tensor::from_floats(rows, &Default::default())
    }

    fn host(x: Tensor<B, 2>) -> Vec<f32> {
        // Other tests of this crate may switch the device's float dtype to f64: convert.
        x.into_data().iter::<f32>().collect()
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(
                (f64::from(*x) - y).abs() <= 1e-6 * (1.0 + y.abs()),
                "{a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn token_and_sequence_weights_follow_the_reference_formula() {
        // log-ratios: row 0 = [0.1, -0.3, 1.5 (masked)], row 1 = [0.9, 0.2, -0.4]
        let old = t([[-1.0, -2.3, -0.5], [-0.1, -1.0, -3.4]]);
        let rollout = t([[-1.1, -2.0, -2.0], [-1.0, -1.2, -3.0]]);
        let mask = t([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]);
        let cfg = |level| RolloutIs {
            level,
            threshold: 2.0,
        };
        let token = rollout_is_weights(
            old.clone(),
            rollout.clone(),
            mask.clone(),
            &cfg(RolloutIsLevel::Token),
        );
        let e = |x: f64| x.exp();
        // exp(0.9) = 2.46 is truncated at 2; masked tokens weigh 0.
        close(
            &host(token.unwrap()),
            &[e(0.1), e(-0.3), 0.0, 2.0, e(0.2), e(-0.4)],
        );
        let seq = rollout_is_weights(
            old.clone(),
            rollout.clone(),
            mask.clone(),
            &cfg(RolloutIsLevel::Sequence),
        );
        // row 0: exp(0.1 − 0.3) on its two real tokens; row 1: exp(0.7) = 2.01 → 2.
        close(&host(seq.unwrap()), &[e(-0.2), e(-0.2), 0.0, 2.0, 2.0, 2.0]);
        assert!(rollout_is_weights(old, rollout, mask, &cfg(RolloutIsLevel::None)).is_none());
    }

    #[test]
    fn huge_log_ratios_are_clamped_before_exp() {
        let old = t([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]);
        let rollout = t([[-100.0, 100.0, 0.0], [0.0, 0.0, 0.0]]);
        let mask = t([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]);
        let cfg = RolloutIs {
            level: RolloutIsLevel::Token,
            threshold: 1e30,
        };
        let w = host(rollout_is_weights(old, rollout, mask, &cfg).unwrap());
        close(&w[..3], &[20f64.exp(), (-20f64).exp(), 1.0]);
    }
}
