//! The teacher's weights for each [`TeacherMode`], kept on the non-autodiff backend.
//!
//! | mode           | without LoRA                         | with LoRA                            |
//! |----------------|--------------------------------------|--------------------------------------|
//! | `ema`          | one model copy, EMA-updated          | one adapter set, EMA-updated         |
//! | `frozen`       | one model copy, never updated        | the initial adapter set              |
//! | `trust-region` | the initial model (the reference)    | the initial adapter set              |
//! | `lora-ema`     | (needs LoRA)                         | one adapter set, EMA-updated         |
//! | `live`         | nothing: the student itself          | nothing                              |
//!
//! With LoRA the base is shared with the student (the base is frozen, so only adapters can
//! differ): a LoRA teacher never holds a second base.
//!
//! [`Teacher::logits`] returns the teacher's signal itself for every mode: for `trust-region`
//! it runs both the reference and the current student on the teacher's (reprompted) input and
//! mixes them, `lerp(reference, student, rate)`, as verl's `TrustRegionTeacher` does — so rate
//! 0 is the reference and rate 1 is the `live` teacher.

use crate::TrainBackend;
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use sdpo_core::teacher::{ema_update, trust_region_logits, TeacherUpdateError};
use sdpo_core::TeacherMode;
use sdpo_models::arch::CausalLm;
use sdpo_models::kernels::DecoderBackend;
use sdpo_models::lora::{LoraSet, WithLora};
use sdpo_models::scoring::{response_logits, ScoringError};

use crate::policy::Policy;

/// The teacher's own weights, if it has any.
// A model copy is far larger than an adapter set by nature; boxing would not save memory.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TeacherWeights<B: Backend> {
    /// A full model copy (ema / frozen / trust-region reference without LoRA).
    Model(CausalLm<B>),
    /// An adapter set over the student's frozen base.
    Adapters(LoraSet<B>),
}

/// The teacher of a run: its mode, its weights and its update rule.
#[derive(Debug, Clone)]
pub struct Teacher<B: Backend> {
    mode: TeacherMode,
    rate: f64,
    sync_steps: usize,
    weights: Option<TeacherWeights<B>>,
}

impl<B: DecoderBackend> Teacher<B> {
    /// The teacher of `mode` for a student whose inner (non-autodiff) module is `student`
    /// (materialized weights: clone after loading, never before).
    pub fn new(mode: TeacherMode, rate: f64, sync_steps: usize, student: &Policy<B>) -> Self {
        let weights = match (mode, &student.lora) {
            (TeacherMode::Live, _) => None,
            (_, Some(lora)) => Some(TeacherWeights::Adapters(lora.clone())),
            (_, None) => Some(TeacherWeights::Model(student.lm.clone())),
        };
        Self {
            mode,
            rate,
            sync_steps: sync_steps.max(1),
            weights,
        }
    }

    /// The teacher mode.
    pub fn mode(&self) -> TeacherMode {
        self.mode
    }

    /// The teacher's own weights (`None` for `live`).
    pub fn weights(&self) -> Option<&TeacherWeights<B>> {
        self.weights.as_ref()
    }

    /// Replaces the weights (restoring a checkpoint).
    pub fn set_weights(&mut self, weights: Option<TeacherWeights<B>>) {
        self.weights = weights;
    }

    /// The teacher's logits at the `response_len` last positions of `ids` (`[batch, R,
    /// vocab]`), divided by `temperature`; `ids` is the teacher's input. For `trust-region`:
    /// `lerp(reference, student, rate)`, both run on `ids`.
    ///
    /// `student` is the current student's inner module (for `live`, `trust-region` and the
    /// shared base).
    pub fn logits(
        &self,
        student: &Policy<B>,
        ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Bool>,
        response_len: usize,
        temperature: f64,
    ) -> Result<Tensor<B, 3>, ScoringError> {
        let t = Some(temperature);
        let own = match &self.weights {
            None => return response_logits(student, ids, mask, response_len, t),
            Some(TeacherWeights::Model(m)) => {
                response_logits(m, ids.clone(), mask.clone(), response_len, t)?
            }
            Some(TeacherWeights::Adapters(set)) => response_logits(
                &WithLora {
                    base: &student.lm,
                    lora: set,
                },
                ids.clone(),
                mask.clone(),
                response_len,
                t,
            )?,
        };
        match self.mode {
            TeacherMode::TrustRegion => {
                let current = response_logits(student, ids, mask, response_len, t)?;
                Ok(trust_region_logits(own, current, self.rate))
            }
            _ => Ok(own),
        }
    }

    /// The update after training step `step` (1-based): EMA modes move toward the student by
    /// `rate` every `teacher_sync_steps` steps; the others never change.
    ///
    /// # Errors
    /// [`TeacherUpdateError`] if the student's parameters do not match the teacher's.
    pub fn update(&mut self, student: &Policy<B>, step: usize) -> Result<bool, TeacherUpdateError> {
        let ema = matches!(self.mode, TeacherMode::Ema | TeacherMode::LoraEma);
        if !ema || !step.is_multiple_of(self.sync_steps) {
            return Ok(false);
        }
        self.weights = match self.weights.take() {
            Some(TeacherWeights::Model(m)) => Some(TeacherWeights::Model(ema_update(
                m,
                &student.lm,
                self.rate,
            )?)),
            Some(TeacherWeights::Adapters(set)) => match &student.lora {
                Some(lora) => Some(TeacherWeights::Adapters(ema_update(set, lora, self.rate)?)),
                None => Some(TeacherWeights::Adapters(set)),
            },
            None => None,
        };
        Ok(true)
    }
}

/// The teacher for an autodiff student: built from the student's inner module.
pub fn teacher_for<B: TrainBackend>(
    mode: TeacherMode,
    rate: f64,
    sync_steps: usize,
    student: &Policy<B>,
) -> Teacher<B::InnerBackend> {
    Teacher::new(mode, rate, sync_steps, &student.valid())
}
