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

/// The training step's number (1 after the first step).
pub const STEP: &str = "step";
/// Mean distillation term over the step's passes.
pub const LOSS_DISTILLATION: &str = "loss/distillation";
/// Mean GRPO term over the step's passes.
pub const LOSS_POLICY: &str = "loss/policy";
/// Fraction of response tokens where the PPO clip was active (GRPO term).
pub const CLIP_FRACTION: &str = "policy/clip_fraction";
/// Mean importance weight of the distillation term (`is_clip`).
pub const IS_WEIGHT_MEAN: &str = "self_distillation/is_weight_mean";
/// Mean KL(teacher ‖ student) on the full vocabulary over the response tokens of samples
/// with a teacher signal (temperature-scaled distributions; not a reference metric): how far
/// apart the two are where the distillation pulls.
pub const TEACHER_KL: &str = "self_distillation/teacher_kl";
/// Mean rollout importance-sampling weight over response tokens.
pub const ROLLOUT_IS_WEIGHT_MEAN: &str = "rollout_is/weight_mean";
/// Mean entropy of the student's (temperature-scaled) distribution over response tokens.
pub const ENTROPY: &str = "policy/entropy";
/// Mean GRPO advantage over samples (only when the GRPO term is on).
pub const ADVANTAGE_MEAN: &str = "advantage/mean";
/// Standard deviation of the GRPO advantages over samples.
pub const ADVANTAGE_STD: &str = "advantage/std";
/// Mean global gradient norm over the step's updates (before clipping).
pub const GRAD_NORM: &str = "grad_norm";
/// Updates skipped for a non-finite loss or gradient norm.
pub const SKIPPED_UPDATES: &str = "optimizer/skipped_steps";
/// Student forward passes with a graph or for old log-probs (not rollouts, not teachers).
pub const STUDENT_FORWARDS: &str = "perf/student_forwards";
/// Smallest sequence reward.
pub const REWARD_MIN: &str = "reward/min";
/// Largest sequence reward.
pub const REWARD_MAX: &str = "reward/max";
// Failures and per-reward means (`reward/failures`, `reward/NAME/mean|failures`) are named by
// sdpo-train's `reward::RewardSummary::metrics`.
/// Fraction of groups whose samples all got the same reward (no GRPO signal there).
pub const FLAT_GROUP_FRACTION: &str = "reward/flat_group_fraction";
/// Longest response in tokens.
pub const RESPONSE_LENGTH_MAX: &str = "response_length/max";
/// Fraction of responses that hit `max_new_tokens` without a stop token.
pub const TRUNCATED_FRACTION: &str = "response_length/truncated_fraction";
/// Seconds of each phase of the step: `time/rollout`, `time/reward`, `time/teacher`,
/// `time/student`, `time/update`, `time/step`.
pub const TIME_ROLLOUT: &str = "time/rollout";
/// See [`TIME_ROLLOUT`].
pub const TIME_REWARD: &str = "time/reward";
/// See [`TIME_ROLLOUT`].
pub const TIME_TEACHER: &str = "time/teacher";
/// See [`TIME_ROLLOUT`].
pub const TIME_STUDENT: &str = "time/student";
/// See [`TIME_ROLLOUT`].
pub const TIME_UPDATE: &str = "time/update";
/// See [`TIME_ROLLOUT`].
pub const TIME_STEP: &str = "time/step";
/// Consecutive steps without any teacher signal.
pub const STEPS_WITHOUT_TEACHER_SIGNAL: &str = "warning/steps_without_teacher_signal";
/// Consecutive steps whose rewards were all equal.
pub const STEPS_WITH_FLAT_REWARDS: &str = "warning/steps_with_flat_rewards";
