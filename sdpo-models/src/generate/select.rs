//! Token selection on the device: temperature, top-k, top-p, min-p and the seeded draw as
//! tensor ops over a `[batch, vocab]` block of logits. Only the chosen ids (`[batch]` ints)
//! need to reach the host; the log-probabilities stay on the device.
//!
//! It computes what the host reference in [`super::sampling`] computes: the same filters in
//! the same order, and the same inverse-CDF draw over the survivors in id order with the
//! caller's uniform number `u` per row. The sums run in float32 on the device (float64 on the
//! host), so a `u` within rounding of a boundary between two tokens may pick the neighbour.

use burn::tensor::{backend::Backend, Bool, Int, Tensor};
use sdpo_core::loss::topk_indices;

use super::SamplingParams;

/// The tokens chosen for one step, still on the device.
#[derive(Debug, Clone)]
pub struct Selection<B: Backend> {
    /// `[batch]` chosen ids; `-1` marks a row whose logits are not all finite.
    pub ids: Tensor<B, 1, Int>,
    /// `[batch]` `log p(id)` under `softmax(logits / temperature)` over the full vocabulary,
    /// before any filtering (plain `log_softmax` when greedy).
    pub log_probs: Tensor<B, 1>,
}

/// Applies the repetition penalty to `logits` (`[batch, vocab]`) where `seen` (`[batch,
/// vocab]`) is `true`: `l / penalty` for `l > 0`, `l · penalty` otherwise (transformers'
/// `RepetitionPenaltyLogitsProcessor`).
pub fn apply_repetition_penalty<B: Backend>(
    logits: Tensor<B, 2>,
    seen: Tensor<B, 2, Bool>,
    penalty: f64,
) -> Tensor<B, 2> {
    let positive = logits.clone().greater_elem(0.0);
    let penalized = logits
        .clone()
        .mul_scalar(penalty)
        .mask_where(positive, logits.clone().div_scalar(penalty));
    logits.mask_where(seen, penalized)
}

/// Chooses one token per row of `logits` (`[batch, vocab]`): the argmax when greedy, else the
/// inverse-CDF draw at `uniforms` (`[batch]`, each in `[0, 1)`) over the tokens that survive
/// the filters, in id order.
///
/// `uniforms` is ignored (and may be `None`) when `params` is greedy.
///
/// # Panics
/// If `params` is not greedy and `uniforms` is `None` (a programming error of the caller).
pub fn select_tokens<B: Backend>(
    logits: Tensor<B, 2>,
    params: &SamplingParams,
    uniforms: Option<Tensor<B, 1>>,
) -> Selection<B> {
    let [batch, vocab] = logits.dims();
    let bad_row = logits
        .clone()
        .is_nan()
        .bool_or(logits.clone().is_inf())
        .any_dim(1)
        .reshape([batch]);
    // Non-finite rows are reported through the id; zero them so nothing below sees NaN.
    let logits = logits.mask_fill(
        bad_row.clone().reshape([batch, 1]).expand([batch, vocab]),
        0.0,
    );
    let scaled = match params.is_greedy() {
        true => logits,
        false => logits / params.temperature,
    };
    let max = scaled.clone().max_dim(1); // [batch, 1]
    let shifted = scaled - max; // ≤ 0, 0 at the argmax
    let log_z = shifted.clone().exp().sum_dim(1).log(); // [batch, 1]

    let ids = match params.is_greedy() {
        true => shifted.clone().argmax(1),
        false => {
            let uniforms = uniforms.expect("a uniform number per row when sampling");
            draw(shifted.clone(), params, uniforms.reshape([batch, 1]))
        }
    };
    let log_probs = (shifted.gather(1, ids.clone()) - log_z).reshape([batch]);
    let ids = ids.reshape([batch]).mask_fill(bad_row, -1);
    Selection { ids, log_probs }
}

/// Which tokens survive top-k, top-p and min-p (`shifted` = scaled logits minus the row max);
/// `None` when no filter is on.
fn survivors<B: Backend>(
    shifted: Tensor<B, 2>,
    params: &SamplingParams,
) -> Option<Tensor<B, 2, Bool>> {
    let [batch, vocab] = shifted.dims();
    let mut keep: Option<Tensor<B, 2, Bool>> = None;
    let mut and = |mask: Tensor<B, 2, Bool>| {
        keep = Some(match keep.take() {
            Some(k) => k.bool_and(mask),
            None => mask,
        });
    };
    // The k largest scaled logits, descending: [batch, k].
    let top = (params.top_k > 0 && params.top_k < vocab).then(|| {
        let idx = topk_indices(shifted.clone().reshape([1, batch, vocab]), params.top_k)
            .reshape([batch, params.top_k]);
        shifted.clone().gather(1, idx)
    });
    if let Some(top) = &top {
        let kth = top.clone().narrow(1, params.top_k - 1, 1);
        and(shifted.clone().greater_equal(kth.expand([batch, vocab])));
    }
    if params.top_p < 1.0 {
        // What top-k kept, in descending order (scaled logits, then unnormalized probabilities).
        let sorted = match top {
            Some(top) => top,
            None => shifted.clone().sort_descending(1),
        };
        let width = sorted.dims()[1];
        let weights = sorted.clone().exp();
        let total = weights.clone().sum_dim(1);
        let before = prefix_sum(weights.clone()) - weights;
        // Token j stays while the mass before it is short of top_p of the total: at least one.
        let in_nucleus = before.lower(total.mul_scalar(params.top_p).expand([batch, width]));
        let count = in_nucleus.int().sum_dim(1).clamp_min(1); // [batch, 1]
        let last = sorted.gather(1, count.sub_scalar(1));
        and(shifted.clone().greater_equal(last.expand([batch, vocab])));
    }
    if params.min_p > 0.0 {
        // p / p_max = exp(shifted) >= min_p.
        and(shifted.greater_equal_elem(params.min_p.ln()));
    }
    keep
}

/// Width of the blocks of [`prefix_sum`].
const PREFIX_BLOCK: usize = 256;

/// Inclusive prefix sums along dim 1 (`cumsum(1)`), in two levels: within blocks of
/// [`PREFIX_BLOCK`] columns, then over the block totals. Burn 0.21's CubeCL `cumsum` has every
/// output element re-add all elements before it (O(n²) per row: 1.2·10⁹ additions for a
/// 49152-token vocabulary, which made sampling 5× slower than the whole model on lavapipe);
/// this does about `n · (PREFIX_BLOCK + n / PREFIX_BLOCK)` and is exact up to float32 summation
/// order.
///
/// # Shapes
/// - `x`: `[batch, n]` → `[batch, n]`
pub fn prefix_sum<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [batch, n] = x.dims();
    if n <= PREFIX_BLOCK {
        return x.cumsum(1);
    }
    let blocks = n.div_ceil(PREFIX_BLOCK);
    let padded = match blocks * PREFIX_BLOCK - n {
        0 => x,
        pad => Tensor::cat(vec![x.clone(), x.zeros_like().narrow(1, 0, pad)], 1),
    };
    let within = padded.reshape([batch, blocks, PREFIX_BLOCK]).cumsum(2);
    let totals = within.clone().narrow(2, PREFIX_BLOCK - 1, 1); // [batch, blocks, 1]
    let offsets = totals.clone().cumsum(1) - totals; // exclusive
    (within + offsets.expand([batch, blocks, PREFIX_BLOCK]))
        .reshape([batch, blocks * PREFIX_BLOCK])
        .narrow(1, 0, n)
}

/// The inverse-CDF draw over the survivors, in id order: `[batch, 1]` ids.
fn draw<B: Backend>(
    shifted: Tensor<B, 2>,
    params: &SamplingParams,
    uniforms: Tensor<B, 2>,
) -> Tensor<B, 2, Int> {
    let [batch, vocab] = shifted.dims();
    let device = shifted.device();
    let keep = survivors(shifted.clone(), params);
    let weights = match &keep {
        Some(keep) => shifted.exp().mask_fill(keep.clone().bool_not(), 0.0),
        None => shifted.exp(),
    };
    let cumulative = prefix_sum(weights);
    let total = cumulative.clone().narrow(1, vocab - 1, 1);
    let target = uniforms * total;
    // The first token whose cumulative mass exceeds the target has positive weight.
    let chosen = cumulative
        .lower_equal(target.expand([batch, vocab]))
        .int()
        .sum_dim(1);
    // Rounding can put the target at the total: fall back to the last survivor.
    let last = match keep {
        Some(keep) => Tensor::<B, 1, Int>::arange(0..vocab as i64, &device)
            .reshape([1, vocab])
            .expand([batch, vocab])
            .mask_fill(keep.bool_not(), -1)
            .max_dim(1),
        None => Tensor::<B, 2, Int>::full([batch, 1], vocab as i64 - 1, &device),
    };
    chosen.min_pair(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    #[test]
    fn blocked_prefix_sum_equals_cumsum() {
        type B = NdArray<f32>;
        for n in [7, 256, 257, 1000, 49_152 + 3] {
            let values: Vec<f32> = (0..2 * n)
                .map(|i| ((i * 37) % 101) as f32 / 101.0)
                .collect();
            // The exact sums, per row, in f64.
            let want: Vec<f64> = values
                .chunks(n)
                .flat_map(|row| {
                    row.iter().scan(0f64, |acc, &v| {
                        *acc += f64::from(v);
                        Some(*acc)
                    })
                })
                .collect();
            let x = Tensor::<B, 2>::from_data(TensorData::new(values, [2, n]), &Default::default());
            let got: Vec<f32> = prefix_sum(x).into_data().iter::<f32>().collect();
            assert_eq!(got.len(), want.len());
            // float32 sums of up to 5·10⁴ terms: a few 1e-6 relative.
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (f64::from(*g) - w).abs() <= 1e-5 * w.max(1.0),
                    "n = {n}: {g} vs {w}"
                );
            }
        }
    }
}
