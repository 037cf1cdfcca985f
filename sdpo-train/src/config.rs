//! [`TrainConfig`]: the trainer's knobs around the algorithm's [`SdpoConfig`].
//!
//! Plain serde (RON): unknown fields are rejected with their name, line and column, every
//! field has a default, and [`TrainConfig::validate`] names the field and value of anything
//! that cannot be used.

use std::path::Path;

use serde::{Deserialize, Serialize};

use sdpo_core::config::{parse_ron, read_config_file, to_pretty_ron, ConfigError};
use sdpo_core::{RolloutIs, SdpoConfig, TeacherMode};
use sdpo_models::generate::{GenerationError, SamplingParams};
use sdpo_models::lora::LoraConfig;
use sdpo_models::Precision;

/// AdamW settings and gradient clipping (PyTorch / TRL defaults except the learning rate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate. Default `1e-5`.
    pub learning_rate: f64,
    /// Decoupled weight decay. Default `0.0`.
    pub weight_decay: f64,
    /// Adam β₁. Default `0.9`.
    pub beta1: f64,
    /// Adam β₂. Default `0.999`.
    pub beta2: f64,
    /// Adam ε. Default `1e-8`.
    pub epsilon: f64,
    /// Global gradient-norm clipping over all trainable parameters, as PyTorch's
    /// `clip_grad_norm_` (not per tensor). `None` disables it. Default `Some(1.0)`.
    pub max_grad_norm: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-5,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            max_grad_norm: Some(1.0),
        }
    }
}

/// Shape of the learning-rate schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Constant after warmup.
    Constant,
    /// Linear decay to 0 at the last step.
    Linear,
    /// Cosine decay to 0 at the last step.
    Cosine,
}

/// Learning-rate schedule: linear warmup from 0, then [`ScheduleKind`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Shape after warmup. Default `constant`.
    pub kind: ScheduleKind,
    /// Training steps of linear warmup (the schedule advances once per training step, whatever
    /// `mini_batches` is, as verl's). Default 0.
    pub warmup_steps: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Constant,
            warmup_steps: 0,
        }
    }
}

/// Data-parallel training (several ranks: `mpirun -np N sdpo train`, or peers of one
/// process); ignored by a single process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributedConfig {
    /// Seconds a rank waits in a collective operation for the others before failing with an
    /// error naming the ranks that did not arrive (dead, hung, or that much slower: it must
    /// exceed the largest difference in step time between ranks, evaluation on rank 0
    /// included). Default 600.
    pub timeout_secs: f64,
    /// Compare a checksum of the parameters across ranks every this many steps (and at the
    /// end); a difference stops training with an error naming the ranks. 0 = never. Default
    /// 50.
    pub checksum_every: usize,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 600.0,
            checksum_every: 50,
        }
    }
}

/// Where per-step metrics are written in the run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    /// `metrics.jsonl`, one JSON object per step.
    Jsonl,
    /// `metrics.csv`, one row per step (columns fixed by the first step).
    Csv,
}

/// Everything the trainer needs besides the model, tokenizer, dataset and rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The algorithm's knobs (reference names and defaults).
    pub sdpo: SdpoConfig,
    /// Rollout importance sampling (verl's `rollout_is`): `(level: "token", threshold: 2.0)`
    /// by default, as verl's SDPO recipe; `level: "none"` turns it off.
    pub rollout_is: RolloutIs,
    /// Samples per prompt (a group). Default 8.
    pub num_generations: usize,
    /// Prompts per training step; the generation batch is `prompts_per_step × num_generations`.
    /// Default 4.
    pub prompts_per_step: usize,
    /// Training steps (generation batches). Default 100.
    pub steps: usize,
    /// Optimizer steps per generation batch: the batch is split into this many mini-batches.
    /// With more than one, old log-probs are taken by one extra forward before the first
    /// update, so the IS clip and the PPO ratio are meaningful; with one (on-policy) each pass
    /// uses its own detached log-probs (ratio exactly 1, no extra forward), as verl does. All
    /// updates of a step share its learning rate. Default 1.
    pub mini_batches: usize,
    /// Passes over the generation batch (verl's `ppo_epochs`, TRL's `num_iterations`): each
    /// pass runs every mini-batch's update again on the same samples. More than one makes the
    /// step off-policy (old log-probs by one extra forward). Default 1.
    pub ppo_epochs: usize,
    /// Give completions that hit `sampling.max_new_tokens` without a stop token no loss (TRL's
    /// `mask_truncated_completions`). Default false.
    pub mask_truncated_completions: bool,
    /// Samples per forward/backward pass inside a mini-batch (gradient accumulation);
    /// 0 = the whole mini-batch at once. Default 0.
    pub micro_batch_size: usize,
    /// AdamW and clipping.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Rollout sampling (temperature also divides the training logits, as in the reference).
    pub sampling: SamplingParams,
    /// Extra variables for the chat template, like transformers' `apply_chat_template`
    /// keyword arguments (TRL's `chat_template_kwargs`), for student and teacher prompts:
    /// `{"enable_thinking": false}`. Default none.
    pub chat_template_kwargs: std::collections::BTreeMap<String, serde_json::Value>,
    /// Longest student prompt in tokens; longer prompts keep their last tokens. Default
    /// `None`: what the model's context leaves after `sampling.max_new_tokens` (see
    /// [`TrainConfig::prompt_budget`]).
    pub max_prompt_len: Option<usize>,
    /// LoRA adapters on a frozen base; `None` trains every weight. Default `None`.
    pub lora: Option<LoraConfig>,
    /// Float precision of the model's weights and activations: `f32`, `f16` or `bf16` (see
    /// `sdpo_models::precision`: logits, losses and the LoRA adapters stay f32). Half precision
    /// needs `lora` and a device that supports the dtype. Default `f32`.
    pub precision: Precision,
    /// Seed of every random choice (sampling, shuffling, adapter init). Default 0.
    pub seed: u64,
    /// Write a checkpoint every this many steps (0 = only at the end, or when interrupted).
    /// Default 10.
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (older ones are deleted). Default 2.
    pub keep_checkpoints: usize,
    /// Metrics file format. Default `jsonl`.
    pub metrics_format: MetricsFormat,
    /// Also write the per-step metrics as a TensorBoard event file in the run folder
    /// (`events.out.tfevents.*.sdpo`: every metric a scalar tagged with its name, the run's
    /// config as text; see `sdpo_train::tensorboard`), flushed after every step, so
    /// `tensorboard --logdir runs/` shows one run per run folder, live.
    /// `metrics.jsonl`/`.csv` stay the canonical record (the CLI's plots and comparisons read
    /// them). Default true.
    pub tensorboard: bool,
    /// Warn when this many consecutive steps had no teacher signal or flat rewards. Default 5.
    pub warn_after_steps: usize,
    /// Stop with an error when a reward has failed (errored, timed out, returned no finite
    /// score) on every sample of this many consecutive steps; 0 = never stop. Default 3.
    pub stop_after_failed_reward_steps: usize,
    /// Run the teacher probe (`teacher_probe/*` metrics: the teacher's greedy success, its
    /// token agreement with the answer, the KL split by success; see
    /// `sdpo_train::teacher_probe`) on step 1 and every this many steps; 0 = never. It draws
    /// no random numbers, so training is the same either way. One probe costs under one step's
    /// time (two batched greedy decodes through the generation engine and two scoring passes:
    /// 0.15 s on the built-in job; 12–15 s against a 23–27 s step on SmolLM2-135M full
    /// fine-tuning with 16 samples, 2 cores), so at the default every 50 steps it adds about
    /// 1% to a run; logged as `time/teacher_probe` outside `time/step`. Default 50.
    pub teacher_probe_every: usize,
    /// Data-parallel settings (timeouts, the parameter checksum); `prompts_per_step` is the
    /// global batch, split evenly over the ranks.
    pub distributed: DistributedConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            sdpo: SdpoConfig::default(),
            rollout_is: RolloutIs::default(),
            num_generations: 8,
            prompts_per_step: 4,
            steps: 100,
            mini_batches: 1,
            ppo_epochs: 1,
            mask_truncated_completions: false,
            micro_batch_size: 0,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            sampling: SamplingParams::default(),
            max_prompt_len: None,
            chat_template_kwargs: Default::default(),
            lora: None,
            precision: Precision::F32,
            seed: 0,
            checkpoint_every: 10,
            keep_checkpoints: 2,
            metrics_format: MetricsFormat::Jsonl,
            tensorboard: true,
            warn_after_steps: 5,
            stop_after_failed_reward_steps: 3,
            teacher_probe_every: 50,
            distributed: DistributedConfig::default(),
        }
    }
}

fn invalid(field: &'static str, value: impl std::fmt::Debug, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: format!("{value:?}"),
        reason: reason.to_string(),
    }
}

/// Prompt lengths that fit a model's context (see [`TrainConfig::prompt_budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBudget {
    /// Longest student prompt in tokens.
    pub max_prompt_len: usize,
    /// Longest teacher prompt in tokens.
    pub max_reprompt_len: usize,
    /// Whether `sdpo.max_reprompt_len` was lowered to fit the context.
    pub reprompt_capped: bool,
}

/// The config path of a [`SamplingParams`] field, for error messages.
fn sampling_path(field: &'static str) -> &'static str {
    match field {
        "temperature" => "sampling.temperature",
        "top_p" => "sampling.top_p",
        "top_k" => "sampling.top_k",
        "min_p" => "sampling.min_p",
        "max_new_tokens" => "sampling.max_new_tokens",
        "repetition_penalty" => "sampling.repetition_penalty",
        _ => "sampling",
    }
}

impl TrainConfig {
    /// Samples per generation batch.
    pub fn batch_size(&self) -> usize {
        self.prompts_per_step * self.num_generations
    }

    /// Checks every field and the contradictions between them.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field relative to this config (`sampling.top_p`), or
    /// [`ConfigError::Nested`] for a field of `sdpo` (`sdpo.alpha`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.sdpo.validate().map_err(|e| e.within("sdpo"))?;
        if self.precision != Precision::F32 && self.lora.is_none() {
            return Err(invalid(
                "precision",
                self.precision.name(),
                "half precision trains LoRA adapters only (they stay f32, with f32 optimizer \
                 state): set `lora`, or use f32 to train every weight (AdamW state in f16 \
                 would round its epsilon 1e-8 to zero)",
            ));
        }
        let threshold = self.rollout_is.threshold;
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(invalid(
                "rollout_is.threshold",
                threshold,
                "must be finite and > 0",
            ));
        }
        if self.num_generations == 0 {
            return Err(invalid(
                "num_generations",
                self.num_generations,
                "must be at least 1",
            ));
        }
        if self.prompts_per_step == 0 {
            return Err(invalid(
                "prompts_per_step",
                self.prompts_per_step,
                "must be at least 1",
            ));
        }
        if self.mini_batches == 0 || self.mini_batches > self.batch_size() {
            return Err(invalid(
                "mini_batches",
                self.mini_batches,
                &format!(
                    "must be between 1 and the generation batch size {} (prompts_per_step × num_generations)",
                    self.batch_size()
                ),
            ));
        }
        if self.ppo_epochs == 0 {
            return Err(invalid("ppo_epochs", self.ppo_epochs, "must be at least 1"));
        }
        let opt = &self.optimizer;
        if !(opt.learning_rate.is_finite() && opt.learning_rate >= 0.0) {
            return Err(invalid(
                "optimizer.learning_rate",
                opt.learning_rate,
                "must be finite and ≥ 0",
            ));
        }
        for (field, v) in [
            ("optimizer.beta1", opt.beta1),
            ("optimizer.beta2", opt.beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(invalid(field, v, "must be in [0, 1)"));
            }
        }
        if opt.epsilon.is_nan() || opt.epsilon <= 0.0 {
            return Err(invalid("optimizer.epsilon", opt.epsilon, "must be > 0"));
        }
        if opt.weight_decay.is_nan() || opt.weight_decay < 0.0 {
            return Err(invalid(
                "optimizer.weight_decay",
                opt.weight_decay,
                "must be ≥ 0",
            ));
        }
        if let Some(n) = opt.max_grad_norm {
            if n.is_nan() || n <= 0.0 {
                return Err(invalid(
                    "optimizer.max_grad_norm",
                    n,
                    "must be > 0 (or None to disable)",
                ));
            }
        }
        if self.max_prompt_len == Some(0) {
            return Err(invalid(
                "max_prompt_len",
                self.max_prompt_len,
                "must be at least 1 (or None: what the model's context allows)",
            ));
        }
        if let Err(GenerationError::InvalidParam {
            field,
            value,
            expected,
        }) = self.sampling.validate()
        {
            return Err(ConfigError::Invalid {
                field: sampling_path(field),
                value,
                reason: format!("must be {expected}"),
            });
        }
        if self.sdpo.teacher_mode == TeacherMode::LoraEma && self.lora.is_none() {
            return Err(invalid(
                "sdpo.teacher_mode",
                "lora-ema",
                "needs LoRA adapters: set `lora: Some((rank: 8, alpha: 16.0))` or pick `ema`",
            ));
        }
        if let Some(lora) = &self.lora {
            lora.validate()
                .map_err(|e| invalid("lora", lora, &e.to_string()))?;
        }
        let timeout = self.distributed.timeout_secs;
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(invalid(
                "distributed.timeout_secs",
                timeout,
                "must be finite and > 0",
            ));
        }
        Ok(())
    }

    /// Checks that the batch splits over `world` data-parallel ranks: `prompts_per_step`
    /// (the global batch) into whole prompt groups per rank, each rank's share into
    /// `mini_batches` updates.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `prompts_per_step` or `mini_batches`.
    pub fn validate_world(&self, world: usize) -> Result<(), ConfigError> {
        if world <= 1 {
            return Ok(());
        }
        if !self.prompts_per_step.is_multiple_of(world) {
            return Err(invalid(
                "prompts_per_step",
                self.prompts_per_step,
                &format!(
                    "is the global batch and must divide evenly over the {world} ranks (each rank owns whole prompt groups): use a multiple of {world}"
                ),
            ));
        }
        let local = self.batch_size() / world;
        if self.mini_batches > local {
            return Err(invalid(
                "mini_batches",
                self.mini_batches,
                &format!(
                    "must be at most each rank's share of the generation batch, {local} ({} prompts × {} samples / {world} ranks)",
                    self.prompts_per_step, self.num_generations
                ),
            ));
        }
        Ok(())
    }

    /// The prompt lengths for a model with `context` positions: every prompt plus a response
    /// of `sampling.max_new_tokens` must fit. `max_prompt_len` defaults to
    /// `context − max_new_tokens`; teacher prompts are capped there too (the reference's
    /// `max_reprompt_len` of 10240 exceeds most small models' context).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `sampling.max_new_tokens` when it leaves no room for a
    /// prompt, or `max_prompt_len` when it is set larger than the context allows.
    pub fn prompt_budget(&self, context: usize) -> Result<PromptBudget, ConfigError> {
        let new = self.sampling.max_new_tokens;
        let room = context.saturating_sub(new);
        if room == 0 {
            return Err(invalid(
                "sampling.max_new_tokens",
                new,
                &format!("leaves no room for a prompt: the model has {context} positions"),
            ));
        }
        let max_prompt_len = match self.max_prompt_len {
            None => room,
            Some(n) if n <= room => n,
            Some(n) => {
                return Err(invalid(
                    "max_prompt_len",
                    n,
                    &format!(
                        "a prompt of {n} tokens plus sampling.max_new_tokens = {new} exceed the model's {context} positions; use at most {room}, or None"
                    ),
                ))
            }
        };
        Ok(PromptBudget {
            max_prompt_len,
            max_reprompt_len: self.sdpo.max_reprompt_len.min(room),
            reprompt_capped: self.sdpo.max_reprompt_len > room,
        })
    }

    /// Parses and validates RON text; `source_name` is used in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with line and column, or [`ConfigError::Invalid`].
    pub fn from_ron_str_named(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let cfg: Self = parse_ron(text, source_name)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a RON file.
    ///
    /// # Errors
    /// As [`Self::from_ron_str_named`], or [`ConfigError::Io`].
    pub fn from_ron_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let (text, name) = read_config_file(path.as_ref())?;
        Self::from_ron_str_named(&text, &name)
    }

    /// The config as pretty RON (what a run folder records).
    pub fn to_ron_string(&self) -> String {
        to_pretty_ron(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let cfg = TrainConfig::default();
        cfg.validate().unwrap();
        let text = cfg.to_ron_string();
        let back = TrainConfig::from_ron_str_named(&text, "x.ron").unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn misspelled_field_names_line_and_column() {
        let err =
            TrainConfig::from_ron_str_named("(\n  num_generation: 4,\n)", "run.ron").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("run.ron:2:"), "{msg}");
        assert!(msg.contains("num_generation"), "{msg}");
    }

    #[test]
    fn prompt_budget_fits_the_context() {
        let mut cfg = TrainConfig::default();
        cfg.sampling.max_new_tokens = 100;
        let b = cfg.prompt_budget(512).unwrap();
        assert_eq!((b.max_prompt_len, b.max_reprompt_len), (412, 412));
        assert!(b.reprompt_capped);
        cfg.max_prompt_len = Some(400);
        assert_eq!(cfg.prompt_budget(512).unwrap().max_prompt_len, 400);
        cfg.max_prompt_len = Some(1024);
        let err = cfg.prompt_budget(512).unwrap_err().to_string();
        assert!(
            err.contains("max_prompt_len") && err.contains("512 positions"),
            "{err}"
        );
        cfg.sampling.max_new_tokens = 600;
        let err = cfg.prompt_budget(512).unwrap_err().to_string();
        assert!(err.contains("sampling.max_new_tokens"), "{err}");
    }

    #[test]
    fn sampling_errors_name_the_path() {
        let mut cfg = TrainConfig::default();
        cfg.sampling.temperature = -1.0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("`sampling.temperature`"), "{err}");
    }

    #[test]
    fn contradictions_name_the_field() {
        let cfg = TrainConfig {
            sdpo: SdpoConfig {
                teacher_mode: TeacherMode::LoraEma,
                ..SdpoConfig::default()
            },
            ..TrainConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("sdpo.teacher_mode"));
        let cfg = TrainConfig {
            mini_batches: 1000,
            ..TrainConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("mini_batches"));
        let cfg = TrainConfig {
            optimizer: OptimizerConfig {
                max_grad_norm: Some(0.0),
                ..OptimizerConfig::default()
            },
            ..TrainConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_grad_norm"));
    }
}
