//! [`Updater`]: a training step's optimizer updates — the generation batch split into
//! mini-batches (one optimizer update each) and micro-batches (gradient accumulation), the
//! gradient norm and clipping, skipping an update whose loss or norm is not finite, the
//! optimizer and the learning-rate schedule.
//!
//! Generic over Burn's [`Optimizer`] and [`LrScheduler`]; the trainer's defaults are AdamW and
//! [`WarmupSchedule`]. The schedule advances once per training step: every update of a step
//! uses the same learning rate (verl steps its scheduler once per `update_policy`).

use std::sync::Arc;

use crate::TrainBackend;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use sdpo_models::arch::CausalDecoder;
use sdpo_models::scoring::{response_log_probs, response_logits};

use crate::collective::gradients::all_reduce_gradients;
use crate::collective::Collective;
use crate::error::TrainError;
use crate::grad_norm::{clip_global_norm, global_norm};
use crate::phase_clock::{PhaseTime, Span};
use crate::policy::{Policy, StepItem};

/// How a generation batch is cut into updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSplit {
    /// Optimizer updates per pass over the batch.
    pub mini_batches: usize,
    /// Samples per forward/backward pass (0 = a whole mini-batch).
    pub micro_batch_size: usize,
    /// Passes over the batch.
    pub epochs: usize,
}

/// What the updates of one training step did.
#[derive(Debug, Clone, Default)]
pub struct UpdateOutcome {
    /// One entry per forward/backward pass, in order.
    pub items: Vec<StepItem>,
    /// The global gradient norm of each mini-batch (before clipping).
    pub grad_norms: Vec<f64>,
    /// Mini-batches whose update was skipped (non-finite loss or gradient norm).
    pub skipped: usize,
    /// The learning rate of the step.
    pub learning_rate: f64,
    /// Time spent on gradient norms and optimizer updates (the gradient all-reduce
    /// included).
    pub update_time: PhaseTime,
    /// Seconds spent in the gradient all-reduce (data-parallel ranks only).
    pub reduce_seconds: f64,
    /// Bytes this rank all-reduced for the gradients (data-parallel ranks only).
    pub reduced_bytes: usize,
}

impl UpdateOutcome {
    /// Optimizer updates applied (mini-batches not skipped).
    pub fn applied(&self) -> usize {
        self.grad_norms.len() - self.skipped
    }
}

/// The optimizer, its schedule and the batch split of a run.
#[derive(Clone)]
pub struct Updater<B: TrainBackend, O, S> {
    optimizer: O,
    schedule: S,
    max_grad_norm: Option<f64>,
    mini_batches: usize,
    micro_batch_size: usize,
    epochs: usize,
    /// The data-parallel ranks the gradients are summed over (`None`: one process).
    collective: Option<Arc<dyn Collective<B::InnerBackend>>>,
}

impl<B, O, S> Updater<B, O, S>
where
    B: TrainBackend,
    O: Optimizer<Policy<B>, B>,
    S: LrScheduler,
{
    /// An updater splitting each generation batch into `batches.mini_batches` updates of
    /// micro-batches of `batches.micro_batch_size` samples (0 = the whole mini-batch), all
    /// of them `batches.epochs` times, clipping the global gradient norm at `max_grad_norm`.
    pub fn new(optimizer: O, schedule: S, max_grad_norm: Option<f64>, batches: BatchSplit) -> Self {
        Self {
            optimizer,
            schedule,
            max_grad_norm,
            mini_batches: batches.mini_batches,
            micro_batch_size: batches.micro_batch_size,
            epochs: batches.epochs,
            collective: None,
        }
    }

    /// Sums every mini-batch's gradients over the ranks of `collective` before the norm, the
    /// clip and the optimizer (which then take the same step on every rank).
    pub fn set_collective(&mut self, collective: Arc<dyn Collective<B::InnerBackend>>) {
        self.collective = (collective.world_size() > 1).then_some(collective);
    }

    /// A batch of `n` samples as mini-batches of micro-batches (sample indices).
    pub fn split(&self, n: usize) -> Vec<Vec<Vec<usize>>> {
        let micro = match self.micro_batch_size {
            0 => n.max(1),
            m => m,
        };
        split_even(n, self.mini_batches)
            .into_iter()
            .map(|mini| mini.chunks(micro).map(<[usize]>::to_vec).collect())
            .collect()
    }

    /// Whether a batch of `n` samples is updated once (on-policy): then each pass's own
    /// detached log-probs are the old log-probs and no extra forward is needed.
    pub fn on_policy(&self, n: usize) -> bool {
        self.epochs <= 1 && split_even(n, self.mini_batches).len() == 1
    }

    /// Runs the step's updates on `policy`: for each mini-batch, `pass(policy, samples,
    /// loss_scale)` per micro-batch (its scalars and gradients, the loss already multiplied by
    /// `loss_scale` = 1 / micro-batches), then one optimizer update with the accumulated
    /// gradients (summed over the ranks first, when data-parallel) unless the loss or their
    /// norm is not finite (on any rank).
    ///
    /// # Errors
    /// The first error of `pass` or of the gradient all-reduce; updates already applied stay
    /// applied.
    pub fn update(
        &mut self,
        policy: &mut Policy<B>,
        n: usize,
        mut pass: impl FnMut(
            &Policy<B>,
            &[usize],
            f64,
        ) -> Result<(StepItem, GradientsParams), TrainError>,
    ) -> Result<UpdateOutcome, TrainError> {
        let mut outcome = UpdateOutcome {
            learning_rate: self.schedule.step(),
            ..UpdateOutcome::default()
        };
        let plan = self.split(n);
        for mini in (0..self.epochs.max(1)).flat_map(|_| plan.iter()) {
            let loss_scale = 1.0 / mini.len() as f64;
            let mut accumulator = GradientsAccumulator::<Policy<B>>::new();
            let mut finite = true;
            for micro in mini {
                let (item, grads) = pass(policy, micro, loss_scale)?;
                finite &= item.loss.is_finite();
                outcome.items.push(item);
                accumulator.accumulate(policy, grads);
            }
            let span = Span::start();
            let mut grads = accumulator.grads();
            if let Some(collective) = &self.collective {
                let (all_finite, stats) = all_reduce_gradients::<B, _>(
                    policy,
                    &mut grads,
                    finite,
                    collective.as_ref(),
                    "gradients",
                )?;
                finite = all_finite;
                outcome.reduce_seconds += stats.seconds;
                outcome.reduced_bytes += stats.bytes;
            }
            let norm = match self.max_grad_norm {
                Some(max) => clip_global_norm::<B, _>(policy, &mut grads, max),
                None => global_norm::<B, _>(policy, &grads),
            };
            outcome.grad_norms.push(norm);
            if finite && norm.is_finite() {
                *policy = self
                    .optimizer
                    .step(outcome.learning_rate, policy.clone(), grads);
            } else {
                outcome.skipped += 1;
                tracing::warn!("non-finite loss or gradient norm: optimizer update skipped");
            }
            outcome.update_time += span.elapsed();
        }
        Ok(outcome)
    }

    /// The optimizer's state, for checkpoints.
    pub fn optimizer_record(&self) -> O::Record {
        self.optimizer.to_record()
    }

    /// The schedule's state, for checkpoints.
    pub fn schedule_record(&self) -> S::Record<B> {
        self.schedule.to_record::<B>()
    }

    /// Restores both states (a checkpoint's).
    pub fn load_records(&mut self, optimizer: O::Record, schedule: S::Record<B>) {
        self.optimizer = self.optimizer.clone().load_record(optimizer);
        self.schedule = self.schedule.clone().load_record::<B>(schedule);
    }
}

/// Log-probs of the responses under `model` before any update (no graph), one pass per
/// micro-batch of `passes`: the old log-probs of off-policy updates.
///
/// # Shapes
/// - `ids`, `mask`: `[n, P + R]`; `response_ids`: `[n, R]` → `[n, R]`
///
/// # Errors
/// [`TrainError::Scoring`] when the shapes disagree.
pub fn old_log_probs<B: Backend, M: CausalDecoder<B>>(
    model: &M,
    ids: &Tensor<B, 2, Int>,
    mask: &Tensor<B, 2, Bool>,
    response_ids: &Tensor<B, 2, Int>,
    passes: &[Vec<usize>],
    temperature: f64,
) -> Result<Tensor<B, 2>, TrainError> {
    let response_len = response_ids.dims()[1];
    let device = ids.device();
    let mut parts = Vec::with_capacity(passes.len());
    for samples in passes {
        let idx = index_tensor::<B>(samples, &device);
        let logits = response_logits(
            model,
            ids.clone().select(0, idx.clone()),
            select_mask_rows(mask.clone(), idx.clone()),
            response_len,
            Some(temperature),
        )?;
        parts.push(response_log_probs(
            logits,
            response_ids.clone().select(0, idx),
        ));
    }
    Ok(Tensor::cat(parts, 0))
}

/// `0..n` split into `parts` contiguous ranges whose sizes differ by at most one.
fn split_even(n: usize, parts: usize) -> Vec<Vec<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (p * n / parts..(p + 1) * n / parts).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .collect()
}

/// The indices as an int tensor.
pub fn index_tensor<B: Backend>(rows: &[usize], device: &Device<B>) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_data(TensorData::new(v, [rows.len()]), device)
}

/// Rows `rows` of a boolean mask. Selected through integers: burn-flex 0.21's `bool_select`
/// returns a tensor tagged `U8` instead of `Bool`, which its later boolean ops reject.
pub fn select_mask_rows<B: Backend>(
    mask: Tensor<B, 2, Bool>,
    rows: Tensor<B, 1, Int>,
) -> Tensor<B, 2, Bool> {
    mask.int().select(0, rows).equal_elem(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_every_sample_once() {
        assert_eq!(split_even(5, 2), vec![vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(split_even(3, 5).len(), 3);
    }
}
