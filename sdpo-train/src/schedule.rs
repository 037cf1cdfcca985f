//! Warmup-then-decay learning-rate schedule as a burn-optim [`LrScheduler`].
//!
//! Burn's composed scheduler multiplies or averages its parts rather than chaining them, so
//! "linear warmup, then cosine to zero" (TRL's `get_scheduler`) is written here once. Its whole
//! state is the step count, which goes into checkpoints as the scheduler record.

use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::tensor::backend::Backend;

use crate::config::{ScheduleConfig, ScheduleKind};

/// Linear warmup from 0 over `warmup` steps, then constant, linear or cosine decay reaching 0
/// at `total` steps (as Hugging Face's `get_*_schedule_with_warmup`).
#[derive(Debug, Clone)]
pub struct WarmupSchedule {
    peak: f64,
    warmup: usize,
    total: usize,
    kind: ScheduleKind,
    step: usize,
}

impl WarmupSchedule {
    /// A schedule over `total` steps peaking at `peak` (the trainer advances it once per
    /// training step).
    pub fn new(config: &ScheduleConfig, peak: f64, total: usize) -> Self {
        Self {
            peak,
            warmup: config.warmup_steps,
            total: total.max(1),
            kind: config.kind,
            step: 0,
        }
    }

    /// Optimizer steps taken so far.
    pub fn steps_taken(&self) -> usize {
        self.step
    }

    /// The learning rate of (0-based) optimizer step `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * step as f64 / self.warmup.max(1) as f64;
        }
        let decay_steps = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / decay_steps).min(1.0);
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Linear => self.peak * (1.0 - progress),
            ScheduleKind::Cosine => {
                self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

impl LrScheduler for WarmupSchedule {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        let lr = self.lr_at(self.step);
        self.step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.step = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind, warmup: usize, total: usize) -> WarmupSchedule {
        WarmupSchedule::new(
            &ScheduleConfig {
                kind,
                warmup_steps: warmup,
            },
            1.0,
            total,
        )
    }

    #[test]
    fn warmup_then_shapes_match_hugging_face() {
        let mut s = schedule(ScheduleKind::Linear, 2, 6);
        let lrs: Vec<f64> = (0..7).map(|_| s.step()).collect();
        assert_eq!(lrs, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]);
        let s = schedule(ScheduleKind::Cosine, 0, 4);
        assert!((s.lr_at(2) - 0.5).abs() < 1e-12);
        assert!(s.lr_at(4).abs() < 1e-12);
        let s = schedule(ScheduleKind::Constant, 1, 4);
        assert_eq!((s.lr_at(0), s.lr_at(3)), (0.0, 1.0));
    }

    #[test]
    fn record_restores_the_position() {
        type B = burn::backend::NdArray<f32>;
        let mut a = schedule(ScheduleKind::Cosine, 1, 10);
        a.step();
        a.step();
        let rec = LrScheduler::to_record::<B>(&a);
        let mut b = LrScheduler::load_record::<B>(schedule(ScheduleKind::Cosine, 1, 10), rec);
        assert_eq!(a.step(), b.step());
    }
}
