//! Reduction of a per-token loss matrix to a scalar (the reference's `agg_loss`).

use burn::tensor::{backend::Backend, Tensor};

use crate::config::LossAggMode;

/// Masked entries are replaced by 0 before multiplying by the mask, so a NaN
/// or infinity on a padded position cannot leak into the loss.
fn masked<B: Backend>(loss: Tensor<B, 2>, mask: Tensor<B, 2>) -> Tensor<B, 2> {
    loss.mask_fill(mask.clone().equal_elem(0.0), 0.0) * mask
}

/// Reduces `loss` over the positions where `mask` is non-zero.
///
/// Counts are clamped to at least 1, so an all-masked batch gives exactly 0
/// (still attached to the graph) for every mode. The reference does this for
/// `token-mean`; for the `seq-mean-*` modes it would divide by zero sequences
/// and return NaN, the only case where the results differ.
///
/// # Shapes
/// `loss, mask: [batch, len]` → `[1]`.
pub fn aggregate<B: Backend>(
    loss: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    mode: LossAggMode,
) -> Tensor<B, 1> {
    let [_, len] = loss.dims();
    let weighted = masked(loss, mask.clone());
    match mode {
        LossAggMode::TokenMean => weighted.sum() / mask.sum().clamp_min(1.0),
        LossAggMode::SeqMeanTokenSum | LossAggMode::SeqMeanTokenMean => {
            let tokens = mask.sum_dim(1); // [batch, 1]
            let mut seq = weighted.sum_dim(1);
            if mode == LossAggMode::SeqMeanTokenMean {
                seq = seq / (tokens.clone() + 1e-8);
            }
            let present = tokens.greater_elem(0.0).float();
            (seq * present.clone()).sum() / present.sum().clamp_min(1.0)
        }
        LossAggMode::SeqMeanTokenSumNorm => weighted.sum() / (len.max(1) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f64>;

    fn agg(mode: LossAggMode, mask: [[f64; 3]; 2]) -> f64 {
        let dev = Default::default();
        let loss = Tensor::<B, 2>::from_data([[1.0, 2.0, f64::NAN], [4.0, 5.0, 6.0]], &dev);
        aggregate(loss, Tensor::from_data(mask, &dev), mode).into_scalar()
    }

    #[test]
    fn hand_computed_modes() {
        let m = [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]];
        assert!((agg(LossAggMode::TokenMean, m) - 7.0 / 3.0).abs() < 1e-12);
        assert!((agg(LossAggMode::SeqMeanTokenSum, m) - (3.0 + 4.0) / 2.0).abs() < 1e-12);
        assert!((agg(LossAggMode::SeqMeanTokenMean, m) - (1.5 + 4.0) / 2.0).abs() < 1e-7);
        assert!((agg(LossAggMode::SeqMeanTokenSumNorm, m) - 7.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn fully_masked_sequences_are_excluded_from_seq_means() {
        let m = [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]];
        assert!((agg(LossAggMode::SeqMeanTokenSum, m) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn all_masked_gives_zero_for_every_mode() {
        for mode in [
            LossAggMode::TokenMean,
            LossAggMode::SeqMeanTokenSum,
            LossAggMode::SeqMeanTokenMean,
            LossAggMode::SeqMeanTokenSumNorm,
        ] {
            assert_eq!(agg(mode, [[0.0; 3]; 2]), 0.0, "{mode:?}");
        }
    }
}
