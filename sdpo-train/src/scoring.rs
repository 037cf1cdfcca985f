//! Scoring a [`Rollout`]: every sample's weighted reward, feedback and per-reward scores, as
//! typed values.

use burn::tensor::backend::Backend;

use crate::dataset::Row;
use crate::reward::{RewardInput, Rewards};
use crate::rollout::Rollout;

/// One sample's rewards.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSample {
    /// The weighted reward (0 when [`Self::failed`]).
    pub score: f64,
    /// The rewards' feedback for the teacher, if any.
    pub feedback: Option<String>,
    /// Why a reward failed, for the log (never shown to the teacher).
    pub error: Option<String>,
    /// Whether a reward failed on this sample.
    pub failed: bool,
    /// Each reward's unweighted score (`None` where it failed), in the order they were added.
    pub rewards: Vec<(String, Option<f64>)>,
}

/// Scores every sample of `rollout`; `rows[i]` is the dataset row of sample `i`.
pub fn score_rollout<B: Backend>(
    rewards: &Rewards,
    rows: &[&Row],
    rollout: &Rollout<B>,
) -> Vec<ScoredSample> {
    let tokens = &rollout.generation.tokens;
    let inputs: Vec<RewardInput<'_>> = rows
        .iter()
        .zip(&rollout.texts)
        .zip(tokens)
        .map(|((row, text), ids)| RewardInput {
            prompt: &row.prompt,
            completion: text,
            completion_ids: ids,
            row: &row.fields,
        })
        .collect();
    rewards
        .evaluate(&inputs)
        .into_iter()
        .map(|s| ScoredSample {
            score: s.score,
            rewards: s
                .components
                .iter()
                .map(|c| (c.name.clone(), c.outcome.as_ref().ok().map(|o| o.score)))
                .collect(),
            feedback: s.feedback,
            error: s.error,
            failed: s.failed,
        })
        .collect()
}
