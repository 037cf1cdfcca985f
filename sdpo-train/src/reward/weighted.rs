//! Several rewards with weights, evaluated in parallel, never failing.

use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use super::{Reward, RewardBuildError, RewardError, RewardInput, RewardOutput, FAILURES_METRIC};

/// A weighted sum of rewards (see [`Rewards::evaluate`]).
///
/// Built with [`Rewards::add`] / [`Rewards::add_named`] or from a config
/// with [`RewardConfig::build_all`](super::RewardConfig::build_all). Names are
/// unique; they label metrics and failure messages.
pub struct Rewards {
    components: Vec<Component>,
    parallelism: NonZeroUsize,
}

struct Component {
    name: String,
    weight: f64,
    reward: Box<dyn Reward>,
}

/// The outcome of one reward on one completion.
#[derive(Debug)]
pub struct ComponentScore {
    /// The reward's name.
    pub name: String,
    /// Its weight.
    pub weight: f64,
    /// Its output (feedback normalized: blank is `None`), or why it failed
    /// (including [`RewardError::Panicked`] and [`RewardError::NonFinite`]).
    pub outcome: Result<RewardOutput, RewardError>,
}

/// One completion's combined reward.
#[derive(Debug)]
pub struct Scored {
    /// `Σ weight · score` over the rewards, or 0 when [`Scored::failed`].
    pub score: f64,
    /// The rewards' feedback joined by blank lines, in the order the rewards
    /// were added. `None` when no reward gave any. A failed reward contributes
    /// nothing here: its error is not about the completion, so it never reaches
    /// the teacher's prompt (neither reference shows it); see [`Scored::error`].
    pub feedback: Option<String>,
    /// Why the sample [`failed`](Scored::failed), for logs: "reward `name`
    /// failed: error" per failed reward, joined by blank lines.
    pub error: Option<String>,
    /// Whether any reward failed (errored, panicked or returned a
    /// non-finite score), or the weighted sum overflowed.
    pub failed: bool,
    /// Each reward's outcome, in the order the rewards were added.
    pub components: Vec<ComponentScore>,
}

impl Scored {
    /// The failed rewards' names and errors.
    pub fn errors(&self) -> impl Iterator<Item = (&str, &RewardError)> {
        self.components
            .iter()
            .filter_map(|c| c.outcome.as_ref().err().map(|e| (c.name.as_str(), e)))
    }
}

impl Default for Rewards {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Rewards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewards")
            .field(
                "components",
                &self
                    .components
                    .iter()
                    .map(|c| (&c.name, c.weight))
                    .collect::<Vec<_>>(),
            )
            .field("parallelism", &self.parallelism)
            .finish()
    }
}

impl Rewards {
    /// No rewards yet; evaluating it scores every completion 0. Parallelism
    /// defaults to the number of CPUs.
    pub fn new() -> Self {
        Self {
            components: Vec::new(),
            parallelism: thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// Adds a reward under its own [`Reward::name`].
    ///
    /// # Errors
    /// [`RewardBuildError::Invalid`] for a non-finite weight,
    /// [`RewardBuildError::DuplicateName`] when the name is taken.
    pub fn add(self, reward: impl Reward + 'static, weight: f64) -> Result<Self, RewardBuildError> {
        let name = reward.name().to_string();
        self.add_named(name, reward, weight)
    }

    /// Adds a reward under another name (needed for two rewards of one kind).
    ///
    /// # Errors
    /// As [`Rewards::add`].
    pub fn add_named(
        mut self,
        name: impl Into<String>,
        reward: impl Reward + 'static,
        weight: f64,
    ) -> Result<Self, RewardBuildError> {
        let name = name.into();
        if !weight.is_finite() {
            return Err(RewardBuildError::Invalid {
                reward: name,
                field: "weight",
                value: weight.to_string(),
                reason: "a weight must be finite",
            });
        }
        if self.components.iter().any(|c| c.name == name) {
            return Err(RewardBuildError::DuplicateName { name });
        }
        self.components.push(Component {
            name,
            weight,
            reward: Box::new(reward),
        });
        Ok(self)
    }

    /// At most `threads` completions are scored at once (external commands
    /// may each take seconds).
    pub fn with_parallelism(mut self, threads: NonZeroUsize) -> Self {
        self.parallelism = threads;
        self
    }

    /// The number of completions scored at once.
    pub fn parallelism(&self) -> usize {
        self.parallelism.get()
    }

    /// Number of rewards.
    pub fn len(&self) -> usize {
        self.components.len()
    }

    /// Whether no reward was added.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// The rewards' names and weights, in order.
    pub fn weights(&self) -> impl Iterator<Item = (&str, f64)> {
        self.components.iter().map(|c| (c.name.as_str(), c.weight))
    }

    /// Scores every completion with every reward; one [`Scored`] per input,
    /// in input order. Never fails and never panics because of a reward:
    /// errors, panics and non-finite scores make that sample
    /// [`failed`](Scored::failed) with score 0 (a failure, whatever the
    /// success threshold is, as long as it is positive) and the error in its
    /// feedback. Completions are spread over up to
    /// [`parallelism`](Rewards::parallelism) threads.
    ///
    /// A panicking reward still prints the panic message through the process's
    /// panic hook.
    pub fn evaluate(&self, inputs: &[RewardInput<'_>]) -> Vec<Scored> {
        let _span = tracing::info_span!("reward", samples = inputs.len()).entered();
        let workers = self.parallelism.get().min(inputs.len());
        if workers <= 1 {
            return inputs.iter().map(|i| self.evaluate_one(i)).collect();
        }
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, Scored)> = thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(input) = inputs.get(i) else { break };
                            done.push((i, self.evaluate_one(input)));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| panic::resume_unwind(p)))
                .collect()
        });
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, s)| s).collect()
    }

    /// Scores one completion (see [`Rewards::evaluate`]).
    pub fn evaluate_one(&self, input: &RewardInput<'_>) -> Scored {
        let components: Vec<ComponentScore> = self
            .components
            .iter()
            .map(|c| ComponentScore {
                name: c.name.clone(),
                weight: c.weight,
                outcome: run_guarded(c.reward.as_ref(), input),
            })
            .collect();
        combine(components)
    }
}

/// Runs one reward, turning a panic or a non-finite score into an error.
fn run_guarded(reward: &dyn Reward, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
    // A reward that panics half-way may leave its own state inconsistent;
    // it is not called again for this sample, and its error is reported.
    let output =
        panic::catch_unwind(AssertUnwindSafe(|| reward.score(input))).map_err(|payload| {
            RewardError::Panicked {
                message: panic_message(payload.as_ref()),
            }
        })??;
    if !output.score.is_finite() {
        return Err(RewardError::NonFinite {
            score: output.score,
        });
    }
    Ok(output.normalized())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".into()
    }
}

fn combine(components: Vec<ComponentScore>) -> Scored {
    let mut feedback: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut failed = false;
    let mut sum = 0.0;
    for c in &components {
        match &c.outcome {
            Ok(out) => {
                sum += c.weight * out.score;
                feedback.extend(out.feedback.clone());
            }
            Err(e) => {
                failed = true;
                tracing::warn!(reward = %c.name, error = %e, "reward failed; the sample scores 0");
                errors.push(format!("reward `{}` failed: {e}", c.name));
            }
        }
    }
    if !failed && !sum.is_finite() {
        failed = true;
        tracing::warn!("the weighted sum of the rewards is not finite; the sample scores 0");
        errors.push("the weighted sum of the rewards is not finite".into());
    }
    Scored {
        score: if failed { 0.0 } else { sum },
        feedback: (!feedback.is_empty()).then(|| feedback.join("\n\n")),
        error: (!errors.is_empty()).then(|| errors.join("\n\n")),
        failed,
        components,
    }
}

/// Per-reward statistics of a batch (see [`RewardSummary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentSummary {
    /// The reward's name.
    pub name: String,
    /// Mean unweighted score over the completions it scored (0 if none).
    pub mean: f64,
    /// Completions it failed on.
    pub failures: usize,
}

/// Failure counts and per-reward means of a batch, for logging.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardSummary {
    /// Number of completions.
    pub samples: usize,
    /// Completions that [`failed`](Scored::failed) (the `reward/failures` metric).
    pub failures: usize,
    /// One entry per reward, in order.
    pub rewards: Vec<ComponentSummary>,
}

impl RewardSummary {
    /// Summarizes a batch of [`Rewards::evaluate`] results.
    pub fn of(scored: &[Scored]) -> Self {
        let names: Vec<&str> = scored
            .first()
            .map(|s| s.components.iter().map(|c| c.name.as_str()).collect())
            .unwrap_or_default();
        let rewards = names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let outcomes = scored.iter().filter_map(|s| s.components.get(k));
                let (mut sum, mut ok, mut failures) = (0.0, 0usize, 0usize);
                for c in outcomes {
                    match &c.outcome {
                        Ok(out) => {
                            sum += out.score;
                            ok += 1;
                        }
                        Err(_) => failures += 1,
                    }
                }
                ComponentSummary {
                    name: name.to_string(),
                    mean: if ok == 0 { 0.0 } else { sum / ok as f64 },
                    failures,
                }
            })
            .collect();
        Self {
            samples: scored.len(),
            failures: scored.iter().filter(|s| s.failed).count(),
            rewards,
        }
    }

    /// `(name, value)` pairs: `reward/failures`, then `reward/<name>/mean`
    /// and `reward/<name>/failures` for each reward.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut out = vec![(FAILURES_METRIC.to_string(), self.failures as f64)];
        for r in &self.rewards {
            out.push((format!("reward/{}/mean", r.name), r.mean));
            out.push((format!("reward/{}/failures", r.name), r.failures as f64));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Prompt;
    use crate::reward::reward_fn;
    use serde_json::Map;

    fn constant(name: &str, score: f64, feedback: &'static str) -> impl Reward {
        reward_fn(name, move |_| {
            Ok(RewardOutput::with_feedback(score, feedback))
        })
    }

    fn eval(rewards: &Rewards) -> Scored {
        let prompt = Prompt::from("q");
        let row = Map::new();
        rewards.evaluate_one(&RewardInput::new(&prompt, "c", &[], &row))
    }

    #[test]
    fn weights_combine_and_feedback_joins() {
        let r = Rewards::new()
            .add(constant("a", 1.0, "first"), 2.0)
            .unwrap()
            .add(constant("b", 0.5, " "), -1.0)
            .unwrap()
            .add(constant("c", 0.25, "third"), 4.0)
            .unwrap();
        let s = eval(&r);
        assert_eq!(s.score, 2.0 * 1.0 - 0.5 + 4.0 * 0.25);
        assert_eq!(s.feedback.as_deref(), Some("first\n\nthird"));
        assert!(!s.failed);
        assert_eq!(s.components[1].outcome.as_ref().unwrap().feedback, None);
    }

    #[test]
    fn empty_rewards_score_zero() {
        let s = eval(&Rewards::new());
        assert_eq!(
            (s.score, s.failed, s.feedback, s.error),
            (0.0, false, None, None)
        );
    }

    #[test]
    fn overflowing_sum_is_a_failure() {
        let r = Rewards::new()
            .add(constant("a", f64::MAX, ""), 2.0)
            .unwrap();
        let s = eval(&r);
        assert!(s.failed);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.feedback, None);
        assert_eq!(
            s.error.as_deref(),
            Some("the weighted sum of the rewards is not finite")
        );
    }

    #[test]
    fn names_are_unique_and_weights_finite() {
        let r = Rewards::new().add(constant("a", 1.0, ""), 1.0).unwrap();
        let err = r.add(constant("a", 1.0, ""), 1.0).unwrap_err();
        assert!(matches!(err, RewardBuildError::DuplicateName { .. }));
        let err = Rewards::new()
            .add(constant("a", 1.0, ""), f64::INFINITY)
            .unwrap_err();
        assert!(err.to_string().contains("`weight` = inf"), "{err}");
    }

    #[test]
    fn summary_counts_failures_per_reward() {
        let flaky = reward_fn("flaky", |input| {
            if input.completion == "bad" {
                Err(RewardError::custom("cannot parse"))
            } else {
                Ok(RewardOutput::new(1.0))
            }
        });
        let r = Rewards::new()
            .add(flaky, 1.0)
            .unwrap()
            .add(constant("half", 0.5, ""), 1.0)
            .unwrap();
        let prompt = Prompt::from("q");
        let row = Map::new();
        let inputs: Vec<RewardInput<'_>> = ["ok", "bad", "ok"]
            .iter()
            .map(|c| RewardInput::new(&prompt, c, &[], &row))
            .collect();
        let scored = r.evaluate(&inputs);
        let summary = RewardSummary::of(&scored);
        assert_eq!(summary.failures, 1);
        assert_eq!(
            summary.metrics(),
            vec![
                ("reward/failures".to_string(), 1.0),
                ("reward/flaky/mean".to_string(), 1.0),
                ("reward/flaky/failures".to_string(), 1.0),
                ("reward/half/mean".to_string(), 0.5),
                ("reward/half/failures".to_string(), 0.0),
            ]
        );
        assert_eq!(
            scored[1].errors().map(|(n, _)| n).collect::<Vec<_>>(),
            vec!["flaky"]
        );
    }
}
