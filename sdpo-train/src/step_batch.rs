//! [`StepBatch`]: a generation batch as the training passes read it — student and teacher
//! inputs, the loss mask, the self-distillation mask, old and rollout log-probs, GRPO
//! advantages — on the inner backend, cut into one [`TrainBatch`] per micro-batch.

use std::sync::Arc;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::policy::{StepSettings, TeacherSignal, TrainBatch};
use crate::rollout::Rollout;
use crate::teacher_inputs::TeacherInputs;
use crate::updater::{index_tensor, select_mask_rows};

/// Every per-sample tensor of a step, `n` rows each.
#[derive(Debug, Clone)]
pub struct StepBatch<B: Backend> {
    /// `[prompt | response]`, `[n, P + R]`, and its mask.
    pub student: (Tensor<B, 2, Int>, Tensor<B, 2, Bool>),
    /// `[teacher prompt | response]`, `[n, T + R]`, and its mask.
    pub teacher: (Tensor<B, 2, Int>, Tensor<B, 2, Bool>),
    /// The sampled tokens, `[n, R]`.
    pub response_ids: Tensor<B, 2, Int>,
    /// 1.0 on response tokens that count in the loss, `[n, R]`.
    pub loss_mask: Tensor<B, 2>,
    /// 1.0 for samples with a teacher signal, `[n]`.
    pub self_distillation_mask: Tensor<B, 1>,
    /// The log-probs the rollout drew with, `[n, R]`.
    pub rollout_log_probs: Tensor<B, 2>,
    /// Old log-probs taken before the first update (off-policy steps only), `[n, R]`.
    pub old_log_probs: Option<Tensor<B, 2>>,
    /// GRPO advantages broadcast over tokens (when that term is on), `[n, R]`.
    pub advantages: Option<Tensor<B, 2>>,
}

impl<B: Backend> StepBatch<B> {
    /// The batch of `rollout` with its teacher inputs; with `mask_truncated` the responses
    /// that hit the length limit count nowhere in the loss.
    pub fn new(
        rollout: &Rollout<B>,
        teacher: &TeacherInputs<B>,
        mask_truncated: bool,
        device: &Device<B>,
    ) -> Self {
        let generation = &rollout.generation;
        let [n, len] = generation.response_mask.dims();
        let loss_mask = match mask_truncated {
            false => generation.response_mask.clone(),
            true => {
                let keep: Vec<f32> = generation
                    .stopped
                    .iter()
                    .map(|&s| f32::from(u8::from(s)))
                    .collect();
                let keep = Tensor::<B, 1>::from_data(TensorData::new(keep, [n]), device);
                generation.response_mask.clone() * keep.reshape([n, 1]).expand([n, len])
            }
        };
        Self {
            student: rollout.student_inputs(),
            teacher: (teacher.ids.clone(), teacher.mask.clone()),
            response_ids: generation.response_ids.clone(),
            loss_mask,
            self_distillation_mask: teacher.self_distillation_mask.clone(),
            rollout_log_probs: generation.log_probs.clone(),
            old_log_probs: None,
            advantages: None,
        }
    }

    /// Per-sample advantages, broadcast over the response tokens.
    pub fn with_advantages(mut self, advantages: &[f64], device: &Device<B>) -> Self {
        let [n, len] = self.loss_mask.dims();
        let values: Vec<f32> = advantages.iter().map(|&a| a as f32).collect();
        self.advantages = Some(
            Tensor::<B, 1>::from_data(TensorData::new(values, [n]), device)
                .reshape([n, 1])
                .expand([n, len]),
        );
        self
    }

    /// The padded response length `R`.
    pub fn response_len(&self) -> usize {
        self.loss_mask.dims()[1]
    }

    /// The teacher's input rows of `samples`.
    pub fn teacher_rows(&self, samples: &[usize]) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
        let idx = index_tensor::<B>(samples, &self.loss_mask.device());
        (
            self.teacher.0.clone().select(0, idx.clone()),
            select_mask_rows(self.teacher.1.clone(), idx),
        )
    }

    /// The training pass over rows `samples`, lifted to the autodiff backend `A`.
    pub fn pass<A: AutodiffBackend<InnerBackend = B>>(
        &self,
        samples: &[usize],
        teacher: TeacherSignal<A>,
        settings: Arc<StepSettings>,
    ) -> TrainBatch<A> {
        let idx = index_tensor::<B>(samples, &self.loss_mask.device());
        let rows = |t: &Tensor<B, 2>| Tensor::<A, 2>::from_inner(t.clone().select(0, idx.clone()));
        TrainBatch {
            ids: Tensor::from_inner(self.student.0.clone().select(0, idx.clone())),
            mask: Tensor::from_inner(select_mask_rows(self.student.1.clone(), idx.clone())),
            response_ids: Tensor::from_inner(self.response_ids.clone().select(0, idx.clone())),
            response_mask: rows(&self.loss_mask),
            self_distillation_mask: Tensor::from_inner(
                self.self_distillation_mask.clone().select(0, idx.clone()),
            ),
            teacher,
            old_log_probs: self.old_log_probs.as_ref().map(rows),
            advantages: self.advantages.as_ref().map(rows),
            rollout_log_probs: Some(rows(&self.rollout_log_probs)),
            settings,
        }
    }
}
