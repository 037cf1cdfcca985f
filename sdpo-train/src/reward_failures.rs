//! Reward failures as first-class events: each failing reward is reported with its name and
//! error (at most once every [`REPORT_EVERY`] steps per reward, with the count since the last
//! report), and a reward that fails on every sample for `stop_after` steps in a row stops the
//! run. Failed samples score 0 and their errors never reach the teacher (see
//! [`Scored`](crate::reward::Scored)).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::reward::Scored;

/// Steps between two reports of the same failing reward.
pub const REPORT_EVERY: usize = 10;

/// Longest error text quoted in a report (characters).
const QUOTE_CHARS: usize = 400;

/// Per-reward failure bookkeeping across steps (checkpointed with the trainer's state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RewardFailures {
    rewards: BTreeMap<String, FailureTrack>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct FailureTrack {
    /// Consecutive steps in which this reward failed on every sample.
    all_failed_steps: usize,
    /// The step of the last report, if any.
    reported_at: Option<usize>,
    /// Failed samples since the last report.
    unreported: usize,
}

impl RewardFailures {
    /// Counts the failures of step `step` and returns the reports due.
    ///
    /// # Errors
    /// [`TrainError::RewardsFailing`] when a reward has now failed on every sample for
    /// `stop_after` consecutive steps (0 = never).
    pub fn observe(
        &mut self,
        scored: &[Scored],
        step: usize,
        stop_after: usize,
    ) -> Result<Vec<String>, TrainError> {
        let mut reports = Vec::new();
        let names: Vec<&str> = scored
            .first()
            .map(|s| s.components.iter().map(|c| c.name.as_str()).collect())
            .unwrap_or_default();
        for (k, name) in names.into_iter().enumerate() {
            let errors: Vec<String> = scored
                .iter()
                .filter_map(|s| s.components.get(k)?.outcome.as_ref().err())
                .map(|e| e.to_string())
                .collect();
            let track = self.rewards.entry(name.to_string()).or_default();
            let all_failed = !scored.is_empty() && errors.len() == scored.len();
            track.all_failed_steps = if all_failed {
                track.all_failed_steps + 1
            } else {
                0
            };
            track.unreported += errors.len();
            let Some(first) = errors.first() else {
                continue;
            };
            if stop_after > 0 && track.all_failed_steps >= stop_after {
                return Err(TrainError::RewardsFailing {
                    reward: name.to_string(),
                    steps: track.all_failed_steps,
                    error: quote(first),
                });
            }
            let due = track.reported_at.is_none_or(|at| step >= at + REPORT_EVERY);
            if due {
                reports.push(format!(
                    "reward `{name}` failed on {} of {} samples this step ({} since the last report; failed samples score 0): {}",
                    errors.len(),
                    scored.len(),
                    track.unreported,
                    quote(first)
                ));
                track.reported_at = Some(step);
                track.unreported = 0;
            }
        }
        Ok(reports)
    }
}

/// `text` cut to [`QUOTE_CHARS`] characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}… ({} characters)", &text[..cut], text.chars().count()),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Prompt;
    use crate::reward::{Reward, RewardError, RewardInput, RewardOutput, Rewards};

    struct Fails;
    impl Reward for Fails {
        fn name(&self) -> &str {
            "verifier"
        }
        fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
            if input.completion == "ok" {
                Ok(RewardOutput::new(1.0))
            } else {
                Err(RewardError::custom("verifier crashed: Traceback"))
            }
        }
    }

    fn scored(completions: &[&str]) -> Vec<Scored> {
        let rewards = Rewards::new().add(Fails, 1.0).unwrap();
        let prompt = Prompt::from("p");
        let row = serde_json::Map::new();
        let inputs: Vec<RewardInput<'_>> = completions
            .iter()
            .map(|c| RewardInput::new(&prompt, c, &[], &row))
            .collect();
        rewards.evaluate(&inputs)
    }

    #[test]
    fn failures_are_reported_rate_limited_and_stop_the_run() {
        let mut f = RewardFailures::default();
        let some = scored(&["ok", "bad"]);
        let r = f.observe(&some, 1, 3).unwrap();
        assert_eq!(r.len(), 1);
        assert!(
            r[0].contains("reward `verifier` failed on 1 of 2"),
            "{}",
            r[0]
        );
        assert!(r[0].contains("Traceback"), "{}", r[0]);
        // Not again before REPORT_EVERY steps; partial failures never stop the run.
        for step in 2..REPORT_EVERY + 1 {
            assert!(f.observe(&some, step, 3).unwrap().is_empty());
        }
        let again = f.observe(&some, REPORT_EVERY + 1, 3).unwrap();
        assert!(again[0].contains(&format!("{} since the last report", REPORT_EVERY)));
        // Every sample failing: the third such step in a row is an error.
        let all = scored(&["bad", "bad"]);
        f.observe(&all, 20, 3).unwrap();
        f.observe(&all, 21, 3).unwrap();
        let err = f.observe(&all, 22, 3).unwrap_err().to_string();
        assert!(
            err.contains("`verifier` failed on every sample for 3 steps"),
            "{err}"
        );
        // A step with a success resets the count; 0 never stops.
        let mut g = RewardFailures::default();
        for step in 1..10 {
            g.observe(&all, step, 0).unwrap();
        }
        let mut h = RewardFailures::default();
        h.observe(&all, 1, 2).unwrap();
        h.observe(&some, 2, 2).unwrap();
        h.observe(&all, 3, 2).unwrap();
    }

    #[test]
    fn long_errors_are_cut() {
        let long = "x".repeat(10_000);
        let q = quote(&long);
        assert!(q.len() < 500 && q.ends_with("(10000 characters)"), "{q}");
    }
}
