//! The trainer's side of data parallelism (docs/distributed.md): each rank trains on its own
//! prompt groups, and these pieces make the ranks' step equal to one process's step on the
//! whole batch —
//!
//! - [`LossShares`]: each pass's loss terms divided by the *global* denominators (tokens,
//!   sequences or response width over every rank's matching pass, per `loss_agg_mode`), so the
//!   summed gradients are those of one process;
//! - [`reduce_metrics`]: the step's metrics over the ranks;
//! - [`parameter_checksum`] / [`check_parameters`]: the ranks' parameters compared.
//!
//! The gradient all-reduce itself is [`crate::collective::gradients`], run by the updater.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

use sdpo_core::LossAggMode;

use crate::collective::{all_gather_scalar, Collective, CollectiveError, ReduceOp};
use crate::metrics_log::Metrics;

/// Factors a pass's loss terms are multiplied by: this rank's denominator over the global one
/// (1 in one process).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossShares {
    /// For the distillation term (tokens or samples with a teacher signal).
    pub distillation: f64,
    /// For the GRPO term (every response token or sample).
    pub policy: f64,
}

impl Default for LossShares {
    fn default() -> Self {
        Self {
            distillation: 1.0,
            policy: 1.0,
        }
    }
}

/// One pass's denominators on this rank.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    policy_tokens: f64,
    policy_sequences: f64,
    distill_tokens: f64,
    distill_sequences: f64,
}

impl Counts {
    fn of(samples: &[usize], tokens: &[f64], signal: &[f64]) -> Self {
        let mut c = Self::default();
        for &i in samples {
            let (t, with_signal) = (tokens[i], signal[i] > 0.0);
            c.policy_tokens += t;
            c.policy_sequences += f64::from(u8::from(t > 0.0));
            if with_signal {
                c.distill_tokens += t;
                c.distill_sequences += f64::from(u8::from(t > 0.0));
            }
        }
        c
    }

    fn to_vec(self) -> [f64; 4] {
        [
            self.policy_tokens,
            self.policy_sequences,
            self.distill_tokens,
            self.distill_sequences,
        ]
    }
}

/// This rank's loss tokens over all its samples, counted as [`loss_shares`] counts them: the
/// distillation term's (samples with a teacher signal) when `distilling`, else every response
/// token.
pub fn loss_tokens(tokens: &[f64], signal: &[f64], distilling: bool) -> f64 {
    let all: Vec<usize> = (0..tokens.len()).collect();
    let c = Counts::of(&all, tokens, signal);
    match distilling {
        true => c.distill_tokens,
        false => c.policy_tokens,
    }
}

/// The loss shares of every pass (`passes[k]` are pass `k`'s sample indices, the same
/// structure on every rank), from this rank's loss tokens per sample (`tokens[i]`), which
/// samples have a teacher signal (`signal[i] > 0`) and its padded response width.
///
/// # Errors
/// [`CollectiveError`] from the two scalar all-reduces (counts summed, widths maxed).
pub fn loss_shares<B: Backend>(
    collective: &dyn Collective<B>,
    passes: &[Vec<usize>],
    tokens: &[f64],
    signal: &[f64],
    width: usize,
    mode: LossAggMode,
) -> Result<Vec<LossShares>, CollectiveError> {
    let local: Vec<Counts> = passes
        .iter()
        .map(|p| Counts::of(p, tokens, signal))
        .collect();
    let mut global: Vec<f64> = local.iter().flat_map(|c| c.to_vec()).collect();
    collective.all_reduce_scalars("loss denominators", &mut global, ReduceOp::Sum)?;
    let mut widest = [width as f64];
    collective.all_reduce_scalars("response width", &mut widest, ReduceOp::Max)?;
    let share = |mine: f64, all: f64| mine.max(1.0) / all.max(1.0);
    Ok(local
        .iter()
        .zip(global.chunks(4))
        .map(|(mine, all)| {
            let [pt, ps, dt, ds] = mine.to_vec();
            match mode {
                LossAggMode::TokenMean => LossShares {
                    policy: share(pt, all[0]),
                    distillation: share(dt, all[2]),
                },
                LossAggMode::SeqMeanTokenSum | LossAggMode::SeqMeanTokenMean => LossShares {
                    policy: share(ps, all[1]),
                    distillation: share(ds, all[3]),
                },
                LossAggMode::SeqMeanTokenSumNorm => {
                    let s = share(width as f64, widest[0]);
                    LossShares {
                        policy: s,
                        distillation: s,
                    }
                }
            }
        })
        .collect())
}

/// How the ranks' values of a metric combine: times and maxima take the largest, minima the
/// smallest, everything else the mean over the ranks that have the metric (exact for
/// per-sample means, since every rank has as many samples; the mean of the ranks' values for
/// spreads and per-token means).
fn combine(name: &str, values: &[f64]) -> f64 {
    let all = || values.iter().copied();
    if name.starts_with("time/") || name.ends_with("/max") || name.ends_with("_max") {
        all().fold(f64::NEG_INFINITY, f64::max)
    } else if name.ends_with("/min") || name.ends_with("_min") {
        all().fold(f64::INFINITY, f64::min)
    } else {
        all().sum::<f64>() / values.len().max(1) as f64
    }
}

/// The step's metrics combined over the ranks (the same result on every rank).
///
/// # Errors
/// [`CollectiveError`] from the all-gather.
pub fn reduce_metrics<B: Backend>(
    collective: &dyn Collective<B>,
    metrics: &Metrics,
) -> Result<Metrics, CollectiveError> {
    let bytes = serde_json::to_vec(metrics).unwrap_or_default();
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for part in collective.all_gather_bytes("metrics", &bytes)? {
        let m: Metrics = serde_json::from_slice(&part).map_err(|e| CollectiveError::Engine {
            what: "metrics".into(),
            message: format!("a rank sent unreadable metrics: {e}"),
        })?;
        for (name, v) in m {
            values.entry(name).or_default().push(v);
        }
    }
    Ok(values
        .into_iter()
        .map(|(name, v)| {
            let c = combine(&name, &v);
            (name, c)
        })
        .collect())
}

/// Sums every float parameter, each weighted by its position in the visiting order, in
/// `f64`: equal parameters give equal checksums, bit for bit.
struct Checksum<B: Backend> {
    parts: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Checksum<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let k = (self.parts.len() + 1) as f64;
        let v = param.val();
        self.parts
            .push((v.clone().sum() + v.powi_scalar(2).sum()).mul_scalar(k));
    }
}

/// A checksum of `module`'s float parameters (sum and sum of squares, weighted by position).
pub fn parameter_checksum<B: Backend, M: Module<B>>(module: &M) -> f64 {
    let mut c = Checksum { parts: Vec::new() };
    module.visit(&mut c);
    c.parts
        .into_iter()
        .map(|t| t.into_scalar().elem::<f64>())
        .sum()
}

/// Compares this rank's `checksum` with every other rank's.
///
/// # Errors
/// [`CollectiveError::Drift`] naming the ranks whose checksum differs from rank 0's; errors of
/// the all-reduce.
pub fn check_parameters<B: Backend>(
    collective: &dyn Collective<B>,
    checksum: f64,
    step: usize,
) -> Result<(), CollectiveError> {
    let all = all_gather_scalar(collective, "parameter checksum", checksum)?;
    let ranks: Vec<usize> = (1..all.len())
        .filter(|&r| all[r].to_bits() != all[0].to_bits())
        .collect();
    match ranks.is_empty() {
        true => Ok(()),
        false => Err(CollectiveError::Drift {
            step,
            ranks,
            checksums: all,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::SingleProcess;
    use burn::backend::NdArray;

    #[test]
    fn one_process_shares_are_one() {
        let passes = vec![vec![0, 1], vec![2]];
        let shares = loss_shares::<NdArray>(
            &SingleProcess,
            &passes,
            &[3.0, 0.0, 5.0],
            &[1.0, 0.0, 0.0],
            5,
            LossAggMode::TokenMean,
        )
        .unwrap();
        // A pass without distillation tokens has share max(0, 1) / max(0, 1) = 1 (its term is 0).
        assert_eq!(shares, vec![LossShares::default(); 2]);
    }

    /// Ranks as threads meeting in a [`HostGroup`] (no tensors needed here).
    struct Threads(usize, std::sync::Arc<crate::collective::HostGroup>);

    impl Collective<NdArray> for Threads {
        fn rank(&self) -> usize {
            self.0
        }
        fn world_size(&self) -> usize {
            self.1.world_size()
        }
        fn all_reduce_tensor(
            &self,
            _: &str,
            _: Tensor<NdArray, 1>,
        ) -> Result<Tensor<NdArray, 1>, CollectiveError> {
            unreachable!("no tensors in these tests")
        }
        fn all_reduce_scalars(
            &self,
            what: &str,
            values: &mut [f64],
            op: ReduceOp,
        ) -> Result<(), CollectiveError> {
            self.1.all_reduce_scalars(self.0, what, values, op)
        }
        fn all_gather_bytes(
            &self,
            what: &str,
            bytes: &[u8],
        ) -> Result<Vec<Vec<u8>>, CollectiveError> {
            self.1.all_gather_bytes(self.0, what, bytes)
        }
        fn barrier(&self, what: &str) -> Result<(), CollectiveError> {
            self.1.barrier(self.0, what)
        }
    }

    /// Runs `f(rank)` on three threads of one group; their results in rank order.
    fn on_three_ranks<T: Send + 'static>(
        f: impl Fn(Threads) -> T + Send + Sync + Copy + 'static,
    ) -> Vec<T> {
        let group = std::sync::Arc::new(crate::collective::HostGroup::new(
            3,
            std::time::Duration::from_secs(30),
        ));
        let handles: Vec<_> = (0..3)
            .map(|r| {
                let g = group.clone();
                std::thread::spawn(move || f(Threads(r, g)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn a_drifting_rank_is_named() {
        let results = on_three_ranks(|c| {
            let checksum = if c.0 == 2 { 1.5 } else { 1.0 };
            check_parameters::<NdArray>(&c, checksum, 7)
        });
        for r in results {
            match r {
                Err(CollectiveError::Drift { step: 7, ranks, .. }) => assert_eq!(ranks, vec![2]),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn shares_divide_by_the_global_denominators() {
        // Rank r has one pass of samples with 2 + r tokens each, half with a signal.
        let shares = on_three_ranks(|c| {
            let tokens = vec![(2 + c.0) as f64; 2];
            let width = 4 + c.0;
            let modes = [
                LossAggMode::TokenMean,
                LossAggMode::SeqMeanTokenMean,
                LossAggMode::SeqMeanTokenSumNorm,
            ];
            modes.map(|mode| {
                loss_shares::<NdArray>(&c, &[vec![0, 1]], &tokens, &[1.0, 0.0], width, mode)
                    .unwrap()[0]
            })
        });
        // Global: 18 tokens (9 with a signal), 6 sequences (3 with a signal), width 6.
        for (r, [token, seq, norm]) in shares.iter().enumerate() {
            let t = (2 + r) as f64;
            assert_eq!(token.policy, 2.0 * t / 18.0);
            assert_eq!(token.distillation, t / 9.0);
            assert_eq!(seq.policy, 2.0 / 6.0);
            assert_eq!(seq.distillation, 1.0 / 3.0);
            assert_eq!(norm.policy, (4 + r) as f64 / 6.0);
        }
    }

    #[test]
    fn metrics_combine_by_kind() {
        assert_eq!(combine("time/step", &[1.0, 3.0]), 3.0);
        assert_eq!(combine("reward/min", &[1.0, 3.0]), 1.0);
        assert_eq!(combine("reward/max", &[1.0, 3.0]), 3.0);
        assert_eq!(combine("reward/mean", &[1.0, 3.0]), 2.0);
    }
}
