//! The self-distillation loss (the reference's `compute_self_distillation_loss`
//! and `agg_loss`), one small function per formula.
//!
//! [`self_distillation_loss`] only dispatches:
//! 1. log-probabilities of the support ([`log_probs`], [`topk`], [`tail_bucket`]);
//! 2. divergence terms summed over the support ([`divergence`]);
//! 3. importance weights ([`importance`]) and rollout IS weights;
//! 4. aggregation over `response_mask · self_distillation_mask` ([`aggregate`]).
//!
//! Gradients reach the student logits only: the teacher, the importance ratio
//! and the sampled-token log-ratio are detached.
//!
//! Steps 1–2 run as one fused kernel per row on backends that have one
//! ([`fused::LossBackend`]; the CPU backends), unless
//! [`SdpoConfig::fused_loss`] is off; the functions below are then the
//! reference the kernels are tested against.

pub mod aggregate;
pub mod divergence;
pub mod fused;
pub mod importance;
pub mod log_probs;
pub mod math;
pub mod tail_bucket;
pub mod topk;

use burn::tensor::{backend::Backend, Int, Tensor, TensorPrimitive};

use crate::config::{DistillationSupport, SdpoConfig};
use log_probs::LogNormalizer;

pub use aggregate::aggregate;
pub use divergence::divergence_terms;
pub use fused::{FusedLoss, LossBackend};
pub use importance::importance_weights;
pub use log_probs::{gathered_log_probs, log_softmax, logsumexp, token_log_probs, topk_log_probs};
pub use topk::topk_indices;

/// Inputs of the self-distillation loss for one batch of responses.
#[derive(Debug, Clone)]
pub struct DistillationBatch<B: Backend> {
    /// Student logits at the response positions, temperature applied,
    /// `[batch, response_len, vocab]`.
    pub student_logits: Tensor<B, 3>,
    /// Teacher logits over the same response tokens, same shape and
    /// temperature; detached inside the loss.
    pub teacher_logits: Tensor<B, 3>,
    /// The sampled response tokens, `[batch, response_len]`.
    pub response_ids: Tensor<B, 2, Int>,
    /// 1.0 on real response tokens, 0.0 on padding, `[batch, response_len]`.
    pub response_mask: Tensor<B, 2>,
    /// Log-probabilities of the response tokens under the policy that sampled
    /// them, `[batch, response_len]`. Used when `is_clip` is set; `None` means
    /// on-policy (the ratio is 1, as when old and current policy coincide).
    pub old_log_probs: Option<Tensor<B, 2>>,
    /// 1.0 for samples that have a teacher signal (a demonstration or used
    /// feedback), `[batch]`; `None` means every sample.
    pub self_distillation_mask: Option<Tensor<B, 1>>,
    /// Optional per-token rollout importance weights, `[batch, response_len]`.
    pub rollout_is_weights: Option<Tensor<B, 2>>,
}

/// The loss and what it was made of.
#[derive(Debug, Clone)]
pub struct DistillationOutput<B: Backend> {
    /// The aggregated loss, shape `[1]`.
    pub loss: Tensor<B, 1>,
    /// Per-token loss before masking and aggregation, after the importance and
    /// rollout weights, `[batch, response_len]`.
    pub per_token_loss: Tensor<B, 2>,
    /// The mask the loss was aggregated over (`response_mask ·
    /// self_distillation_mask`), `[batch, response_len]`.
    pub loss_mask: Tensor<B, 2>,
    /// Student log-probabilities of the response tokens (detached),
    /// `[batch, response_len]`: the old log-probs of a later update.
    pub student_log_probs: Tensor<B, 2>,
    /// Importance weights applied (detached; ones when `is_clip` is off),
    /// `[batch, response_len]`.
    pub importance_weights: Tensor<B, 2>,
}

/// A batch whose tensors do not fit together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("distillation batch: `{tensor}` has shape {found:?}, expected {expected:?}")]
pub struct ShapeError {
    /// The field of [`DistillationBatch`].
    pub tensor: &'static str,
    /// The shape implied by `student_logits`.
    pub expected: Vec<usize>,
    /// The shape found.
    pub found: Vec<usize>,
}

impl<B: Backend> DistillationBatch<B> {
    /// Checks that every tensor matches `student_logits: [batch, len, vocab]`.
    ///
    /// # Errors
    /// [`ShapeError`] naming the first misshapen tensor.
    pub fn check_shapes(&self) -> Result<(), ShapeError> {
        let [b, t, v] = self.student_logits.dims();
        let check = |tensor: &'static str, expected: Vec<usize>, found: Vec<usize>| {
            if expected == found {
                Ok(())
            } else {
                Err(ShapeError {
                    tensor,
                    expected,
                    found,
                })
            }
        };
        check(
            "teacher_logits",
            vec![b, t, v],
            self.teacher_logits.dims().to_vec(),
        )?;
        check(
            "response_ids",
            vec![b, t],
            self.response_ids.dims().to_vec(),
        )?;
        check(
            "response_mask",
            vec![b, t],
            self.response_mask.dims().to_vec(),
        )?;
        if let Some(x) = &self.old_log_probs {
            check("old_log_probs", vec![b, t], x.dims().to_vec())?;
        }
        if let Some(x) = &self.self_distillation_mask {
            check("self_distillation_mask", vec![b], x.dims().to_vec())?;
        }
        if let Some(x) = &self.rollout_is_weights {
            check("rollout_is_weights", vec![b, t], x.dims().to_vec())?;
        }
        Ok(())
    }
}

/// [`self_distillation_loss`] after checking the batch's shapes.
///
/// # Errors
/// [`ShapeError`] when a tensor does not match `student_logits`.
pub fn try_self_distillation_loss<B: LossBackend>(
    batch: DistillationBatch<B>,
    cfg: &SdpoConfig,
) -> Result<DistillationOutput<B>, ShapeError> {
    batch.check_shapes()?;
    Ok(self_distillation_loss(batch, cfg))
}

/// The SDPO self-distillation loss, equal to the reference's
/// `compute_self_distillation_loss` followed by `agg_loss`.
///
/// The support, divergence, importance clip and aggregation come from `cfg`
/// ([`SdpoConfig::support`], [`SdpoConfig::divergence`], `is_clip`,
/// `loss_agg_mode`). Tensor shapes must agree (see
/// [`try_self_distillation_loss`] for a checked call); Burn panics otherwise.
/// The backend's fused kernels compute the per-token divergence where it has
/// them and `cfg.fused_loss` is on ([`fused`]).
///
/// # Shapes
/// See [`DistillationBatch`]; the loss is `[1]`.
pub fn self_distillation_loss<B: LossBackend>(
    batch: DistillationBatch<B>,
    cfg: &SdpoConfig,
) -> DistillationOutput<B> {
    let DistillationBatch {
        student_logits,
        teacher_logits,
        response_ids,
        response_mask,
        old_log_probs,
        self_distillation_mask,
        rollout_is_weights,
    } = batch;
    let teacher_logits = teacher_logits.detach();

    let loss_mask = match self_distillation_mask {
        Some(m) => response_mask * m.unsqueeze_dim::<2>(1),
        None => response_mask,
    };

    let fused = match cfg.fused_loss {
        true => fused_per_token(&student_logits, &teacher_logits, &response_ids, cfg),
        false => None,
    };
    let (mut per_token_loss, student_token_lp) = match fused {
        Some(fused) => fused,
        None => composite_per_token(student_logits, teacher_logits, response_ids, cfg),
    };

    let weights = match (cfg.is_clip, old_log_probs) {
        (Some(clip), Some(old)) => importance_weights(student_token_lp.clone(), old, clip),
        _ => student_token_lp.ones_like(),
    };
    per_token_loss = per_token_loss * weights.clone();
    if let Some(w) = rollout_is_weights {
        per_token_loss = per_token_loss * w;
    }

    let loss = aggregate(per_token_loss.clone(), loss_mask.clone(), cfg.loss_agg_mode);
    DistillationOutput {
        loss,
        per_token_loss,
        loss_mask,
        student_log_probs: student_token_lp.detach(),
        importance_weights: weights,
    }
}

/// The per-token divergence and the student's log-probabilities of the
/// response tokens from the backend's fused kernel, or `None` when it has
/// none for these tensors.
fn fused_per_token<B: LossBackend>(
    student_logits: &Tensor<B, 3>,
    teacher_logits: &Tensor<B, 3>,
    response_ids: &Tensor<B, 2, Int>,
    cfg: &SdpoConfig,
) -> Option<(Tensor<B, 2>, Tensor<B, 2>)> {
    let [batch, len, _] = student_logits.dims();
    let out = B::fused_distillation(
        student_logits.clone().into_primitive().tensor(),
        teacher_logits.clone().into_primitive().tensor(),
        response_ids.clone().reshape([batch * len]).into_primitive(),
        FusedLoss {
            support: cfg.support(),
            divergence: cfg.divergence(),
        },
    )?;
    let rows = |x| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(x)).reshape([batch, len]);
    Some((rows(out.loss), rows(out.token_log_probs)))
}

/// The per-token divergence and the student's log-probabilities of the
/// response tokens from composite tensor operations (any backend).
fn composite_per_token<B: Backend>(
    student_logits: Tensor<B, 3>,
    teacher_logits: Tensor<B, 3>,
    response_ids: Tensor<B, 2, Int>,
    cfg: &SdpoConfig,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    // One normalizer per tensor serves every log-probability read from it:
    // each is a few full passes over `[batch, len, vocab]`.
    let student_norm = LogNormalizer::new(&student_logits);
    let student_token_lp =
        student_norm.token_log_probs(student_logits.clone(), response_ids.clone());
    let per_token = match cfg.support() {
        DistillationSupport::SampledToken => {
            let teacher_token_lp = token_log_probs(teacher_logits, response_ids);
            let log_ratio = (student_token_lp.clone() - teacher_token_lp).detach();
            log_ratio * student_token_lp.clone()
        }
        support => {
            let (student, teacher) = normalized_support_log_probs(
                student_logits,
                &student_norm,
                teacher_logits,
                support,
            );
            divergence_terms(student, teacher, cfg.divergence())
                .sum_dim(2)
                .squeeze_dim::<2>(2)
        }
    };
    (per_token, student_token_lp)
}

/// Student and (detached) teacher log-probabilities over a distribution
/// support: the student's top-k (with tail bucket or renormalized, the teacher
/// gathered at the student's indices) or the full vocabulary.
///
/// # Shapes
/// logits `[batch, len, V]` → `[batch, len, K]` with `K = k + 1`, `k` or `V`.
pub fn support_log_probs<B: Backend>(
    student_logits: Tensor<B, 3>,
    teacher_logits: Tensor<B, 3>,
    support: DistillationSupport,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let norm = LogNormalizer::new(&student_logits);
    normalized_support_log_probs(student_logits, &norm, teacher_logits, support)
}

/// [`support_log_probs`] with the student's normalizer already computed.
fn normalized_support_log_probs<B: Backend>(
    student_logits: Tensor<B, 3>,
    student_norm: &LogNormalizer<B, 3>,
    teacher_logits: Tensor<B, 3>,
    support: DistillationSupport,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let teacher_logits = teacher_logits.detach();
    match support {
        DistillationSupport::TopKTail(k) | DistillationSupport::TopKRenormalized(k) => {
            let indices = topk_indices(student_logits.clone().detach(), k);
            let student = student_norm.log_probs(student_logits.gather(2, indices.clone()));
            let teacher = gathered_log_probs(teacher_logits, indices);
            if matches!(support, DistillationSupport::TopKTail(_)) {
                (
                    tail_bucket::with_tail_bucket(student),
                    tail_bucket::with_tail_bucket(teacher),
                )
            } else {
                (
                    tail_bucket::renormalized(student),
                    tail_bucket::renormalized(teacher),
                )
            }
        }
        DistillationSupport::FullVocabulary | DistillationSupport::SampledToken => (
            student_norm.log_probs(student_logits),
            log_softmax(teacher_logits),
        ),
    }
}
