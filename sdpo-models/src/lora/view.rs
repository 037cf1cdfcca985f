//! Running a base model through an adapter set: a borrowed view ([`WithLora`]) for inference
//! and teachers, an owned trainable pair ([`LoraModel`]) for the student.

use burn::module::Module;
use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use super::adapter::LoraSet;
use super::error::LoraError;
use crate::arch::{CausalDecoder, CausalLm, KvCache, ModelConfig, ProjectionDelta};
use crate::kernels::DecoderBackend;

/// A base model seen through one adapter set, without copying either: the student, a
/// LoRA-EMA teacher and the sampler can all be `WithLora` views of the same frozen base with
/// different sets. Implements [`CausalDecoder`], so generation and scoring run on it as on a
/// plain [`CausalLm`].
///
/// Build it with [`WithLora::new`], which checks that the set fits the base; the fields are
/// public for borrowing them back, and a view assembled by hand must pair a set with the
/// architecture it was built for.
#[derive(Debug)]
pub struct WithLora<'a, B: Backend> {
    /// The shared base model (only read).
    pub base: &'a CausalLm<B>,
    /// The adapters applied on top of it.
    pub lora: &'a LoraSet<B>,
}

impl<B: Backend> Clone for WithLora<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for WithLora<'_, B> {}

impl<'a, B: Backend> WithLora<'a, B> {
    /// Views `base` through `lora`.
    ///
    /// # Errors
    /// [`LoraError::Incompatible`] when an adapter does not fit its projection or the layer
    /// counts differ.
    pub fn new(base: &'a CausalLm<B>, lora: &'a LoraSet<B>) -> Result<Self, LoraError> {
        lora.check_compatible(base)?;
        Ok(Self { base, lora })
    }

    /// Logits for every position of a (possibly left-padded) batch, as
    /// [`CausalLm::forward_logits`].
    ///
    /// # Shapes
    /// - `ids`, `mask`: `[batch, seq]` → `[batch, seq, vocab]`
    pub fn forward_logits(&self, ids: Tensor<B, 2, Int>, mask: Tensor<B, 2, Bool>) -> Tensor<B, 3>
    where
        B: DecoderBackend,
    {
        let positions = crate::arch::positions_from_mask(mask.clone());
        let hidden = self.decode_hidden(ids, mask, positions, None);
        self.decode_logits(hidden)
    }
}

impl<B: DecoderBackend> CausalDecoder<B> for WithLora<'_, B> {
    fn model_config(&self) -> &ModelConfig {
        &self.base.config
    }

    fn decode_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let delta: &dyn ProjectionDelta<B> = self.lora;
        self.base
            .forward_hidden_with(ids, key_mask, positions, cache, Some(delta))
    }

    fn decode_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        // PEFT's targets never include the output head.
        self.base.logits_from_hidden(hidden)
    }
}

/// A base model and one adapter set owned together, for training: the base is frozen
/// (`no_grad`), so gradients, and an optimizer built over the whole module, reach only the
/// adapters. Implements [`CausalDecoder`].
///
/// For a LoRA-EMA teacher, keep a second [`LoraSet`] and view the same base through it with
/// [`WithLora`] (`WithLora::new(&model.base, &teacher)`).
#[derive(Module, Debug)]
pub struct LoraModel<B: Backend> {
    /// The frozen base model.
    pub base: CausalLm<B>,
    /// The trainable adapters.
    pub lora: LoraSet<B>,
}

impl<B: Backend> LoraModel<B> {
    /// Pairs `base` with `lora` and freezes the base.
    ///
    /// # Errors
    /// [`LoraError::Incompatible`] when the set does not fit the base.
    pub fn new(base: CausalLm<B>, lora: LoraSet<B>) -> Result<Self, LoraError> {
        lora.check_compatible(&base)?;
        Ok(Self {
            base: base.no_grad(),
            lora,
        })
    }

    /// The pair as a borrowed view.
    pub fn view(&self) -> WithLora<'_, B> {
        WithLora {
            base: &self.base,
            lora: &self.lora,
        }
    }

    /// Logits for every position of a (possibly left-padded) batch, as
    /// [`CausalLm::forward_logits`].
    ///
    /// # Shapes
    /// - `ids`, `mask`: `[batch, seq]` → `[batch, seq, vocab]`
    pub fn forward_logits(&self, ids: Tensor<B, 2, Int>, mask: Tensor<B, 2, Bool>) -> Tensor<B, 3>
    where
        B: DecoderBackend,
    {
        self.view().forward_logits(ids, mask)
    }
}

impl<B: DecoderBackend> CausalDecoder<B> for LoraModel<B> {
    fn model_config(&self) -> &ModelConfig {
        &self.base.config
    }

    fn decode_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.view().decode_hidden(ids, key_mask, positions, cache)
    }

    fn decode_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.base.logits_from_hidden(hidden)
    }
}
