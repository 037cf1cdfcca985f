//! The built-in job: warm-start the built-in model on a built-in task, then train it with
//! SDPO (or GRPO) and measure held-out success. `sdpo train` with no arguments runs this; the
//! trainer's "reward rises" test runs a shorter version.

use crate::TrainBackend;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use sdpo_core::config::TeacherMode;

use sdpo_models::generate::{sampler_rng, SamplingParams};

use super::tasks::Task;
pub use super::warm_start::WarmStartConfig;
use super::warm_start::{sft_examples, warm_start};
use super::{char_tokenizer, init_model, tiny_model_config};
use crate::dataset::{Dataset, Row};
use crate::reward::Rewards;
use crate::trainer::{SdpoTrainer, TrainError};
use crate::TrainConfig;

/// The built-in task setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinJobConfig {
    /// The task. Default `sort-digits`.
    pub task: Task,
    /// Problems held out for measuring success. Default 60.
    pub held_out: usize,
    /// Train on only this many of the remaining problems (all when `None`). Default `None`.
    pub train_rows: Option<usize>,
    /// The warm start.
    pub warm_start: WarmStartConfig,
}

impl Default for BuiltinJobConfig {
    fn default() -> Self {
        Self {
            task: Task::default(),
            held_out: 60,
            train_rows: None,
            warm_start: WarmStartConfig::default(),
        }
    }
}

/// The built-in job's reprompt template: the reference's structure (prompt, then a solution,
/// then feedback) without its long fixed sentences, which the character-level model would
/// read one character at a time.
pub const BUILTIN_REPROMPT_TEMPLATE: &str = "{prompt}{solution}{feedback}";
/// The built-in job's solution template.
pub const BUILTIN_SOLUTION_TEMPLATE: &str = "\nA correct answer: {successful_previous_attempt}";
/// The built-in job's feedback template.
pub const BUILTIN_FEEDBACK_TEMPLATE: &str = "\nFeedback on a wrong answer: {feedback_raw}";

/// The training settings of the built-in job (what `sdpo train` runs with no config): the
/// reference's SDPO defaults except where the tiny model calls for others — a frozen teacher
/// (the EMA teacher forgets how to read its reprompt, which the student is never trained on,
/// and the run collapses), top-20 distillation (vocabulary of 99), short reprompt templates
/// capped at 256 tokens (the model has 512 positions), 8 new tokens, learning rate 1e-3
/// (SDPO's best of 1e-4 / 3e-4 / 1e-3 by held-out AUC over 3 seeds, `sdpo compare`;
/// docs/efficacy.md), 500 steps.
pub fn default_train_config() -> TrainConfig {
    let mut cfg = TrainConfig {
        steps: 500,
        num_generations: 8,
        prompts_per_step: 4,
        ..TrainConfig::default()
    };
    cfg.sampling.max_new_tokens = 8;
    cfg.sdpo.teacher_mode = TeacherMode::Frozen;
    cfg.sdpo.distillation_topk = Some(20);
    cfg.sdpo.reprompt_template = BUILTIN_REPROMPT_TEMPLATE.to_string();
    cfg.sdpo.solution_template = BUILTIN_SOLUTION_TEMPLATE.to_string();
    cfg.sdpo.feedback_template = BUILTIN_FEEDBACK_TEMPLATE.to_string();
    cfg.sdpo.max_reprompt_len = 256;
    cfg.optimizer.learning_rate = 1e-3;
    cfg
}

/// A trainer on the warm-started built-in model, and the held-out problems.
pub struct BuiltinJob<B: TrainBackend> {
    /// The trainer (dataset: the task's training problems; reward: the task's verifier).
    pub trainer: SdpoTrainer<B>,
    /// Problems never trained on.
    pub held_out: Vec<Row>,
    /// Warm-start loss per step.
    pub warm_start_losses: Vec<f64>,
}

/// Builds the built-in model (seeded by `train.seed`), warm-starts it on `job.task` and wraps
/// it in a trainer. `on_warm_step(step, loss)` reports warm-start progress.
///
/// # Errors
/// [`TrainError`] if the configuration is invalid or a prompt cannot be tokenized.
pub fn builtin_job<B: TrainBackend>(
    job: &BuiltinJobConfig,
    train: TrainConfig,
    device: &Device<B>,
    on_warm_step: impl FnMut(usize, f64),
) -> Result<BuiltinJob<B>, TrainError> {
    train.validate()?;
    job.warm_start.validate()?;
    let tokenizer = char_tokenizer().map_err(|source| TrainError::Tokenizer {
        context: "built-in tokenizer".into(),
        source,
    })?;
    B::seed(device, train.seed);
    let model = init_model::<B>(&tiny_model_config(tokenizer.vocab_size()), device);
    let (mut rows, held_out) = job.task.split(job.held_out, train.seed);
    if let Some(n) = job.train_rows {
        rows.truncate(n.max(1));
    }
    let w = &job.warm_start;
    let examples = sft_examples(job.task, &rows, &tokenizer, &train.sdpo, w, train.seed).map_err(
        |source| TrainError::Tokenizer {
            context: "warm-start examples".into(),
            source,
        },
    )?;
    let pad = tokenizer
        .pad_token()
        .and_then(|p| tokenizer.token_to_id(p))
        .unwrap_or(0);
    let (model, losses) = warm_start(model, &examples, w, pad, device, on_warm_step)?;
    let rewards = Rewards::new().add(job.task, 1.0)?;
    let dataset = Dataset::from_rows(rows)?;
    let trainer = SdpoTrainer::new(train, model, tokenizer, dataset, rewards, device)?;
    Ok(BuiltinJob {
        trainer,
        held_out,
        warm_start_losses: losses,
    })
}

/// Greedy pass@1 of the current policy on `rows`: the fraction whose greedy completion scores
/// at least `success_reward_threshold`.
///
/// # Errors
/// As [`SdpoTrainer::sample_and_score`].
pub fn greedy_success<B: TrainBackend>(
    trainer: &SdpoTrainer<B>,
    rows: &[Row],
    max_new_tokens: usize,
) -> Result<f64, TrainError> {
    if rows.is_empty() {
        return Ok(0.0);
    }
    let threshold = trainer.config().sdpo.success_reward_threshold;
    let mut rng = sampler_rng(0);
    let samples =
        trainer.sample_and_score(rows, 1, &SamplingParams::greedy(max_new_tokens), &mut rng)?;
    Ok(samples.iter().filter(|s| s.score >= threshold).count() as f64 / rows.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdpo_core::config::ConfigError;

    #[test]
    fn warm_start_validation_names_the_field() {
        assert!(WarmStartConfig::default().validate().is_ok());
        let field = |cfg: WarmStartConfig| match cfg.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let base = WarmStartConfig::default;
        assert_eq!(
            field(WarmStartConfig {
                plain_mistakes: 1.5,
                ..base()
            }),
            "warm_start.plain_mistakes"
        );
        assert_eq!(
            field(WarmStartConfig {
                plain_fraction: -0.1,
                ..base()
            }),
            "warm_start.plain_fraction"
        );
        assert_eq!(
            field(WarmStartConfig {
                learning_rate: f64::NAN,
                ..base()
            }),
            "warm_start.learning_rate"
        );
        assert_eq!(
            field(WarmStartConfig {
                batch_size: 0,
                ..base()
            }),
            "warm_start.batch_size"
        );
        // No steps, no batches needed.
        assert!(WarmStartConfig {
            steps: 0,
            batch_size: 0,
            ..base()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn builtin_defaults_are_valid_and_use_a_frozen_teacher() {
        let cfg = default_train_config();
        cfg.validate().unwrap();
        assert_eq!(cfg.sdpo.teacher_mode, TeacherMode::Frozen);
        assert_eq!(BuiltinJobConfig::default().task, Task::SortDigits);
    }
}
