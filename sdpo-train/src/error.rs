//! [`TrainError`]: why training could not go on.

use sdpo_core::config::ConfigError;
use sdpo_core::teacher::TeacherUpdateError;
use sdpo_models::generate::GenerationError;
use sdpo_models::scoring::ScoringError;
use sdpo_models::{PrecisionError, TokenizerError};

use crate::checkpoint::CheckpointError;
use crate::collective::CollectiveError;
use crate::dataset::DatasetError;
use crate::policy::StepError;
use crate::reward::RewardBuildError;
use crate::tensorboard::TensorboardError;

/// Why training could not go on. Every variant says what and where.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A prompt, completion or teacher prompt could not be tokenized or rendered.
    #[error("{context}: {source}")]
    Tokenizer {
        /// What was being tokenized (e.g. "dataset row 12 prompt").
        context: String,
        /// The tokenizer's error.
        source: TokenizerError,
    },
    /// Sampling failed.
    #[error("rollout: {0}")]
    Generation(#[from] GenerationError),
    /// A scoring pass rejected its inputs.
    #[error("scoring: {0}")]
    Scoring(#[from] ScoringError),
    /// A training pass could not be evaluated.
    #[error("training step: {0}")]
    Step(#[from] StepError),
    /// The dataset or its sampler is unusable.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A teacher prompt is longer than `max_reprompt_len` with `reprompt_truncation: "error"`.
    #[error("teacher prompt of sample {sample} has {len} tokens, more than max_reprompt_len = {max} (reprompt_truncation is \"error\")")]
    RepromptTooLong {
        /// Sample index in the generation batch.
        sample: usize,
        /// Its length in tokens.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The device cannot run the configured precision.
    #[error(transparent)]
    Precision(#[from] PrecisionError),
    /// The teacher could not be updated from the student.
    #[error("teacher update: {0}")]
    Teacher(#[from] TeacherUpdateError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The TensorBoard event file could not be written, or a damaged one resumed.
    #[error("TensorBoard events: {0}")]
    Tensorboard(#[from] TensorboardError),
    /// A collective operation of data-parallel training failed (a rank died, hung or drifted).
    #[error("data-parallel training: {0}")]
    Collective(#[from] CollectiveError),
    /// A dataset row index past the end.
    #[error("dataset row {row} does not exist (the dataset has {len} rows)")]
    RowOutOfRange {
        /// The index asked for.
        row: usize,
        /// Rows in the dataset.
        len: usize,
    },
    /// The LoRA configuration does not fit the model.
    #[error("lora: {0}")]
    Lora(String),
    /// The rewards could not be built.
    #[error("rewards: {0}")]
    Rewards(#[from] RewardBuildError),
    /// A reward failed on every sample for `train.stop_after_failed_reward_steps` steps in a
    /// row: training on all-zero scores would only teach noise.
    #[error("reward `{reward}` failed on every sample for {steps} steps in a row (train.stop_after_failed_reward_steps); last error: {error}")]
    RewardsFailing {
        /// The failing reward.
        reward: String,
        /// Consecutive steps in which every sample failed.
        steps: usize,
        /// Its latest error.
        error: String,
    },
}
