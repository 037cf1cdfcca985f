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
/// Cores each phase kept busy on average: the process's CPU seconds (every thread's user and
/// system time) over the phase's wall-clock seconds; `cores/rollout`, `cores/reward`,
/// `cores/teacher`, `cores/student`, `cores/update`, `cores/step` (absent where the platform
/// reports no CPU time). Not reference metrics.
pub const CORES_ROLLOUT: &str = "cores/rollout";
/// See [`CORES_ROLLOUT`].
pub const CORES_REWARD: &str = "cores/reward";
/// See [`CORES_ROLLOUT`].
pub const CORES_TEACHER: &str = "cores/teacher";
/// See [`CORES_ROLLOUT`].
pub const CORES_STUDENT: &str = "cores/student";
/// See [`CORES_ROLLOUT`].
pub const CORES_UPDATE: &str = "cores/update";
/// See [`CORES_ROLLOUT`].
pub const CORES_STEP: &str = "cores/step";

// Data-parallel training (several ranks; not reference metrics). A step's metrics are combined
// over the ranks: means of the ranks' values, except `time/*` and `*_max` (largest) and
// `*_min` (smallest).

/// Ranks training together.
pub const WORLD_SIZE: &str = "distributed/world_size";
/// Seconds of the step spent in collective operations (gradient all-reduce, loss
/// denominators, metrics), the slowest rank's.
pub const TIME_COMMUNICATION: &str = "time/communication";
/// Bytes each rank all-reduced for the step's gradients.
pub const REDUCED_BYTES: &str = "distributed/reduced_bytes";
/// The fewest loss tokens a rank had this step: response tokens of samples with a teacher
/// signal when distilling (the distillation term's denominator), else all response tokens.
pub const RANK_TOKENS_MIN: &str = "distributed/loss_tokens_min";
/// The most loss tokens a rank had this step (against [`RANK_TOKENS_MIN`]: the imbalance).
pub const RANK_TOKENS_MAX: &str = "distributed/loss_tokens_max";

/// Consecutive steps without any teacher signal.
pub const STEPS_WITHOUT_TEACHER_SIGNAL: &str = "warning/steps_without_teacher_signal";
/// Consecutive steps whose rewards were all equal.
pub const STEPS_WITH_FLAT_REWARDS: &str = "warning/steps_with_flat_rewards";

// The teacher probe (every `teacher_probe_every` steps; not reference metrics): what the
// teacher's signal points at, on the step's own batch, before its update.

/// Greedy success of the teacher on the reprompted samples' teacher prompts (demonstration
/// and/or feedback in context): can the teacher solve what it is asked to teach?
pub const PROBE_TEACHER_SUCCESS: &str = "teacher_probe/teacher_greedy_success";
/// [`PROBE_TEACHER_SUCCESS`] over the samples whose teacher prompt holds a demonstration.
pub const PROBE_TEACHER_SUCCESS_DEMONSTRATION: &str =
    "teacher_probe/teacher_greedy_success_demonstration";
/// [`PROBE_TEACHER_SUCCESS`] over the samples reprompted with feedback alone.
pub const PROBE_TEACHER_SUCCESS_FEEDBACK: &str = "teacher_probe/teacher_greedy_success_feedback";
/// Greedy success of the student on the same samples' own prompts (the teacher's baseline).
pub const PROBE_STUDENT_SUCCESS: &str = "teacher_probe/student_greedy_success";
/// [`PROBE_STUDENT_SUCCESS`] over the samples whose teacher prompt holds a demonstration.
pub const PROBE_STUDENT_SUCCESS_DEMONSTRATION: &str =
    "teacher_probe/student_greedy_success_demonstration";
/// [`PROBE_STUDENT_SUCCESS`] over the samples reprompted with feedback alone.
pub const PROBE_STUDENT_SUCCESS_FEEDBACK: &str = "teacher_probe/student_greedy_success_feedback";
/// Over failed samples with a signal whose response leaves the row's `answer` at some token:
/// fraction where the teacher's most likely token at that first wrong position is the
/// answer's.
pub const PROBE_FIRST_ERROR_FIXED: &str = "teacher_probe/first_error_fixed";
/// Mean teacher probability of the answer's token at the student's first wrong token.
pub const PROBE_FIRST_ERROR_TEACHER_PROB: &str = "teacher_probe/first_error_teacher_prob";
/// Mean student probability of the answer's token at its first wrong token.
pub const PROBE_FIRST_ERROR_STUDENT_PROB: &str = "teacher_probe/first_error_student_prob";
/// Fraction of response tokens before the first wrong one (all of a correct response) where
/// the teacher's most likely token is the student's.
pub const PROBE_AGREEMENT_BEFORE_ERROR: &str = "teacher_probe/agreement_before_error";
/// Fraction of response tokens after the first wrong one where the teacher's most likely
/// token is the student's (a teacher that follows the wrong path gives no signal there).
pub const PROBE_AGREEMENT_AFTER_ERROR: &str = "teacher_probe/agreement_after_error";
/// Mean KL(teacher ‖ student) per response token over successful samples with a signal.
pub const PROBE_KL_SUCCESSFUL: &str = "teacher_probe/teacher_kl_successful";
/// Mean KL(teacher ‖ student) per response token over failed samples with a signal.
pub const PROBE_KL_FAILED: &str = "teacher_probe/teacher_kl_failed";
/// Fraction of successful samples that got a teacher signal (with
/// `dont_reprompt_on_self_success` a group's only success gets none).
pub const PROBE_SUCCESSFUL_WITH_SIGNAL: &str = "teacher_probe/successful_with_signal";
/// Seconds spent in the probe (not part of [`TIME_STEP`]).
pub const TIME_PROBE: &str = "time/teacher_probe";
/// Cores the probe kept busy on average (see [`CORES_ROLLOUT`]).
pub const CORES_PROBE: &str = "cores/teacher_probe";
