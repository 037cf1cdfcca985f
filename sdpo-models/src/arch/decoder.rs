//! The interface generation and scoring run against: a causal decoder with an explicit cache.
//!
//! [`CausalLm`] implements it; so does a model viewed through a LoRA adapter set, which is how
//! the student, a LoRA-EMA teacher and the sampler share one frozen base.

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use super::cache::KvCache;
use super::config::ModelConfig;
use super::model::CausalLm;
use crate::kernels::DecoderBackend;

/// A decoder-only language model as seen by generation and scoring.
///
/// Implementations are stateless between calls: the caller owns the [`KvCache`].
pub trait CausalDecoder<B: Backend> {
    /// The resolved architecture (vocabulary size, layer count, ...).
    fn model_config(&self) -> &ModelConfig;

    /// Final hidden states (after the last norm) of the new tokens; see
    /// [`CausalLm::forward_hidden`] for the cache and mask conventions.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` new tokens
    /// - `key_mask`: `[batch, cached + seq]`, `true` = real token
    /// - `positions`: `[batch, seq]`
    /// - returns `[batch, seq, hidden]`
    fn decode_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3>;

    /// The output head applied to selected hidden states: `[batch, n, hidden]` → `[batch, n, vocab]`.
    fn decode_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3>;

    /// An empty cache sized for this model.
    fn empty_cache(&self) -> KvCache<B> {
        KvCache::new(self.model_config().num_layers)
    }
}

impl<B: DecoderBackend> CausalDecoder<B> for CausalLm<B> {
    fn model_config(&self) -> &ModelConfig {
        &self.config
    }

    fn decode_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.forward_hidden(ids, key_mask, positions, cache)
    }

    fn decode_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.logits_from_hidden(hidden)
    }
}
