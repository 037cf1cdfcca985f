//! Names of the metrics logged each step (the reference's where it has one).

/// Fraction of groups (prompts) with at least one successful sample.
pub const SUCCESS_GROUP_FRACTION: &str = "self_distillation/success_group_fraction";
/// Fraction of samples that were given a demonstration.
pub const SUCCESS_SAMPLE_FRACTION: &str = "self_distillation/success_sample_fraction";
/// Fraction of samples whose verifier returned non-empty feedback.
pub const FEEDBACK_AVAILABLE_FRACTION: &str = "self_distillation/feedback_available_fraction";
/// Fraction of samples whose teacher prompt contains feedback.
pub const FEEDBACK_USED_FRACTION: &str = "self_distillation/feedback_used_fraction";
/// Fraction of samples with a teacher signal (the self-distillation mask).
pub const REPROMPT_SAMPLE_FRACTION: &str = "self_distillation/reprompt_sample_fraction";
/// 1 when no sample in the batch has a teacher signal, else 0.
pub const EMPTY_TARGET_BATCH: &str = "self_distillation/empty_target_batch";
/// Mean sequence reward.
pub const REWARD_MEAN: &str = "reward/mean";
/// Standard deviation of the sequence reward.
pub const REWARD_STD: &str = "reward/std";
/// The training loss.
pub const LOSS: &str = "loss";
/// Mean response length in tokens.
pub const RESPONSE_LENGTH: &str = "response_length/mean";
/// The learning rate of the step.
pub const LEARNING_RATE: &str = "learning_rate";
/// Tokens processed per second.
pub const TOKENS_PER_SECOND: &str = "throughput/tokens_per_second";

/// The six self-distillation metrics, in the order the reference logs them.
pub const SELF_DISTILLATION: [&str; 6] = [
    SUCCESS_GROUP_FRACTION,
    SUCCESS_SAMPLE_FRACTION,
    FEEDBACK_AVAILABLE_FRACTION,
    FEEDBACK_USED_FRACTION,
    REPROMPT_SAMPLE_FRACTION,
    EMPTY_TARGET_BATCH,
];
