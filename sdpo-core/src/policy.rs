//! The policy-gradient side: GRPO group advantages, the PPO-clipped policy
//! loss (the reference's `compute_grpo_outcome_advantage` and
//! `compute_policy_loss_vanilla`), and the blend with the distillation loss.

use std::collections::HashMap;
use std::hash::Hash;

use burn::tensor::{backend::Backend, Tensor};

use crate::config::{LossAggMode, SdpoConfig};
use crate::loss::aggregate;
use crate::loss::importance::LOG_RATIO_CLAMP;

/// Added to the group standard deviation before dividing (the reference's
/// `epsilon`).
pub const ADVANTAGE_EPSILON: f64 = 1e-6;

/// GRPO advantages: each score minus its group's mean, divided by the group's
/// (unbiased) standard deviation plus [`ADVANTAGE_EPSILON`] when `norm_by_std`.
/// A group of one sample has mean 0 and std 1, as in the reference.
///
/// `group_ids[i]` names the group (prompt) of sample `i`; groups need not be
/// contiguous.
///
/// # Panics
/// Never; mismatched lengths use the shorter of the two.
pub fn group_advantages<G: Eq + Hash>(
    scores: &[f64],
    group_ids: &[G],
    norm_by_std: bool,
) -> Vec<f64> {
    let n = scores.len().min(group_ids.len());
    let mut groups: HashMap<&G, Vec<f64>> = HashMap::new();
    for i in 0..n {
        groups.entry(&group_ids[i]).or_default().push(scores[i]);
    }
    let stats: HashMap<&G, (f64, f64)> = groups
        .into_iter()
        .map(|(g, s)| {
            if s.len() == 1 {
                return (g, (0.0, 1.0));
            }
            let len = s.len() as f64;
            let mean = s.iter().sum::<f64>() / len;
            let var = s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (len - 1.0);
            (g, (mean, var.sqrt()))
        })
        .collect();
    (0..n)
        .map(|i| {
            let (mean, std) = stats[&group_ids[i]];
            if norm_by_std {
                (scores[i] - mean) / (std + ADVANTAGE_EPSILON)
            } else {
                scores[i] - mean
            }
        })
        .collect()
}

/// The PPO-clipped policy loss with dual clip, per token and aggregated.
#[derive(Debug, Clone)]
pub struct PolicyLossOutput<B: Backend> {
    /// Aggregated loss, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Per-token loss after rollout weights, `[batch, len]`.
    pub per_token_loss: Tensor<B, 2>,
    /// Fraction of unmasked tokens where the clipped term was chosen, `[1]`.
    pub clip_fraction: Tensor<B, 1>,
}

/// Clip settings of the policy loss, taken from [`SdpoConfig`].
#[derive(Debug, Clone, Copy)]
pub struct ClipRange {
    /// The ratio is clipped at `1 − low`.
    pub low: f64,
    /// The ratio is clipped at `1 + high`.
    pub high: f64,
    /// Dual-clip bound for negative advantages.
    pub dual: f64,
}

impl From<&SdpoConfig> for ClipRange {
    fn from(cfg: &SdpoConfig) -> Self {
        Self {
            low: cfg.clip_ratio_low,
            high: cfg.clip_ratio_high,
            dual: cfg.clip_ratio_c,
        }
    }
}

/// PPO-clipped policy loss (the reference's `compute_policy_loss_vanilla`):
/// ratio `exp(clamp(logp − logp_old, ±20))`, `max(−A·r, −A·clip(r))`, and for
/// `A < 0` the dual clip `min(…, −A·c)`; optional rollout weights; aggregated
/// over `mask`.
///
/// # Shapes
/// `log_probs, old_log_probs, advantages, mask: [batch, len]`.
pub fn policy_loss<B: Backend>(
    log_probs: Tensor<B, 2>,
    old_log_probs: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    clip: ClipRange,
    rollout_is_weights: Option<Tensor<B, 2>>,
    mode: LossAggMode,
) -> PolicyLossOutput<B> {
    let ratio = (log_probs - old_log_probs.detach())
        .clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        .exp();
    let advantages = advantages.detach();
    let unclipped = advantages.clone().neg() * ratio.clone();
    let clipped = advantages.clone().neg() * ratio.clamp(1.0 - clip.low, 1.0 + clip.high);
    let clip_fraction = {
        let hit = clipped.clone().greater(unclipped.clone()).float() * mask.clone();
        hit.sum() / mask.clone().sum().clamp_min(1.0)
    };
    let clipped_max = unclipped.max_pair(clipped);
    let dual = advantages.clone().neg() * clip.dual;
    let dual_clipped = clipped_max.clone().min_pair(dual);
    let negative = advantages.lower_elem(0.0);
    let mut per_token_loss = clipped_max.mask_where(negative, dual_clipped);
    if let Some(w) = rollout_is_weights {
        per_token_loss = per_token_loss * w;
    }
    let loss = aggregate(per_token_loss.clone(), mask, mode);
    PolicyLossOutput {
        loss,
        per_token_loss,
        clip_fraction: clip_fraction.detach(),
    }
}

/// `(1 − λ)·policy + λ·distillation` with `λ = distillation_weight`. At the
/// ends the other term is not evaluated into the graph at all (λ = 1 is pure
/// SDPO, λ = 0 pure GRPO).
pub fn blend<B: Backend>(
    policy: Option<Tensor<B, 1>>,
    distillation: Option<Tensor<B, 1>>,
    distillation_weight: f64,
) -> Option<Tensor<B, 1>> {
    let w = distillation_weight;
    match (policy, distillation) {
        (_, Some(d)) if w >= 1.0 => Some(d),
        (Some(p), _) if w <= 0.0 => Some(p),
        (Some(p), Some(d)) => Some(p * (1.0 - w) + d * w),
        (p, d) => p.or(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f64>;

    #[test]
    fn advantages_are_group_normalized() {
        let scores = [1.0, 0.0, 0.0, 1.0, 5.0];
        let groups = ["a", "a", "b", "b", "c"];
        let adv = group_advantages(&scores, &groups, true);
        let std = (0.5f64).sqrt(); // unbiased std of {1, 0}
        assert!((adv[0] - 0.5 / (std + 1e-6)).abs() < 1e-12);
        assert!((adv[1] + 0.5 / (std + 1e-6)).abs() < 1e-12);
        assert!((adv[3] - 0.5 / (std + 1e-6)).abs() < 1e-12);
        // A singleton group: mean 0, std 1.
        assert!((adv[4] - 5.0 / (1.0 + 1e-6)).abs() < 1e-12);
        let centred = group_advantages(&scores, &groups, false);
        assert_eq!(&centred[..4], &[0.5, -0.5, -0.5, 0.5]);
    }

    #[test]
    fn flat_group_gives_zero_advantage() {
        let adv = group_advantages(&[1.0, 1.0, 1.0], &[0, 0, 0], true);
        assert!(adv.iter().all(|a| *a == 0.0));
    }

    #[test]
    fn ppo_clip_hand_computed() {
        let dev = Default::default();
        let clip = ClipRange {
            low: 0.2,
            high: 0.2,
            dual: 3.0,
        };
        // ratios: e^0.5 with A > 0 (clipped: -1.2), e^-1 with A < 0 (max(-A r, -A 0.8) = 0.8),
        // e^3 with A < 0 (dual clip at 3).
        let lp = Tensor::<B, 2>::from_data([[0.5, -1.0, 3.0]], &dev);
        let old = Tensor::<B, 2>::zeros([1, 3], &dev);
        let adv = Tensor::<B, 2>::from_data([[1.0, -1.0, -1.0]], &dev);
        let mask = Tensor::<B, 2>::ones([1, 3], &dev);
        let out = policy_loss(lp, old, adv, mask, clip, None, LossAggMode::TokenMean);
        let per = out.per_token_loss.into_data().to_vec::<f64>().unwrap();
        assert!((per[0] + 1.2).abs() < 1e-12, "{per:?}");
        assert!((per[1] - 0.8).abs() < 1e-12, "{per:?}");
        assert!((per[2] - 3.0).abs() < 1e-12, "{per:?}");
        let clipfrac = out.clip_fraction.into_scalar();
        assert!((clipfrac - 2.0 / 3.0).abs() < 1e-12, "{clipfrac}");
    }

    #[test]
    fn blend_endpoints_and_middle() {
        let dev = Default::default();
        let p = || Some(Tensor::<B, 1>::from_data([2.0], &dev));
        let d = || Some(Tensor::<B, 1>::from_data([4.0], &dev));
        let v = |t: Option<Tensor<B, 1>>| t.unwrap().into_scalar();
        assert_eq!(v(blend(p(), d(), 1.0)), 4.0);
        assert_eq!(v(blend(p(), d(), 0.0)), 2.0);
        assert_eq!(v(blend(p(), d(), 0.25)), 2.0 * 0.75 + 4.0 * 0.25);
        assert_eq!(v(blend(None, d(), 0.5)), 4.0);
        assert!(blend::<B>(None, None, 0.5).is_none());
    }
}
