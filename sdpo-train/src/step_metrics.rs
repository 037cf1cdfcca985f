//! [`StepMetrics`]: what one training step measured, as typed fields, written out under the
//! names of [`sdpo_core::metrics`] (the reference's where it has one).

use sdpo_core::metrics as names;
use sdpo_core::reprompt::RepromptMetrics;

use crate::metrics_log::Metrics;
use crate::phase_clock::PhaseTime;
use crate::policy::StepItem;
use crate::reward::{RewardSummary, Scored};
use crate::teacher_probe::ProbeReport;
use crate::updater::UpdateOutcome;

/// Wall-clock and CPU time of each phase of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTimes {
    /// Sampling the completions.
    pub rollout: PhaseTime,
    /// Scoring them.
    pub reward: PhaseTime,
    /// Teacher forwards and the teacher update.
    pub teacher: PhaseTime,
    /// Student forwards and backwards (old log-probs included).
    pub student: PhaseTime,
    /// Gradient norms and optimizer updates.
    pub update: PhaseTime,
    /// The teacher probe (not part of `step`).
    pub probe: PhaseTime,
    /// The whole step.
    pub step: PhaseTime,
}

/// Statistics of the step's rewards.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardStats {
    /// Mean weighted reward.
    pub mean: f64,
    /// Its (population) standard deviation.
    pub std: f64,
    /// Smallest reward.
    pub min: f64,
    /// Largest reward.
    pub max: f64,
    /// Fraction of groups whose samples all got the same reward.
    pub flat_group_fraction: f64,
    /// Failures and each reward's mean unweighted score.
    pub summary: RewardSummary,
}

impl Default for RewardStats {
    fn default() -> Self {
        Self::of(&[], &[])
    }
}

impl RewardStats {
    /// The statistics of `scored`, sample `i` belonging to group `groups[i]`.
    pub fn of(scored: &[Scored], groups: &[usize]) -> Self {
        let scores: Vec<f64> = scored.iter().map(|s| s.score).collect();
        let (mean, std) = mean_std(&scores);
        let group_count = groups.iter().max().map_or(0, |g| g + 1);
        let flat_groups = (0..group_count)
            .filter(|&g| {
                let mut in_group = groups.iter().zip(&scores).filter(|(gi, _)| **gi == g);
                match in_group.next() {
                    Some((_, first)) => in_group.all(|(_, s)| s == first),
                    None => false,
                }
            })
            .count();
        Self {
            mean,
            std,
            min: scores.iter().copied().fold(f64::INFINITY, f64::min),
            max: scores.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            flat_group_fraction: flat_groups as f64 / group_count.max(1) as f64,
            summary: RewardSummary::of(scored),
        }
    }
}

/// Statistics of the step's responses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResponseStats {
    /// Mean length in tokens.
    pub mean_len: f64,
    /// Longest, in tokens.
    pub max_len: usize,
    /// Tokens generated in all.
    pub tokens: usize,
    /// Fraction that hit `max_new_tokens` without a stop token.
    pub truncated_fraction: f64,
}

impl ResponseStats {
    /// The statistics of the responses `tokens`, `stopped[i]` saying whether response `i`
    /// ended with a stop id.
    pub fn of(tokens: &[Vec<u32>], stopped: &[bool]) -> Self {
        let total: usize = tokens.iter().map(Vec::len).sum();
        let n = tokens.len().max(1) as f64;
        Self {
            mean_len: total as f64 / n,
            max_len: tokens.iter().map(Vec::len).max().unwrap_or(0),
            tokens: total,
            truncated_fraction: stopped.iter().filter(|s| !**s).count() as f64 / n,
        }
    }
}

/// Everything one step measured.
#[derive(Debug, Clone, Default)]
pub struct StepMetrics {
    /// Steps completed (1 after the first).
    pub step: usize,
    /// The updates: per-pass scalars, gradient norms, skips, learning rate.
    pub update: UpdateOutcome,
    /// The rewards.
    pub rewards: RewardStats,
    /// The responses.
    pub responses: ResponseStats,
    /// The six self-distillation metrics of the reprompt plan.
    pub reprompt: RepromptMetrics,
    /// Mean and standard deviation of the GRPO advantages, when that term is on.
    pub advantages: Option<(f64, f64)>,
    /// Student forward passes (graph passes and old log-probs).
    pub student_forwards: usize,
    /// Consecutive steps without a teacher signal, and with flat rewards.
    pub health: (usize, usize),
    /// Seconds per phase.
    pub times: PhaseTimes,
    /// The teacher probe's readings, on probe steps.
    pub probe: Option<ProbeReport>,
}

impl StepMetrics {
    /// The metrics by name, as logged to `metrics.jsonl`.
    pub fn to_metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        let mut put = |name: &str, value: f64| {
            m.insert(name.to_string(), value);
        };
        let items = &self.update.items;
        let pass_mean = |f: fn(&StepItem) -> Option<f64>| {
            let v: Vec<f64> = items.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| mean_std(&v).0)
        };
        put(names::STEP, self.step as f64);
        put(names::LOSS, pass_mean(|i| Some(i.loss)).unwrap_or(f64::NAN));
        for (name, value) in [
            (names::LOSS_DISTILLATION, pass_mean(|i| i.distillation_loss)),
            (names::LOSS_POLICY, pass_mean(|i| i.policy_loss)),
            (names::CLIP_FRACTION, pass_mean(|i| i.clip_fraction)),
            (names::IS_WEIGHT_MEAN, pass_mean(|i| i.mean_is_weight)),
            (
                names::ROLLOUT_IS_WEIGHT_MEAN,
                pass_mean(|i| i.mean_rollout_is_weight),
            ),
            (names::ENTROPY, pass_mean(|i| i.entropy)),
            (names::TEACHER_KL, pass_mean(|i| i.teacher_kl)),
            (names::ADVANTAGE_MEAN, self.advantages.map(|a| a.0)),
            (names::ADVANTAGE_STD, self.advantages.map(|a| a.1)),
        ] {
            if let Some(v) = value {
                put(name, v);
            }
        }
        put(names::GRAD_NORM, mean_std(&self.update.grad_norms).0);
        put(names::SKIPPED_UPDATES, self.update.skipped as f64);
        put(names::LEARNING_RATE, self.update.learning_rate);
        put(names::STUDENT_FORWARDS, self.student_forwards as f64);
        let r = &self.rewards;
        put(names::REWARD_MEAN, r.mean);
        put(names::REWARD_STD, r.std);
        put(names::REWARD_MIN, r.min);
        put(names::REWARD_MAX, r.max);
        put(names::FLAT_GROUP_FRACTION, r.flat_group_fraction);
        // `reward/failures`, `reward/NAME/mean`, `reward/NAME/failures`.
        for (name, value) in r.summary.metrics() {
            put(&name, value);
        }
        put(names::RESPONSE_LENGTH, self.responses.mean_len);
        put(names::RESPONSE_LENGTH_MAX, self.responses.max_len as f64);
        put(names::TRUNCATED_FRACTION, self.responses.truncated_fraction);
        put(
            names::TOKENS_PER_SECOND,
            self.responses.tokens as f64 / self.times.step.wall.max(1e-9),
        );
        for (name, value) in self.reprompt.named() {
            put(name, value);
        }
        let t = &self.times;
        for (time, cores, phase) in [
            (names::TIME_ROLLOUT, names::CORES_ROLLOUT, t.rollout),
            (names::TIME_REWARD, names::CORES_REWARD, t.reward),
            (names::TIME_TEACHER, names::CORES_TEACHER, t.teacher),
            (names::TIME_STUDENT, names::CORES_STUDENT, t.student),
            (names::TIME_UPDATE, names::CORES_UPDATE, t.update),
            (names::TIME_STEP, names::CORES_STEP, t.step),
        ] {
            put(time, phase.wall);
            if let Some(c) = phase.cores() {
                put(cores, c);
            }
        }
        if let Some(probe) = &self.probe {
            for (name, value) in probe.named() {
                put(name, value);
            }
            put(names::TIME_PROBE, t.probe.wall);
            if let Some(c) = t.probe.cores() {
                put(names::CORES_PROBE, c);
            }
        }
        put(names::STEPS_WITHOUT_TEACHER_SIGNAL, self.health.0 as f64);
        put(names::STEPS_WITH_FLAT_REWARDS, self.health.1 as f64);
        m
    }
}

/// Mean and population standard deviation; NaN for no values.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::{ComponentScore, RewardError, RewardOutput};

    fn sample(score: f64, failed: bool, rewards: &[(&str, Option<f64>)]) -> Scored {
        Scored {
            score,
            feedback: None,
            error: None,
            failed,
            components: rewards
                .iter()
                .map(|(name, s)| ComponentScore {
                    name: name.to_string(),
                    weight: 1.0,
                    outcome: s
                        .map(RewardOutput::new)
                        .ok_or(RewardError::NonFinite { score: f64::NAN }),
                })
                .collect(),
        }
    }

    #[test]
    fn reward_stats_per_name_flat_groups_and_extremes() {
        let scored = [
            sample(1.0, false, &[("a", Some(1.0)), ("b", Some(0.0))]),
            sample(1.0, false, &[("a", Some(1.0)), ("b", Some(0.0))]),
            sample(0.0, true, &[("a", None), ("b", Some(0.5))]),
            sample(0.5, false, &[("a", Some(0.0)), ("b", Some(1.0))]),
        ];
        let stats = RewardStats::of(&scored, &[0, 0, 1, 1]);
        assert_eq!(
            (stats.min, stats.max, stats.summary.failures),
            (0.0, 1.0, 1)
        );
        assert_eq!(stats.mean, 0.625);
        // group 0 is flat (1, 1), group 1 is not (0, 0.5)
        assert_eq!(stats.flat_group_fraction, 0.5);
        let by_name: Vec<(&str, f64)> = stats
            .summary
            .rewards
            .iter()
            .map(|r| (r.name.as_str(), r.mean))
            .collect();
        assert_eq!(by_name, vec![("a", 2.0 / 3.0), ("b", 0.375)]);
    }

    #[test]
    fn response_stats_count_truncations() {
        let stats = ResponseStats::of(&[vec![1, 2, 3], vec![4]], &[false, true]);
        assert_eq!(stats.mean_len, 2.0);
        assert_eq!(stats.max_len, 3);
        assert_eq!(stats.truncated_fraction, 0.5);
    }

    #[test]
    fn every_metric_has_its_name() {
        let m = StepMetrics {
            step: 3,
            advantages: Some((0.0, 1.0)),
            ..StepMetrics::default()
        }
        .to_metrics();
        for name in [
            names::STEP,
            names::LOSS,
            names::GRAD_NORM,
            names::REWARD_MEAN,
            names::FLAT_GROUP_FRACTION,
            names::TRUNCATED_FRACTION,
            names::ADVANTAGE_STD,
            names::TIME_STEP,
            names::REPROMPT_SAMPLE_FRACTION,
        ] {
            assert!(m.contains_key(name), "{name}");
        }
        assert_eq!(m[names::STEP], 3.0);
    }
}
