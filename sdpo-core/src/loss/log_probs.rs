//! Log-probabilities from logits: logsumexp, the sampled token's log-prob,
//! and the student's top-k support.
//!
//! Log-probabilities are computed as `(x − max) − log Σ exp(x − max)` rather
//! than `x − logsumexp(x)`: with logits around ±1e4 the latter adds a small
//! number to a large one and loses about 1e-3 in f32.

use burn::tensor::{backend::Backend, Int, Tensor};

use super::topk::topk_indices;

/// Row statistics for log-probabilities along the last dimension.
///
/// `max` is detached: the logsumexp does not depend on it mathematically, so
/// gradients are exact without flowing through it.
pub struct LogNormalizer<B: Backend, const D: usize> {
    /// Row maximum, `[.., 1]`, detached.
    pub max: Tensor<B, D>,
    /// `log Σ exp(x − max)`, `[.., 1]`.
    pub log_sum: Tensor<B, D>,
}

impl<B: Backend, const D: usize> LogNormalizer<B, D> {
    /// Computes the normalizer of `logits` along the last dimension.
    ///
    /// # Shapes
    /// `logits: [.., V]` → fields `[.., 1]`.
    pub fn new(logits: &Tensor<B, D>) -> Self {
        let max = logits.clone().detach().max_dim(D - 1);
        let log_sum = (logits.clone() - max.clone()).exp().sum_dim(D - 1).log();
        Self { max, log_sum }
    }

    /// `logsumexp` along the last dimension, `[.., 1]`.
    pub fn logsumexp(&self) -> Tensor<B, D> {
        self.max.clone() + self.log_sum.clone()
    }

    /// Log-probabilities of `values` (logits taken from the same rows).
    ///
    /// # Shapes
    /// `values: [.., K]` → `[.., K]`.
    pub fn log_probs(&self, values: Tensor<B, D>) -> Tensor<B, D> {
        (values - self.max.clone()) - self.log_sum.clone()
    }
}

impl<B: Backend> LogNormalizer<B, 3> {
    /// Log-probabilities of the tokens `ids` in the rows of `logits` (the
    /// tensor this normalizer was computed from).
    ///
    /// # Shapes
    /// `logits: [batch, len, V]`, `ids: [batch, len]` → `[batch, len]`.
    pub fn token_log_probs(&self, logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.log_probs(logits.gather(2, ids.unsqueeze_dim(2)))
            .squeeze_dim(2)
    }
}

/// `logsumexp` along the last dimension.
///
/// # Shapes
/// `x: [.., V]` → `[.., 1]`.
pub fn logsumexp<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    LogNormalizer::new(&x).logsumexp()
}

/// Log-softmax along the last dimension, computed stably.
///
/// # Shapes
/// `logits: [.., V]` → `[.., V]`.
pub fn log_softmax<B: Backend, const D: usize>(logits: Tensor<B, D>) -> Tensor<B, D> {
    let norm = LogNormalizer::new(&logits);
    norm.log_probs(logits)
}

/// Log-probability of each given token under `logits`.
///
/// # Shapes
/// `logits: [batch, len, V]`, `ids: [batch, len]` → `[batch, len]`.
pub fn token_log_probs<B: Backend>(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    LogNormalizer::new(&logits).token_log_probs(logits, ids)
}

/// The student's side of top-k distillation.
pub struct TopKLogProbs<B: Backend> {
    /// Indices of the `k` largest logits per position, `[batch, len, k]`.
    pub indices: Tensor<B, 3, Int>,
    /// Log-probabilities of those tokens (against the full logsumexp),
    /// `[batch, len, k]`.
    pub log_probs: Tensor<B, 3>,
}

/// The `k` most likely tokens of `logits` and their log-probabilities
/// `topk_logits − logsumexp(logits)`. Gradients flow to the selected logits and
/// through the logsumexp; the selection itself is not differentiated.
///
/// # Shapes
/// `logits: [batch, len, V]` → `[batch, len, k]` (`k` is capped at `V`).
pub fn topk_log_probs<B: Backend>(logits: Tensor<B, 3>, k: usize) -> TopKLogProbs<B> {
    let indices = topk_indices(logits.clone().detach(), k);
    let log_probs = gathered_log_probs(logits, indices.clone());
    TopKLogProbs { indices, log_probs }
}

/// Log-probabilities of the tokens at `indices` (against the full logsumexp of
/// each row): how the teacher is read at the student's top-k.
///
/// # Shapes
/// `logits: [batch, len, V]`, `indices: [batch, len, k]` → `[batch, len, k]`.
pub fn gathered_log_probs<B: Backend>(
    logits: Tensor<B, 3>,
    indices: Tensor<B, 3, Int>,
) -> Tensor<B, 3> {
    let norm = LogNormalizer::new(&logits);
    norm.log_probs(logits.gather(2, indices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f64>;

    #[test]
    fn logsumexp_is_stable_for_huge_logits() {
        let dev = Default::default();
        let x = Tensor::<B, 2>::from_data([[1e4, 1e4 - 1.0, -1e4], [0.0, 0.0, 0.0]], &dev);
        let got = logsumexp(x).into_data().to_vec::<f64>().unwrap();
        let want0 = 1e4 + (1.0f64 + (-1.0f64).exp()).ln();
        assert!((got[0] - want0).abs() < 1e-9);
        assert!((got[1] - 3f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn token_log_probs_pick_the_right_entries() {
        let dev = Default::default();
        let logits = Tensor::<B, 3>::from_data([[[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]]], &dev);
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::from([[2i64, 0]]), &dev);
        let got = token_log_probs(logits, ids)
            .into_data()
            .to_vec::<f64>()
            .unwrap();
        let lse0 = (1.0f64 + 1f64.exp() + 2f64.exp()).ln();
        let lse1 = (3f64.exp() + 2.0).ln();
        assert!((got[0] - (2.0 - lse0)).abs() < 1e-12);
        assert!((got[1] - (3.0 - lse1)).abs() < 1e-12);
    }
}
