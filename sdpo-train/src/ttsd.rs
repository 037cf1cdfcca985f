//! Test-time self-distillation (the paper's third setting): for one hard question, repeat
//! {sample N, score; if none succeeds, reprompt with the verifier's feedback and take an SDPO
//! step on that question} until a sample succeeds or the budget is spent, and report
//! discovery@k — whether a correct answer had been found within the first k attempts.

use crate::TrainBackend;
use serde::{Deserialize, Serialize};

use crate::trainer::{SdpoTrainer, TrainError};

/// Budget of a test-time self-distillation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsdConfig {
    /// Samples drawn per round. Default 8.
    pub samples_per_round: usize,
    /// Rounds (one SDPO step each when nothing succeeded). Default 16.
    pub max_rounds: usize,
}

impl Default for TtsdConfig {
    fn default() -> Self {
        Self {
            samples_per_round: 8,
            max_rounds: 16,
        }
    }
}

/// The outcome of a test-time self-distillation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TtsdReport {
    /// The attempt (1-based, counting every sample drawn) that first succeeded.
    pub first_success: Option<usize>,
    /// Rounds run.
    pub rounds: usize,
    /// Samples drawn in all.
    pub attempts: usize,
    /// Success fraction of each round's samples.
    pub round_success: Vec<f64>,
    /// Mean reward of each round's samples.
    pub round_reward: Vec<f64>,
}

impl TtsdReport {
    /// discovery@k: a success was found within the first `k` attempts.
    pub fn discovered_within(&self, k: usize) -> bool {
        self.first_success.is_some_and(|a| a <= k)
    }

    /// `(k, discovered)` at every round boundary `k = N, 2N, …`.
    pub fn discovery_curve(&self, samples_per_round: usize) -> Vec<(usize, bool)> {
        (1..=self.rounds)
            .map(|r| {
                let k = r * samples_per_round;
                (k, self.discovered_within(k))
            })
            .collect()
    }
}

/// Runs test-time self-distillation on dataset row `row` of the trainer's dataset. Each round
/// is one [`SdpoTrainer::step_on_rows`] on that row alone, so the trainer's configuration
/// (feedback reprompting, teacher mode, learning rate) applies as in training; the run stops
/// at the first round that contains a success (success = score ≥ `success_reward_threshold`).
///
/// # Errors
/// As [`SdpoTrainer::step_on_rows`].
pub fn test_time_self_distillation<B: TrainBackend>(
    trainer: &mut SdpoTrainer<B>,
    row: usize,
    cfg: &TtsdConfig,
) -> Result<TtsdReport, TrainError> {
    let n = cfg.samples_per_round.max(1);
    let threshold = trainer.config().sdpo.success_reward_threshold;
    let mut report = TtsdReport {
        first_success: None,
        rounds: 0,
        attempts: 0,
        round_success: Vec::new(),
        round_reward: Vec::new(),
    };
    for _ in 0..cfg.max_rounds {
        let step = trainer.step_on_rows(&[row], n)?;
        report.rounds += 1;
        let scores: Vec<f64> = step.samples.iter().map(|s| s.score).collect();
        let successes = scores.iter().filter(|&&s| s >= threshold).count();
        report.round_success.push(successes as f64 / n as f64);
        report
            .round_reward
            .push(scores.iter().sum::<f64>() / n as f64);
        if let Some(i) = scores.iter().position(|&s| s >= threshold) {
            report.first_success = Some(report.attempts + i + 1);
            report.attempts += n;
            break;
        }
        report.attempts += n;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_curve_counts_attempts() {
        let r = TtsdReport {
            first_success: Some(11),
            rounds: 2,
            attempts: 16,
            round_success: vec![0.0, 0.125],
            round_reward: vec![0.0, 0.125],
        };
        assert_eq!(r.discovery_curve(8), vec![(8, false), (16, true)]);
        assert!(!r.discovered_within(10) && r.discovered_within(11));
    }
}
