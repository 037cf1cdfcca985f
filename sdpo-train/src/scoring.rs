//! Scoring a [`Rollout`]: every sample's [`Scored`] (weighted reward, feedback for the teacher,
//! error for the log, each reward's outcome).

use burn::tensor::backend::Backend;

use crate::dataset::Row;
use crate::reward::{RewardInput, Rewards, Scored};
use crate::rollout::Rollout;

/// Scores every sample of `rollout`; `rows[i]` is the dataset row of sample `i`.
pub fn score_rollout<B: Backend>(
    rewards: &Rewards,
    rows: &[&Row],
    rollout: &Rollout<B>,
) -> Vec<Scored> {
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
    rewards.evaluate(&inputs)
}
