//! [`Policy`]: the trained module (a model, optionally seen through LoRA adapters) and its
//! burn-train [`TrainStep`]: one forward/backward of the blended SDPO / GRPO loss.

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ElementConversion;
use burn::tensor::{Bool, Int, Tensor};
use burn::train::{ItemLazy, TrainOutput, TrainStep};

use sdpo_core::loss::{try_self_distillation_loss, DistillationBatch, ShapeError};
use sdpo_core::policy::{blend, policy_loss, ClipRange};
use sdpo_core::teacher::trust_region_logits;
use sdpo_core::SdpoConfig;
use sdpo_models::arch::{CausalDecoder, CausalLm, KvCache, ModelConfig};
use sdpo_models::lora::{LoraSet, WithLora};
use sdpo_models::scoring::{response_log_probs, response_logits, ScoringError};

/// The trained module: a causal LM, with its weights trained directly, or frozen under an
/// adapter set (only the adapters train).
#[derive(Module, Debug)]
pub struct Policy<B: Backend> {
    /// The language model (frozen when `lora` is set).
    pub lm: CausalLm<B>,
    /// LoRA adapters on `lm`, when training with LoRA.
    pub lora: Option<LoraSet<B>>,
}

impl<B: Backend> Policy<B> {
    /// A policy training every weight of `lm`.
    pub fn full(lm: CausalLm<B>) -> Self {
        Self { lm, lora: None }
    }

    /// A policy training only `lora` on a frozen `lm`.
    pub fn with_lora(lm: CausalLm<B>, lora: LoraSet<B>) -> Self {
        Self {
            lm: lm.no_grad(),
            lora: Some(lora),
        }
    }
}

impl<B: Backend> CausalDecoder<B> for Policy<B> {
    fn model_config(&self) -> &ModelConfig {
        &self.lm.config
    }

    fn decode_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        match &self.lora {
            Some(lora) => WithLora {
                base: &self.lm,
                lora,
            }
            .decode_hidden(ids, key_mask, positions, cache),
            None => self.lm.decode_hidden(ids, key_mask, positions, cache),
        }
    }

    fn decode_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lora {
            Some(lora) => WithLora {
                base: &self.lm,
                lora,
            }
            .decode_logits(hidden),
            None => self.lm.decode_logits(hidden),
        }
    }
}

/// What the teacher contributes to one training pass.
#[derive(Debug, Clone)]
pub enum TeacherSignal<B: Backend> {
    /// No distillation term (pure GRPO).
    None,
    /// Teacher logits at the response positions, temperature applied, `[batch, R, vocab]`.
    Logits(Tensor<B, 3>),
    /// Trust region: the teacher is `lerp(reference, student, rate)` with the student's own
    /// current (detached) logits, so it is formed inside the step.
    TrustRegion {
        /// Reference-model logits, temperature applied, `[batch, R, vocab]`.
        reference: Tensor<B, 3>,
        /// Mixing rate (`teacher_update_rate`).
        rate: f64,
    },
}

/// One forward/backward pass's input (a micro-batch of the generation batch).
#[derive(Debug, Clone)]
pub struct TrainBatch<B: Backend> {
    /// Student input, `[left-padded prompt | right-padded response]`, `[batch, P + R]`.
    pub ids: Tensor<B, 2, Int>,
    /// `true` on real tokens of `ids`.
    pub mask: Tensor<B, 2, Bool>,
    /// The sampled response tokens, `[batch, R]`.
    pub response_ids: Tensor<B, 2, Int>,
    /// 1.0 on real response tokens, `[batch, R]`.
    pub response_mask: Tensor<B, 2>,
    /// 1.0 for samples with a teacher signal (demonstration or feedback), `[batch]`.
    pub self_distillation_mask: Tensor<B, 1>,
    /// The teacher's contribution.
    pub teacher: TeacherSignal<B>,
    /// Log-probs of the response under the policy before this batch's first update, `[batch, R]`
    /// (needed by the IS clip and by GRPO).
    pub old_log_probs: Option<Tensor<B, 2>>,
    /// GRPO advantages broadcast over tokens, `[batch, R]` (needed when `distillation_weight < 1`).
    pub advantages: Option<Tensor<B, 2>>,
    /// The algorithm's settings, the sampling temperature and the gradient-accumulation scale.
    pub settings: Arc<StepSettings>,
}

/// Settings shared by every pass of a run.
#[derive(Debug, Clone)]
pub struct StepSettings {
    /// The algorithm.
    pub sdpo: SdpoConfig,
    /// Logits are divided by this (the rollout temperature; 1 when sampling greedily).
    pub temperature: f64,
    /// The loss is multiplied by this (1 / number of micro-batches in the mini-batch).
    pub loss_scale: f64,
}

/// Scalars from one pass, read back to the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepItem {
    /// The blended loss (before the accumulation scale).
    pub loss: f64,
    /// The distillation term, if evaluated.
    pub distillation_loss: Option<f64>,
    /// The GRPO term, if evaluated.
    pub policy_loss: Option<f64>,
    /// Fraction of response tokens where the PPO clip was active (GRPO term only).
    pub clip_fraction: Option<f64>,
    /// Mean importance weight over masked tokens (distillation term with `is_clip`).
    pub mean_is_weight: Option<f64>,
    /// Why the pass could not be evaluated (then no gradients were produced).
    pub error: Option<String>,
}

impl ItemLazy for StepItem {
    type ItemSync = StepItem;
    fn sync(self) -> StepItem {
        self
    }
}

/// Why a training pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Tensors of the batch disagree in shape.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The scoring pass rejected the batch.
    #[error(transparent)]
    Scoring(#[from] ScoringError),
    /// The batch asks for a term whose inputs are missing.
    #[error("training batch: {0}")]
    Missing(&'static str),
}

impl<B: AutodiffBackend> Policy<B> {
    /// The loss of one pass (a graph on `B`) and its scalars, without the backward pass.
    ///
    /// # Errors
    /// [`StepError`] when shapes disagree or a needed input is absent.
    pub fn loss(&self, batch: TrainBatch<B>) -> Result<(Tensor<B, 1>, StepItem), StepError> {
        let s = batch.settings.clone();
        let cfg = &s.sdpo;
        let r = batch.response_ids.dims()[1];
        let logits = response_logits(self, batch.ids, batch.mask, r, Some(s.temperature))?;
        let w = cfg.distillation_weight;
        let mut item = StepItem::default();

        let teacher_logits = match batch.teacher {
            TeacherSignal::None => None,
            TeacherSignal::Logits(t) => Some(t),
            TeacherSignal::TrustRegion { reference, rate } => Some(trust_region_logits(
                reference,
                logits.clone().detach(),
                rate,
            )),
        };
        let (distillation, student_log_probs) = if w > 0.0 {
            let teacher_logits =
                teacher_logits.ok_or(StepError::Missing("distillation needs teacher logits"))?;
            let out = try_self_distillation_loss(
                DistillationBatch {
                    student_logits: logits,
                    teacher_logits,
                    response_ids: batch.response_ids.clone(),
                    response_mask: batch.response_mask.clone(),
                    old_log_probs: batch.old_log_probs.clone(),
                    self_distillation_mask: Some(batch.self_distillation_mask),
                    rollout_is_weights: None,
                },
                cfg,
            )?;
            item.distillation_loss = Some(scalar(&out.loss));
            if cfg.is_clip.is_some() {
                let m = out.loss_mask.clone();
                let total = m.clone().sum().into_scalar().elem::<f64>();
                if total > 0.0 {
                    let weighted = (out.importance_weights.clone() * m)
                        .sum()
                        .into_scalar()
                        .elem::<f64>();
                    item.mean_is_weight = Some(weighted / total);
                }
            }
            (Some(out.loss), out.student_log_probs)
        } else {
            let lp = response_log_probs(logits, batch.response_ids.clone());
            (None, lp)
        };
        let policy = if w < 1.0 {
            let old = batch
                .old_log_probs
                .ok_or(StepError::Missing("GRPO needs old log-probs"))?;
            let adv = batch
                .advantages
                .ok_or(StepError::Missing("GRPO needs advantages"))?;
            let out = policy_loss(
                student_log_probs,
                old,
                adv,
                batch.response_mask,
                ClipRange::from(cfg),
                None,
                cfg.loss_agg_mode,
            );
            item.policy_loss = Some(scalar(&out.loss));
            item.clip_fraction = Some(scalar(&out.clip_fraction));
            Some(out.loss)
        } else {
            None
        };
        let loss = blend(policy, distillation, w)
            .ok_or(StepError::Missing("neither loss term was evaluated"))?;
        item.loss = scalar(&loss);
        Ok((loss.mul_scalar(s.loss_scale), item))
    }
}

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_scalar().elem::<f64>()
}

impl<B: AutodiffBackend> TrainStep for Policy<B> {
    type Input = TrainBatch<B>;
    type Output = StepItem;

    /// One forward/backward pass. A batch that cannot be evaluated yields no gradients and
    /// the error text in [`StepItem::error`] (the trainer turns it back into a typed error).
    fn step(&self, batch: TrainBatch<B>) -> TrainOutput<StepItem> {
        match self.loss(batch) {
            Ok((loss, item)) => TrainOutput::new(self, loss.backward(), item),
            Err(e) => TrainOutput {
                grads: burn::optim::GradientsParams::new(),
                item: StepItem {
                    error: Some(e.to_string()),
                    ..StepItem::default()
                },
            },
        }
    }
}
