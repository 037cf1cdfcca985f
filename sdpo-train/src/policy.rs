//! [`Policy`]: the trained module (a model, optionally seen through LoRA adapters) and
//! [`Policy::loss`]: one forward of the blended SDPO / GRPO loss on a micro-batch.

use std::sync::Arc;

use crate::data_parallel::LossShares;
use crate::TrainBackend;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use burn::tensor::{Bool, Int, Tensor};

use sdpo_core::loss::{try_self_distillation_loss, DistillationBatch, ShapeError};
use sdpo_core::policy::{blend, policy_loss, ClipRange};
use sdpo_core::rollout_is::rollout_is_weights;
use sdpo_core::{LossAggMode, RolloutIs, SdpoConfig};
use sdpo_models::arch::{CausalDecoder, CausalLm, KvCache, ModelConfig, ProjectionDelta};
use sdpo_models::kernels::DecoderBackend;
use sdpo_models::lora::LoraSet;
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

/// The policy runs the model's one forward ([`CausalLm::forward_hidden_with`]) with its
/// adapters, if any, as the projections' additive term.
impl<B: DecoderBackend> CausalDecoder<B> for Policy<B> {
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
        let delta = self.lora.as_ref().map(|l| l as &dyn ProjectionDelta<B>);
        self.lm
            .forward_hidden_with(ids, key_mask, positions, cache, delta)
    }

    fn decode_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.lm.logits_from_hidden(hidden)
    }
}

/// What the teacher contributes to one training pass.
#[derive(Debug, Clone)]
pub enum TeacherSignal<B: Backend> {
    /// No distillation term (pure GRPO).
    None,
    /// Teacher logits at the response positions, temperature applied, `[batch, R, vocab]`
    /// (every teacher mode forms its own; see [`crate::teacher::Teacher::logits`]).
    Logits(Tensor<B, 3>),
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
    /// Log-probs of the response under the policy before the step's first update, `[batch,
    /// R]`, for the IS clip and GRPO. `None` when the step is on-policy (one update per
    /// generation batch): the pass's own log-probs, detached, serve, so the ratio is exactly 1
    /// and no extra forward runs (verl's `on_policy` branch).
    pub old_log_probs: Option<Tensor<B, 2>>,
    /// GRPO advantages broadcast over tokens, `[batch, R]` (needed when `distillation_weight < 1`).
    pub advantages: Option<Tensor<B, 2>>,
    /// The log-probs the rollout drew the response with, `[batch, R]`, for rollout importance
    /// sampling ([`StepSettings::rollout_is`]); `None` turns it off for this pass.
    pub rollout_log_probs: Option<Tensor<B, 2>>,
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
    /// Rollout importance sampling.
    pub rollout_is: RolloutIs,
    /// Each term's share of the global loss denominator (data-parallel ranks; 1 in one
    /// process): the terms are multiplied by these before blending.
    pub shares: LossShares,
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
    /// Mean rollout importance-sampling weight over response tokens.
    pub mean_rollout_is_weight: Option<f64>,
    /// Mean entropy of the student's distribution over response tokens.
    pub entropy: Option<f64>,
    /// Mean KL(teacher ‖ student) over the response tokens of samples with a teacher signal.
    pub teacher_kl: Option<f64>,
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

impl<B: TrainBackend> Policy<B> {
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
        let mut item = StepItem {
            entropy: mean_entropy(logits.clone(), batch.response_mask.clone()),
            ..StepItem::default()
        };

        let teacher_logits = match batch.teacher {
            TeacherSignal::None => None,
            TeacherSignal::Logits(t) => Some(t),
        };
        // The GRPO term differentiates the student's token log-probs.
        let student_log_probs =
            (w < 1.0).then(|| response_log_probs(logits.clone(), batch.response_ids.clone()));
        // On-policy (no old log-probs given) the pass's own, detached, serve: the PPO ratio is
        // exactly 1 and the distillation's IS weights are 1 (verl's `on_policy` branch).
        let on_policy = batch.old_log_probs.is_none();
        let rollout_is = batch.rollout_log_probs.is_some()
            && s.rollout_is.level != sdpo_core::RolloutIsLevel::None;
        let old_log_probs = match (batch.old_log_probs, &student_log_probs) {
            (Some(old), _) => Some(old),
            (None, Some(own)) => Some(own.clone().detach()),
            (None, None) if rollout_is => Some(response_log_probs(
                logits.clone().detach(),
                batch.response_ids.clone(),
            )),
            (None, None) => None,
        };
        let rollout_weights = match (&old_log_probs, batch.rollout_log_probs) {
            (Some(old), Some(rollout)) => rollout_is_weights(
                old.clone(),
                rollout,
                batch.response_mask.clone(),
                &s.rollout_is,
            ),
            _ => None,
        };
        if let Some(weights) = &rollout_weights {
            let tokens = scalar(&batch.response_mask.clone().sum());
            if tokens > 0.0 {
                item.mean_rollout_is_weight = Some(scalar(&weights.clone().sum()) / tokens);
            }
        }
        let distillation = if w > 0.0 {
            let teacher_logits =
                teacher_logits.ok_or(StepError::Missing("distillation needs teacher logits"))?;
            item.teacher_kl = mean_teacher_kl(
                logits.clone(),
                teacher_logits.clone(),
                batch.response_ids.clone(),
                batch.response_mask.clone(),
                batch.self_distillation_mask.clone(),
                cfg,
            )?;
            let out = try_self_distillation_loss(
                DistillationBatch {
                    student_logits: logits,
                    teacher_logits,
                    response_ids: batch.response_ids.clone(),
                    response_mask: batch.response_mask.clone(),
                    old_log_probs: if on_policy {
                        None
                    } else {
                        old_log_probs.clone()
                    },
                    self_distillation_mask: Some(batch.self_distillation_mask),
                    rollout_is_weights: rollout_weights.clone(),
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
            Some(out.loss)
        } else {
            None
        };
        let policy = match student_log_probs {
            None => None,
            Some(log_probs) => {
                let old = old_log_probs.ok_or(StepError::Missing("GRPO needs old log-probs"))?;
                let adv = batch
                    .advantages
                    .ok_or(StepError::Missing("GRPO needs advantages"))?;
                let out = policy_loss(
                    log_probs,
                    old,
                    adv,
                    batch.response_mask,
                    ClipRange::from(cfg),
                    rollout_weights,
                    cfg.loss_agg_mode,
                );
                item.policy_loss = Some(scalar(&out.loss));
                item.clip_fraction = Some(scalar(&out.clip_fraction));
                Some(out.loss)
            }
        };
        let missing = || StepError::Missing("neither loss term was evaluated");
        // The metrics report the pass's own loss; the gradient comes from each term's share of
        // the global loss (the same thing in one process).
        item.loss = scalar(&blend(policy.clone(), distillation.clone(), w).ok_or_else(missing)?);
        let loss = blend(
            policy.map(|p| p.mul_scalar(s.shares.policy)),
            distillation.map(|d| d.mul_scalar(s.shares.distillation)),
            w,
        )
        .ok_or_else(missing)?;
        Ok((loss.mul_scalar(s.loss_scale), item))
    }
}

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_scalar().elem::<f64>()
}

/// Mean KL(teacher ‖ student) on the full vocabulary over the response tokens of samples with
/// a teacher signal (no graph: the loss entry point on the detached student, full vocabulary,
/// forward KL, token mean, no weights — fused where the backend has kernels); `None` when no
/// such token exists.
///
/// # Shapes
/// - `student`, `teacher`: `[batch, R, vocab]`; `ids`, `mask`: `[batch, R]`; `signal`: `[batch]`
fn mean_teacher_kl<B: TrainBackend>(
    student: Tensor<B, 3>,
    teacher: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    signal: Tensor<B, 1>,
    cfg: &SdpoConfig,
) -> Result<Option<f64>, StepError> {
    let tokens = scalar(&(mask.clone() * signal.clone().unsqueeze_dim::<2>(1)).sum());
    if tokens == 0.0 {
        return Ok(None);
    }
    let kl = SdpoConfig {
        full_logit_distillation: true,
        distillation_topk: None,
        alpha: 0.0,
        is_clip: None,
        loss_agg_mode: LossAggMode::TokenMean,
        fused_loss: cfg.fused_loss,
        ..SdpoConfig::default()
    };
    let out = try_self_distillation_loss(
        DistillationBatch {
            student_logits: student.detach(),
            teacher_logits: teacher,
            response_ids: ids,
            response_mask: mask,
            old_log_probs: None,
            self_distillation_mask: Some(signal),
            rollout_is_weights: None,
        },
        &kl,
    )?;
    Ok(Some(scalar(&out.loss)))
}

/// Mean entropy `−Σ p log p` of `logits`' distributions over masked tokens (no graph); `None`
/// when no token is masked in.
///
/// # Shapes
/// - `logits`: `[batch, R, vocab]`, `mask`: `[batch, R]`
fn mean_entropy<B: Backend>(logits: Tensor<B, 3>, mask: Tensor<B, 2>) -> Option<f64> {
    let [batch, len, _] = logits.dims();
    let log_p = log_softmax(logits.detach(), 2);
    let entropy = (log_p.clone().exp() * log_p)
        .sum_dim(2)
        .neg()
        .reshape([batch, len]);
    let tokens = scalar(&mask.clone().sum());
    (tokens > 0.0).then(|| scalar(&(entropy * mask).sum()) / tokens)
}
