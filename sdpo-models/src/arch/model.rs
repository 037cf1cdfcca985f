//! The decoder-only causal language model shared by all supported families.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{backend::Backend, Bool, DType, Device, FloatDType, Int, Tensor};

use super::attention::AttentionMask;
use super::cache::KvCache;
use super::config::ModelConfig;
use super::delta::{LayerDelta, ProjectionDelta};
use super::layer::DecoderLayer;
use super::mask::positions_from_mask;
use super::norm::RmsNorm;
use super::rope::{inv_freq, RotaryEmbedding};
use crate::kernels::{self, DecoderBackend};

/// The transformer body (`model.*` in HF checkpoints).
#[derive(Module, Debug)]
pub struct DecoderModel<B: Backend> {
    /// Token embeddings, `[vocab, hidden]`; also the output head when embeddings are tied.
    pub embed_tokens: Embedding<B>,
    /// Decoder layers (`model.layers.N`).
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
}

/// A Llama / Mistral / Qwen2 / Qwen3 causal language model.
///
/// Stateless: every call gets the token ids, the key mask and the positions, and optionally an
/// explicit [`KvCache`] owned by the caller, so one value can serve as student, teacher and
/// sampler. With tied embeddings there is no `lm_head` parameter: the embedding matrix is
/// used for both ends.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    /// The transformer body.
    pub model: DecoderModel<B>,
    /// Output projection `hidden → vocab`; `None` when embeddings are tied.
    pub lm_head: Option<Linear<B>>,
    /// RoPE inverse frequencies (a constant, not a parameter).
    pub rotary: RotaryEmbedding<B>,
    /// The resolved configuration the model was built from.
    #[module(skip)]
    pub config: ModelConfig,
}

impl<B: Backend> CausalLm<B> {
    /// Builds a model with lazily initialized random weights (loading overwrites them).
    pub fn new(config: &ModelConfig, device: &Device<B>) -> Self {
        let model = DecoderModel {
            embed_tokens: EmbeddingConfig::new(config.vocab_size, config.hidden_size).init(device),
            layers: (0..config.num_layers)
                .map(|_| DecoderLayer::new(config, device))
                .collect(),
            norm: RmsNorm::new(config.hidden_size, config.rms_norm_eps, device),
        };
        let lm_head = (!config.tie_word_embeddings).then(|| {
            LinearConfig::new(config.hidden_size, config.vocab_size)
                .with_bias(false)
                .init(device)
        });
        Self {
            model,
            lm_head,
            rotary: RotaryEmbedding::new(&inv_freq(config), device),
            config: config.clone(),
        }
    }

    /// An empty cache sized for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.config.num_layers)
    }
}

impl<B: DecoderBackend> CausalLm<B> {
    /// Logits for every position of a (possibly left-padded) batch.
    ///
    /// Positions are `cumsum(mask) − 1` clamped at 0, as Hugging Face computes them for left
    /// padding. Logits at padding positions are finite but meaningless.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]`
    /// - `mask`: `[batch, seq]`, `true` = real token
    /// - returns `[batch, seq, vocab]`
    pub fn forward_logits(&self, ids: Tensor<B, 2, Int>, mask: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        let positions = positions_from_mask(mask.clone());
        let hidden = self.forward_hidden(ids, mask, positions, None);
        self.logits_from_hidden(hidden)
    }

    /// Final hidden states (after the last norm) of the new tokens.
    ///
    /// With a cache, `ids` are the new tokens only, `key_mask` covers the cached tokens
    /// followed by the new ones, and the cache is extended in place. The new tokens sit at the
    /// end of the key sequence (causality is aligned bottom-right).
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` new tokens
    /// - `key_mask`: `[batch, cached + seq]`, `true` = real token
    /// - `positions`: `[batch, seq]` RoPE positions of the new tokens
    /// - returns `[batch, seq, hidden]`
    pub fn forward_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.forward_hidden_with(ids, key_mask, positions, cache, None)
    }

    /// [`CausalLm::forward_hidden`] with an optional additive term on every decoder layer's
    /// projections, e.g. a LoRA adapter set ([`crate::lora::LoraSet`]). This model's weights
    /// are only read: any number of deltas can share one base. A delta must fit this model
    /// (for LoRA: [`LoraSet::check_compatible`](crate::lora::LoraSet::check_compatible)).
    ///
    /// This is the one forward every decoder runs ([`CausalLm`] itself, the LoRA views and
    /// the trainer's policy); see `docs/ARCHITECTURE.md`.
    ///
    /// # Shapes
    /// As in [`CausalLm::forward_hidden`].
    pub fn forward_hidden_with(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        mut cache: Option<&mut KvCache<B>>,
        delta: Option<&dyn ProjectionDelta<B>>,
    ) -> Tensor<B, 3> {
        let seq = ids.dims()[1];
        let mut x = self.model.embed_tokens.forward(ids);
        let angles = self.rotary.cos_sin(positions, x.dtype());
        let mask = AttentionMask::new(key_mask, seq, self.config.sliding_window);
        for (i, layer) in self.model.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, i));
            let layer_delta = delta.map(|delta| LayerDelta { delta, layer: i });
            x = layer.forward_with(x, &angles, &mask, layer_cache, layer_delta);
        }
        self.model.norm.forward(x)
    }

    /// Applies the output head (or the tied embedding matrix) to selected hidden states, e.g.
    /// only the response positions.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, n, hidden]` → `[batch, n, vocab]`
    pub fn logits_from_hidden(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let logits = match &self.lm_head {
            Some(head) => super::linear::linear(head, hidden),
            None => {
                let [b, n, h] = hidden.dims();
                let weight = self.model.embed_tokens.weight.val(); // [vocab, hidden]
                let vocab = weight.dims()[0];
                tied_head(hidden.reshape([b * n, h]), weight).reshape([b, n, vocab])
            }
        };
        // Half-precision models hand f32 logits to log-softmax, sampling and the losses.
        if logits.dtype() == DType::F32 {
            logits
        } else {
            logits.cast(FloatDType::F32)
        }
    }
}

/// `rows · weightᵀ` for a tied head (`rows`: `[n, hidden]`, `weight`: `[vocab, hidden]`): the
/// few-row kernel where the backend has one, which reads the embedding's rows in place.
///
/// Otherwise, a backend whose GEMM wants contiguous operands copies whichever operand is
/// transposed: with few rows (decoding) that must not be the `[vocab, hidden]` embedding, so
/// the product is computed as `(weight · rowsᵀ)ᵀ` and only the small `[n, vocab]` result is
/// transposed.
fn tied_head<B: DecoderBackend>(rows: Tensor<B, 2>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
    if let Some(logits) = kernels::matmul(&rows, &weight.clone().transpose(), None) {
        return logits;
    }
    let [n, hidden] = rows.dims();
    if n < hidden {
        weight.matmul(rows.transpose()).transpose()
    } else {
        rows.matmul(weight.transpose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn tied_head_orders_agree() {
        let device = Default::default();
        let weight = Tensor::<B, 2>::random(
            [11, 6],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        // 3 rows (< hidden 6) takes the transposed-product path, 9 rows the direct one.
        for n in [3, 9] {
            let rows = Tensor::<B, 2>::random(
                [n, 6],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let got = tied_head(rows.clone(), weight.clone());
            assert_eq!(got.dims(), [n, 11]);
            let want = rows.matmul(weight.clone().transpose());
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::default());
        }
    }
}
