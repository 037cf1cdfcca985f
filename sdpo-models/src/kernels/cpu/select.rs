//! Token selection from rows of logits in two passes per row: the argmax, or a draw at
//! temperature over the whole vocabulary, with the chosen token's log-probability.
//!
//! It computes what [`crate::generate::select_tokens`] computes for these cases: greedy, the
//! argmax (the lowest id among ties) and its `log_softmax`; sampling, the inverse-CDF draw in
//! id order at the row's uniform number `u` (the first token whose cumulative weight exceeds
//! `u` times the total, else the last token) and `log_softmax(logits / temperature)` at it. A
//! row holding a NaN or an infinity gets id `−1`. Sums are kept in f32 lanes over blocks and
//! added in f64, so a `u` within rounding of a boundary between two tokens may pick the
//! neighbour (as the composite code's f32 sums may).

use pulp::{Simd, WithSimd};
use rayon::prelude::*;
use sdpo_core::loss::fused::vmath::exp_nonpos;

/// Entries summed together before the sum moves into f64 (and the unit of the draw's scan).
const BLOCK: usize = 256;

/// The token chosen for one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// The id, or `−1` for a row with a non-finite logit.
    pub id: i64,
    /// Its log-probability (0 for a bad row).
    pub log_prob: f32,
}

/// One choice per row of `logits` (`rows × vocab`): the argmax when `temperature` is `None`,
/// else a draw at that temperature with `uniforms[row]`.
///
/// # Panics
/// If `logits` is not a whole number of rows, or `uniforms` is missing or of another length
/// when sampling.
pub fn select(
    logits: &[f32],
    vocab: usize,
    temperature: Option<f32>,
    uniforms: Option<&[f32]>,
) -> Vec<Choice> {
    assert!(
        vocab > 0 && logits.len().is_multiple_of(vocab),
        "select: rows of {vocab}"
    );
    let rows = logits.len() / vocab;
    if temperature.is_some() {
        assert_eq!(
            uniforms.map(<[f32]>::len),
            Some(rows),
            "select: one uniform per row"
        );
    }
    logits
        .par_chunks(vocab)
        .enumerate()
        .map(|(r, row)| {
            pulp::Arch::new().dispatch(Row {
                row,
                temperature,
                u: uniforms.map_or(0.0, |u| u[r]),
            })
        })
        .collect()
}

struct Row<'a> {
    row: &'a [f32],
    temperature: Option<f32>,
    u: f32,
}

impl WithSimd for Row<'_> {
    type Output = Choice;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Choice {
        let Some((max, argmax)) = max_and_argmax(self.row) else {
            return Choice {
                id: -1,
                log_prob: 0.0,
            };
        };
        let t = self.temperature.unwrap_or(1.0);
        // `x / t − max(x / t)`; division by a positive number keeps the order, so the
        // scaled maximum is `max / t`.
        let scaled_max = max / t;
        let mut blocks = Vec::with_capacity(self.row.len().div_ceil(BLOCK));
        for chunk in self.row.chunks(BLOCK) {
            blocks.push(exp_sum(simd, chunk, t, scaled_max));
        }
        let total: f64 = blocks.iter().sum();
        let log_z = total.ln();
        let id = match self.temperature {
            None => argmax,
            Some(_) => draw(self.row, &blocks, t, scaled_max, f64::from(self.u) * total),
        };
        let shifted = f64::from(self.row[id] / t - scaled_max);
        Choice {
            id: id as i64,
            log_prob: (shifted - log_z) as f32,
        }
    }
}

/// The maximum and the lowest index holding it, or `None` when the row holds a NaN or an
/// infinity.
fn max_and_argmax(row: &[f32]) -> Option<(f32, usize)> {
    let mut best = (f32::NEG_INFINITY, 0);
    for (i, &x) in row.iter().enumerate() {
        if !x.is_finite() {
            return None;
        }
        if x > best.0 {
            best = (x, i);
        }
    }
    Some(best)
}

/// `Σ exp(x / t − max)` over a chunk, in f32 lanes.
#[inline(always)]
fn exp_sum<S: Simd>(simd: S, chunk: &[f32], t: f32, max: f32) -> f64 {
    let (head, tail) = S::as_simd_f32s(chunk);
    let (tv, mv) = (simd.splat_f32s(t), simd.splat_f32s(max));
    let mut sum = simd.splat_f32s(0.0);
    for &x in head {
        let shifted = simd.sub_f32s(simd.div_f32s(x, tv), mv);
        sum = simd.add_f32s(sum, exp_nonpos(simd, shifted));
    }
    let rest: f32 = tail.iter().map(|x| (x / t - max).exp()).sum();
    f64::from(simd.reduce_sum_f32s(sum) + rest)
}

/// The first id whose cumulative weight exceeds `target`, else the last id.
fn draw(row: &[f32], blocks: &[f64], t: f32, max: f32, target: f64) -> usize {
    let mut before = 0f64;
    for (b, &block) in blocks.iter().enumerate() {
        if before + block > target {
            let start = b * BLOCK;
            for (i, x) in row[start..(start + BLOCK).min(row.len())]
                .iter()
                .enumerate()
            {
                before += f64::from((x / t - max).exp());
                if before > target {
                    return start + i;
                }
            }
        } else {
            before += block;
        }
    }
    row.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_lowest_id_among_ties_and_its_log_softmax() {
        let logits = [1.0f32, 3.0, 3.0, -2.0];
        let got = select(&logits, 4, None, None);
        let z: f64 = logits.iter().map(|&x| f64::from(x - 3.0).exp()).sum();
        assert_eq!(got[0].id, 1);
        assert!((f64::from(got[0].log_prob) + z.ln()).abs() < 1e-6);
    }

    #[test]
    fn draws_follow_the_cumulative_weights_in_id_order() {
        // Probabilities 0.1, 0.2, 0.3, 0.4 at temperature 1 over 1000 entries of padding
        // would blur the point; use a vocabulary spanning several blocks instead.
        let vocab = 3 * BLOCK + 5;
        let mut logits = vec![f32::NEG_INFINITY.max(-1e4); vocab];
        logits[3] = 0.0;
        logits[BLOCK + 7] = 0.0;
        logits[2 * BLOCK + 1] = (2.0f32).ln();
        // Mass: 1/4 at 3, 1/4 at BLOCK + 7, 1/2 at 2·BLOCK + 1.
        let pick = |u: f32| select(&logits, vocab, Some(1.0), Some(&[u]))[0].id;
        assert_eq!(pick(0.1), 3);
        assert_eq!(pick(0.3), (BLOCK + 7) as i64);
        assert_eq!(pick(0.6), (2 * BLOCK + 1) as i64);
        assert_eq!(pick(0.99), (2 * BLOCK + 1) as i64);
        let lp = select(&logits, vocab, Some(1.0), Some(&[0.6]))[0].log_prob;
        assert!((lp - 0.5f32.ln()).abs() < 1e-5, "{lp}");
    }

    #[test]
    fn temperature_scales_before_the_softmax() {
        let logits = [0.0f32, 1.0];
        let lp = select(&logits, 2, Some(0.5), Some(&[0.99]))[0];
        assert_eq!(lp.id, 1);
        let want = 2.0 - (1.0f64 + 2f64.exp()).ln();
        assert!((f64::from(lp.log_prob) - want).abs() < 1e-6);
    }

    #[test]
    fn a_non_finite_row_is_marked() {
        let logits = [0.0, f32::NAN, 1.0, 2.0];
        let got = select(&logits, 2, None, None);
        assert_eq!(got[0].id, -1);
        assert_eq!(got[1].id, 1);
    }
}
