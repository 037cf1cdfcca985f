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
    score_texts(rewards, rows, &rollout.texts, &rollout.generation.tokens)
}

/// Scores completion `i` (`texts[i]`, its ids `tokens[i]`) against `rows[i]`.
pub fn score_texts(
    rewards: &Rewards,
    rows: &[&Row],
    texts: &[String],
    tokens: &[Vec<u32>],
) -> Vec<Scored> {
    let inputs: Vec<RewardInput<'_>> = rows
        .iter()
        .zip(texts)
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
