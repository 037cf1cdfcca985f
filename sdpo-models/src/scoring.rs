//! Scoring passes for training: log-probs, top-k and gathers at the response positions only.
//!
//! A scored batch is `[left-padded prompt | right-padded response]` (see
//! [`concat_prompt_response`]); the last `response_len` columns are the response. The model
//! runs over the whole sequence, but the output head is applied only to the hidden states
//! that predict response tokens, so no `[batch, prompt + response, vocab]` tensor is built.
//! The log-probability helpers are sdpo-core's (re-exported here): one definition for the
//! trainer and the loss.

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::arch::{positions_from_mask, CausalDecoder};

pub use sdpo_core::loss::log_probs::{
    gathered_log_probs, token_log_probs, topk_log_probs, LogNormalizer, TopKLogProbs,
};
pub use sdpo_core::loss::topk_indices;

/// Why a scoring pass cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoringError {
    /// Ids and mask differ in shape.
    #[error("ids have shape {ids:?} but the mask has shape {mask:?}")]
    ShapeMismatch {
        /// Shape of the ids.
        ids: [usize; 2],
        /// Shape of the mask.
        mask: [usize; 2],
    },
    /// The response does not fit in the sequence with at least one prompt token before it.
    #[error("response_len {response_len} must be in 1..{seq_len} (the sequence has {seq_len} columns and needs a prompt token first)")]
    ResponseLen {
        /// The response length asked for.
        response_len: usize,
        /// Columns of the batch.
        seq_len: usize,
    },
    /// The temperature cannot divide logits.
    #[error("temperature {value} must be finite and > 0 (pass None for no scaling)")]
    Temperature {
        /// The value given.
        value: f64,
    },
}

/// Concatenates prompt and response batches along the sequence.
///
/// # Shapes
/// - `prompt_ids`, `prompt_mask`: `[batch, P]` (left-padded, `true` = real token)
/// - `response_ids`, `response_mask`: `[batch, R]` (right-padded, `1.0` = real token)
/// - returns ids `[batch, P + R]` and mask `[batch, P + R]` (prompt mask ++ response mask > 0)
pub fn concat_prompt_response<B: Backend>(
    prompt_ids: Tensor<B, 2, Int>,
    prompt_mask: Tensor<B, 2, Bool>,
    response_ids: Tensor<B, 2, Int>,
    response_mask: Tensor<B, 2>,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    (
        Tensor::cat(vec![prompt_ids, response_ids], 1),
        Tensor::cat(vec![prompt_mask, response_mask.greater_elem(0.0)], 1),
    )
}

/// Logits at the `response_len` positions that predict the response tokens (positions
/// `P − 1 ..= P + R − 2`), divided by `temperature` when given.
///
/// The hidden states are sliced before the output head, so only `[batch, R, vocab]` logits
/// are ever built. RoPE positions come from the mask (left padding allowed).
///
/// # Shapes
/// - `ids`, `mask`: `[batch, P + R]`
/// - returns `[batch, R, vocab]`
///
/// # Errors
/// [`ScoringError`] when ids and mask differ in shape, `response_len` is 0 or leaves no
/// prompt column, or the temperature is not finite and positive.
pub fn response_logits<B: Backend, M: CausalDecoder<B>>(
    model: &M,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Bool>,
    response_len: usize,
    temperature: Option<f64>,
) -> Result<Tensor<B, 3>, ScoringError> {
    let [_, seq_len] = ids.dims();
    if mask.dims() != ids.dims() {
        return Err(ScoringError::ShapeMismatch {
            ids: ids.dims(),
            mask: mask.dims(),
        });
    }
    if response_len == 0 || response_len >= seq_len {
        return Err(ScoringError::ResponseLen {
            response_len,
            seq_len,
        });
    }
    if let Some(t) = temperature {
        if !(t.is_finite() && t > 0.0) {
            return Err(ScoringError::Temperature { value: t });
        }
    }
    let positions = positions_from_mask(mask.clone());
    let hidden = model.decode_hidden(ids, mask, positions, None);
    let prompt_len = seq_len - response_len;
    let logits = model.decode_logits(hidden.narrow(1, prompt_len - 1, response_len));
    Ok(match temperature {
        Some(t) => logits.div_scalar(t),
        None => logits,
    })
}

/// Log-probabilities of `response_ids` under `logits` (sdpo-core's [`token_log_probs`]).
///
/// # Shapes
/// - `logits`: `[batch, R, vocab]`, `response_ids`: `[batch, R]` → `[batch, R]`
pub fn response_log_probs<B: Backend>(
    logits: Tensor<B, 3>,
    response_ids: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    token_log_probs(logits, response_ids)
}

/// The `k` largest logits per position and their indices, by sdpo-core's chunked selection
/// ([`topk_indices`], no full sort). Values are in decreasing order; gradients reach the
/// selected logits (the selection itself is not differentiated). `k` is capped at `vocab`.
///
/// # Shapes
/// - `logits`: `[batch, R, vocab]` → values and indices `[batch, R, min(k, vocab)]`
pub fn response_topk<B: Backend>(
    logits: Tensor<B, 3>,
    k: usize,
) -> (Tensor<B, 3>, Tensor<B, 3, Int>) {
    let indices = topk_indices(logits.clone().detach(), k);
    (gather_logits(logits, indices.clone()), indices)
}

/// Logits gathered at given token indices, e.g. the teacher's logits at the student's top-k.
///
/// # Shapes
/// - `logits`: `[batch, R, vocab]`, `indices`: `[batch, R, k]` → `[batch, R, k]`
pub fn gather_logits<B: Backend>(logits: Tensor<B, 3>, indices: Tensor<B, 3, Int>) -> Tensor<B, 3> {
    logits.gather(2, indices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn concat_appends_the_response_and_thresholds_its_mask() {
        let device = Default::default();
        let (ids, mask) = concat_prompt_response(
            Tensor::<B, 2, Int>::from_data([[0, 5], [6, 7]], &device),
            Tensor::<B, 2, Bool>::from_data([[false, true], [true, true]], &device),
            Tensor::<B, 2, Int>::from_data([[8, 0], [9, 10]], &device),
            Tensor::<B, 2>::from_data([[1.0, 0.0], [1.0, 1.0]], &device),
        );
        let ids: Vec<i64> = ids.into_data().iter::<i64>().collect();
        let mask: Vec<bool> = mask.into_data().iter::<bool>().collect();
        assert_eq!(ids, vec![0, 5, 8, 0, 6, 7, 9, 10]);
        assert_eq!(mask, vec![false, true, true, false, true, true, true, true]);
    }

    #[test]
    fn topk_and_log_probs_on_a_hand_made_row() {
        let device = Default::default();
        let logits = Tensor::<B, 3>::from_data([[[1.0, 3.0, 0.0, 2.0]]], &device);
        let (values, indices) = response_topk(logits.clone(), 2);
        let values: Vec<f32> = values.into_data().iter::<f32>().collect();
        let indices: Vec<i64> = indices.into_data().iter::<i64>().collect();
        assert_eq!((values, indices), (vec![3.0, 2.0], vec![1, 3]));
        let ids = Tensor::<B, 2, Int>::from_data([[3]], &device);
        let lp: Vec<f32> = response_log_probs(logits, ids)
            .into_data()
            .iter::<f32>()
            .collect();
        let lse = (1f64.exp() + 3f64.exp() + 1.0 + 2f64.exp()).ln();
        assert!((f64::from(lp[0]) - (2.0 - lse)).abs() < 1e-6);
    }
}
