//! [`SdpoTrainer`]: one training step is rollout → reward → reprompt → (teacher, student)
//! passes per mini-batch → optimizer step(s) → teacher update → metrics (DESIGN.md, steps 1–12).
//!
//! Built from burn-train / burn-optim parts: the [`Policy`] is a [`TrainStep`] module, the
//! optimizer is burn's AdamW adaptor, the schedule a burn [`LrScheduler`], gradient
//! accumulation burn's [`GradientsAccumulator`]. The trainer owns model, optimizer and
//! scheduler itself (as burn-train's `Learner` does) because `Learner` in 0.21 does not expose
//! its optimizer state outside burn-train except through a checkpointer that needs a private
//! event store, and resumable, atomic checkpoints need that state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use burn::train::TrainStep;

use sdpo_core::config::ConfigError;
use sdpo_core::policy::group_advantages;
use sdpo_core::reprompt::{plan_reprompts, SampleOutcome};
use sdpo_core::teacher::TeacherUpdateError;
use sdpo_core::{metrics as names, ChatMessage, RepromptTruncation, TeacherMode};
use sdpo_models::generate::{
    generate, left_pad, sampler_rng, GenerationError, SamplerRng, SamplingParams,
};
use sdpo_models::lora::{materialize, LoraSet};
use sdpo_models::scoring::{
    concat_prompt_response, response_log_probs, response_logits, ScoringError,
};
use sdpo_models::{CausalLm, Precision, PrecisionError, Tokenizer, TokenizerError};

use crate::checkpoint::{self, CheckpointError};
use crate::config::TrainConfig;
use crate::dataset::{Dataset, DatasetError, PromptSampler, Row, SamplerState};
use crate::grad_norm::clip_global_norm;
use crate::metrics_log::{Metrics, MetricsWriter};
use crate::policy::{Policy, StepItem, StepSettings, TeacherSignal, TrainBatch};
use crate::reward::{RewardInput, Rewards};
use crate::schedule::WarmupSchedule;
use crate::teacher::{teacher_for, Teacher, TeacherWeights};

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
    Step(String),
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
}

fn tok_err(context: impl Into<String>) -> impl FnOnce(TokenizerError) -> TrainError {
    let context = context.into();
    move |source| TrainError::Tokenizer { context, source }
}

/// One sample of a step, for logs, examples and test-time self-distillation.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRecord {
    /// Dataset row of its prompt.
    pub row: usize,
    /// Its group (prompt index within the step).
    pub group: usize,
    /// The decoded completion (special tokens skipped).
    pub completion: String,
    /// The weighted reward.
    pub score: f64,
    /// The rewards' feedback, if any.
    pub feedback: Option<String>,
    /// Whether the sample got a teacher signal (demonstration or feedback).
    pub reprompted: bool,
    /// The teacher's prompt as rendered text (the student's own prompt when not reprompted).
    pub teacher_prompt: String,
}

/// What one training step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Steps completed so far (1 after the first).
    pub step: usize,
    /// Metrics of this step, by name.
    pub metrics: Metrics,
    /// Every sample of the generation batch.
    pub samples: Vec<SampleRecord>,
    /// Warnings raised this step (also logged with `tracing`).
    pub warnings: Vec<String>,
}

/// Consecutive-step counters behind the "no learning signal" warnings.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
struct Health {
    steps_without_signal: usize,
    steps_with_flat_rewards: usize,
}

/// The serializable part of a checkpoint besides the Burn records.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct TrainerState {
    step: usize,
    schedule_steps: usize,
    rng: SamplerRng,
    sampler: SamplerState,
    health: Health,
    lora: bool,
    teacher_mode: String,
}

/// The SDPO trainer (library API). Generic over the autodiff backend; rollouts and teacher
/// passes run on its inner backend without a graph.
pub struct SdpoTrainer<B: AutodiffBackend> {
    cfg: TrainConfig,
    policy: Policy<B>,
    optim: OptimizerAdaptor<AdamW, Policy<B>, B>,
    schedule: WarmupSchedule,
    teacher: Teacher<B::InnerBackend>,
    tokenizer: Tokenizer,
    dataset: Dataset,
    sampler: PromptSampler,
    rewards: Rewards,
    rng: SamplerRng,
    sampling: SamplingParams,
    pad_id: u32,
    step: usize,
    health: Health,
    device: Device<B>,
}

impl<B: AutodiffBackend> SdpoTrainer<B> {
    /// A trainer for `model` (weights loaded), its tokenizer, a dataset and rewards.
    ///
    /// With `cfg.lora` the model is frozen and a fresh adapter set (seeded by `cfg.seed`) is
    /// trained. The model is cast to `cfg.precision` (the adapters stay f32). The teacher is
    /// built from the loaded weights.
    ///
    /// # Errors
    /// [`TrainError::Config`] for an invalid config; [`TrainError::Precision`] for a precision
    /// the device cannot run; [`TrainError::Dataset`] for an empty dataset or a batch size the
    /// sampler rejects.
    pub fn new(
        cfg: TrainConfig,
        model: CausalLm<B>,
        tokenizer: Tokenizer,
        dataset: Dataset,
        rewards: Rewards,
        device: &Device<B>,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        cfg.precision.check::<B>(device)?;
        B::seed(device, cfg.seed);
        // The (frozen) model in the configured precision; adapters are created in f32 below.
        // Cast on the inner backend, so every weight is a leaf again under autodiff.
        let model = match cfg.precision {
            Precision::F32 => model,
            precision => CausalLm::from_inner(precision.cast(model.valid())),
        };
        // A lazily initialized weight cloned into the teacher would draw its own values.
        materialize(&model);
        let policy = match &cfg.lora {
            Some(lora_cfg) => {
                let set = LoraSet::new(lora_cfg, &model.config, device)
                    .map_err(|e| TrainError::Lora(e.to_string()))?;
                materialize(&set);
                Policy::with_lora(model, set)
            }
            None => Policy::full(model),
        };
        let optim = AdamWConfig::new()
            .with_beta_1(cfg.optimizer.beta1 as f32)
            .with_beta_2(cfg.optimizer.beta2 as f32)
            .with_epsilon(cfg.optimizer.epsilon as f32)
            .with_weight_decay(cfg.optimizer.weight_decay as f32)
            .init::<B, Policy<B>>();
        let total_updates = cfg.steps * cfg.mini_batches;
        let schedule =
            WarmupSchedule::new(&cfg.schedule, cfg.optimizer.learning_rate, total_updates);
        let teacher = teacher_for(
            cfg.sdpo.teacher_mode,
            cfg.sdpo.teacher_update_rate,
            cfg.sdpo.teacher_sync_steps,
            &policy,
        );
        let sampler = dataset.sampler(cfg.prompts_per_step, cfg.seed)?;
        let mut sampling = cfg.sampling.clone();
        for &id in tokenizer.eos_token_ids() {
            if !sampling.stop_token_ids.contains(&id) {
                sampling.stop_token_ids.push(id);
            }
        }
        let pad_id = tokenizer
            .pad_token()
            .and_then(|p| tokenizer.token_to_id(p))
            .or_else(|| tokenizer.eos_token_ids().first().copied())
            .unwrap_or(0);
        Ok(Self {
            rng: sampler_rng(cfg.seed),
            cfg,
            policy,
            optim,
            schedule,
            teacher,
            tokenizer,
            dataset,
            sampler,
            rewards,
            sampling,
            pad_id,
            step: 0,
            health: Health::default(),
            device: device.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Steps completed.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The current policy (autodiff module).
    pub fn policy(&self) -> &Policy<B> {
        &self.policy
    }

    /// The teacher.
    pub fn teacher(&self) -> &Teacher<B::InnerBackend> {
        &self.teacher
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The training dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The rollout sampling settings (stop ids include the tokenizer's eos ids).
    pub fn sampling(&self) -> &SamplingParams {
        &self.sampling
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Renders chat messages with the tokenizer's chat template (generation prompt on) and
    /// encodes them; a tokenizer without a template gets the messages' contents joined by
    /// newlines. Keeps the last `max_len` tokens.
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`] naming `context`.
    pub fn encode_prompt(
        &self,
        messages: &[ChatMessage],
        max_len: usize,
        context: &str,
    ) -> Result<Vec<u32>, TrainError> {
        let text = self.render(messages, context)?;
        let mut ids = self
            .tokenizer
            .encode(&text, false)
            .map_err(tok_err(context))?;
        if ids.len() > max_len {
            ids.drain(..ids.len() - max_len);
        }
        Ok(ids)
    }

    fn render(&self, messages: &[ChatMessage], context: &str) -> Result<String, TrainError> {
        if self.tokenizer.chat_template().is_some() {
            self.tokenizer
                .apply_chat_template(messages, true)
                .map_err(tok_err(context))
        } else {
            Ok(messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }

    /// Samples `n` completions per row with the current policy and scores them, without
    /// training (evaluation, held-out success, test-time search). `rows` need not belong to
    /// the training dataset; [`SampleRecord::row`] is the index into `rows`. Draws from `rng`,
    /// not from the trainer's own generator, so evaluating does not change training.
    ///
    /// # Errors
    /// As [`Self::step`]'s rollout phase.
    pub fn sample_and_score(
        &self,
        rows: &[Row],
        n: usize,
        params: &SamplingParams,
        rng: &mut SamplerRng,
    ) -> Result<Vec<SampleRecord>, TrainError> {
        let inner = self.policy.valid();
        let mut prompt_ids = Vec::new();
        let mut of_row = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let ids = self.encode_prompt(
                &row.prompt.to_messages(),
                self.cfg.max_prompt_len,
                &format!("evaluation row {r} prompt"),
            )?;
            for _ in 0..n {
                prompt_ids.push(ids.clone());
                of_row.push(r);
            }
        }
        if prompt_ids.is_empty() {
            return Ok(Vec::new());
        }
        let (p_ids, p_mask) = left_pad::<B::InnerBackend>(&prompt_ids, self.pad_id, &self.device);
        let mut params = params.clone();
        params.stop_token_ids = self.sampling.stop_token_ids.clone();
        let gen = generate(&inner, p_ids, p_mask, &params, self.pad_id, rng)?;
        let texts = self.decode_all(&gen.tokens)?;
        let row_refs: Vec<&Row> = of_row.iter().map(|&r| &rows[r]).collect();
        let scored = self.score(&row_refs, &texts, &gen.tokens);
        Ok((0..texts.len())
            .map(|i| SampleRecord {
                row: of_row[i],
                group: of_row[i],
                completion: texts[i].clone(),
                score: scored[i].0,
                feedback: scored[i].1.clone(),
                reprompted: false,
                teacher_prompt: String::new(),
            })
            .collect())
    }

    fn row_messages(&self, row: usize) -> Result<Vec<ChatMessage>, TrainError> {
        self.dataset
            .get(row)
            .map(|r| r.prompt.to_messages())
            .ok_or(TrainError::RowOutOfRange {
                row,
                len: self.dataset.len(),
            })
    }

    fn decode_all(&self, tokens: &[Vec<u32>]) -> Result<Vec<String>, TrainError> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.tokenizer
                    .decode(t, true)
                    .map_err(tok_err(format!("completion {i}")))
            })
            .collect()
    }

    /// Weighted rewards per sample: (score, feedback, failed).
    fn score(
        &self,
        rows: &[&Row],
        texts: &[String],
        tokens: &[Vec<u32>],
    ) -> Vec<(f64, Option<String>, bool)> {
        let inputs: Vec<RewardInput<'_>> = (0..texts.len())
            .map(|i| {
                let row = rows[i];
                RewardInput {
                    prompt: &row.prompt,
                    completion: &texts[i],
                    completion_ids: &tokens[i],
                    row: &row.fields,
                }
            })
            .collect();
        self.rewards
            .evaluate(&inputs)
            .into_iter()
            .map(|s| (s.score, s.feedback, s.failed))
            .collect()
    }

    /// Runs one training step on the next prompts of the dataset.
    ///
    /// # Errors
    /// [`TrainError`] for what could not be done; the weights are unchanged when the error
    /// comes before the optimizer step.
    pub fn step(&mut self) -> Result<StepReport, TrainError> {
        let batch = self.sampler.next_batch();
        let rows = batch.rows();
        self.step_on_rows(&rows, self.cfg.num_generations)
    }

    /// One training step on explicit dataset rows, `num_generations` samples each.
    ///
    /// # Errors
    /// As [`Self::step`].
    pub fn step_on_rows(
        &mut self,
        rows: &[usize],
        num_generations: usize,
    ) -> Result<StepReport, TrainError> {
        let cfg = self.cfg.clone();
        let sd = &cfg.sdpo;
        let w = sd.distillation_weight;
        let t_step = Instant::now();
        let temperature = if self.sampling.is_greedy() {
            1.0
        } else {
            self.sampling.temperature
        };
        let dev = self.device.clone();

        // 1. Rollout.
        let t0 = Instant::now();
        let inner = self.policy.valid();
        let mut messages = Vec::new();
        let mut prompt_ids = Vec::new();
        let mut sample_rows = Vec::new();
        let mut groups = Vec::new();
        for (g, &row) in rows.iter().enumerate() {
            let msgs = self.row_messages(row)?;
            let ids = self.encode_prompt(
                &msgs,
                cfg.max_prompt_len,
                &format!("dataset row {row} prompt"),
            )?;
            for _ in 0..num_generations {
                messages.push(msgs.clone());
                prompt_ids.push(ids.clone());
                sample_rows.push(row);
                groups.push(g);
            }
        }
        let n = prompt_ids.len();
        let (p_ids, p_mask) = left_pad::<B::InnerBackend>(&prompt_ids, self.pad_id, &dev);
        let gen = generate(
            &inner,
            p_ids.clone(),
            p_mask.clone(),
            &self.sampling,
            self.pad_id,
            &mut self.rng,
        )?;
        let texts = self.decode_all(&gen.tokens)?;
        let time_rollout = t0.elapsed().as_secs_f64();

        // 2. Reward.
        let t0 = Instant::now();
        let row_refs: Vec<&Row> = sample_rows
            .iter()
            .map(|&r| &self.dataset.rows()[r])
            .collect();
        let scored = self.score(&row_refs, &texts, &gen.tokens);
        let scores: Vec<f64> = scored.iter().map(|s| s.0).collect();
        let failures = scored.iter().filter(|s| s.2).count();
        let time_reward = t0.elapsed().as_secs_f64();

        // 3–7. Reprompting: teacher prompts and the self-distillation mask.
        let outcomes: Vec<SampleOutcome<'_>> = (0..n)
            .map(|i| SampleOutcome {
                group: groups[i],
                prompt: &messages[i],
                response: &texts[i],
                score: scores[i],
                feedback: scored[i].1.as_deref(),
            })
            .collect();
        let plan = plan_reprompts(&outcomes, sd)?;
        let mut teacher_ids = Vec::with_capacity(n);
        let mut teacher_texts = Vec::with_capacity(n);
        for (i, tp) in plan.teachers.iter().enumerate() {
            if tp.reprompted() {
                let text = self.render(&tp.messages, &format!("teacher prompt of sample {i}"))?;
                let ids = self
                    .tokenizer
                    .encode(&text, false)
                    .map_err(tok_err(format!("teacher prompt of sample {i}")))?;
                teacher_ids.push(truncate(
                    ids,
                    sd.max_reprompt_len,
                    sd.reprompt_truncation,
                    i,
                )?);
                teacher_texts.push(text);
            } else {
                teacher_ids.push(prompt_ids[i].clone());
                teacher_texts.push(self.render(&messages[i], "student prompt")?);
            }
        }

        // Batch tensors (inner backend): student and teacher inputs share the response tokens.
        let r = gen.response_ids.dims()[1];
        let (s_ids, s_mask) = concat_prompt_response(
            p_ids,
            p_mask,
            gen.response_ids.clone(),
            gen.response_mask.clone(),
        );
        let (tp_ids, tp_mask) = left_pad::<B::InnerBackend>(&teacher_ids, self.pad_id, &dev);
        let (t_ids, t_mask) = concat_prompt_response(
            tp_ids,
            tp_mask,
            gen.response_ids.clone(),
            gen.response_mask.clone(),
        );
        let sd_mask = Tensor::<B::InnerBackend, 1>::from_data(
            TensorData::new(plan.self_distillation_mask.clone(), [n]),
            &dev,
        );
        let micro = if cfg.micro_batch_size == 0 {
            n
        } else {
            cfg.micro_batch_size
        };

        // Old log-probs, before the first update (IS clip and GRPO).
        let t0 = Instant::now();
        let need_old = sd.is_clip.is_some() || w < 1.0;
        let old_log_probs = if need_old {
            let mut parts = Vec::new();
            for chunk in chunks(0..n, micro) {
                let idx = index_tensor::<B::InnerBackend>(&chunk, &dev);
                let logits = response_logits(
                    &inner,
                    s_ids.clone().select(0, idx.clone()),
                    select_mask_rows(s_mask.clone(), idx.clone()),
                    r,
                    Some(temperature),
                )?;
                parts.push(response_log_probs(
                    logits,
                    gen.response_ids.clone().select(0, idx),
                ));
            }
            Some(Tensor::cat(parts, 0))
        } else {
            None
        };
        let mut time_student = t0.elapsed().as_secs_f64();

        // GRPO advantages, one per sample, broadcast over tokens.
        let advantages = (w < 1.0).then(|| {
            let adv = group_advantages(&scores, &groups, sd.norm_adv_by_std_in_grpo);
            let adv: Vec<f32> = adv.into_iter().map(|a| a as f32).collect();
            Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(adv, [n]), &dev)
                .reshape([n, 1])
                .expand([n, r])
        });

        // 8–11. Mini-batches: teacher pass, student pass, optimizer step.
        let mut time_teacher = 0.0;
        let mut time_update = 0.0;
        let mut items: Vec<StepItem> = Vec::new();
        let mut grad_norms = Vec::new();
        let mut skipped = 0usize;
        let mut lr = 0.0;
        for mini in split_even(n, cfg.mini_batches) {
            let micros = chunks(mini, micro);
            let loss_scale = 1.0 / micros.len() as f64;
            let settings = Arc::new(StepSettings {
                sdpo: sd.clone(),
                temperature,
                loss_scale,
            });
            let mut accumulator = GradientsAccumulator::<Policy<B>>::new();
            let mut finite = true;
            for rows_idx in micros {
                let idx = index_tensor::<B::InnerBackend>(&rows_idx, &dev);
                let t0 = Instant::now();
                let teacher = if w > 0.0 {
                    let student_now = self.policy.valid();
                    let logits = self.teacher.logits(
                        &student_now,
                        t_ids.clone().select(0, idx.clone()),
                        select_mask_rows(t_mask.clone(), idx.clone()),
                        r,
                        temperature,
                    )?;
                    let logits = Tensor::<B, 3>::from_inner(logits);
                    if self.teacher.mode() == TeacherMode::TrustRegion {
                        TeacherSignal::TrustRegion {
                            reference: logits,
                            rate: sd.teacher_update_rate,
                        }
                    } else {
                        TeacherSignal::Logits(logits)
                    }
                } else {
                    TeacherSignal::None
                };
                time_teacher += t0.elapsed().as_secs_f64();
                let t0 = Instant::now();
                let batch = TrainBatch {
                    ids: Tensor::from_inner(s_ids.clone().select(0, idx.clone())),
                    mask: Tensor::from_inner(select_mask_rows(s_mask.clone(), idx.clone())),
                    response_ids: Tensor::from_inner(
                        gen.response_ids.clone().select(0, idx.clone()),
                    ),
                    response_mask: Tensor::from_inner(
                        gen.response_mask.clone().select(0, idx.clone()),
                    ),
                    self_distillation_mask: Tensor::from_inner(
                        sd_mask.clone().select(0, idx.clone()),
                    ),
                    teacher,
                    old_log_probs: old_log_probs
                        .as_ref()
                        .map(|t| Tensor::from_inner(t.clone().select(0, idx.clone()))),
                    advantages: advantages
                        .as_ref()
                        .map(|t| Tensor::from_inner(t.clone().select(0, idx.clone()))),
                    settings: settings.clone(),
                };
                let out = TrainStep::step(&self.policy, batch);
                if let Some(e) = &out.item.error {
                    return Err(TrainError::Step(e.clone()));
                }
                finite &= out.item.loss.is_finite();
                items.push(out.item);
                accumulator.accumulate(&self.policy, out.grads);
                time_student += t0.elapsed().as_secs_f64();
            }
            let t0 = Instant::now();
            let mut grads = accumulator.grads();
            let norm = match cfg.optimizer.max_grad_norm {
                Some(max) => clip_global_norm::<B, _>(&self.policy, &mut grads, max),
                None => crate::grad_norm::global_norm::<B, _>(&self.policy, &grads),
            };
            grad_norms.push(norm);
            lr = self.schedule.step();
            if finite && norm.is_finite() {
                self.policy = self.policy.clone().optimize(&mut self.optim, lr, grads);
            } else {
                skipped += 1;
                tracing::warn!(
                    step = self.step + 1,
                    "non-finite loss or gradient norm: optimizer step skipped"
                );
            }
            time_update += t0.elapsed().as_secs_f64();
        }
        self.step += 1;

        // Teacher update (after the step's updates).
        let t0 = Instant::now();
        let student_now = self.policy.valid();
        self.teacher.update(&student_now, self.step)?;
        time_teacher += t0.elapsed().as_secs_f64();

        // Metrics and warnings.
        let mut m = Metrics::new();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let reward_mean = mean(&scores);
        let reward_std = (scores
            .iter()
            .map(|s| (s - reward_mean).powi(2))
            .sum::<f64>()
            / n.max(1) as f64)
            .sqrt();
        let lengths: Vec<f64> = gen.tokens.iter().map(|t| t.len() as f64).collect();
        let total_tokens: f64 = lengths.iter().sum();
        let time_total = t_step.elapsed().as_secs_f64();
        m.insert("step".into(), self.step as f64);
        m.insert(
            names::LOSS.into(),
            mean(&items.iter().map(|i| i.loss).collect::<Vec<_>>()),
        );
        let opt_mean = |f: fn(&StepItem) -> Option<f64>| {
            let v: Vec<f64> = items.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| mean(&v))
        };
        if let Some(v) = opt_mean(|i| i.distillation_loss) {
            m.insert("loss/distillation".into(), v);
        }
        if let Some(v) = opt_mean(|i| i.policy_loss) {
            m.insert("loss/policy".into(), v);
        }
        if let Some(v) = opt_mean(|i| i.clip_fraction) {
            m.insert("policy/clip_fraction".into(), v);
        }
        if let Some(v) = opt_mean(|i| i.mean_is_weight) {
            m.insert("self_distillation/is_weight_mean".into(), v);
        }
        m.insert("grad_norm".into(), mean(&grad_norms));
        m.insert("optimizer/skipped_steps".into(), skipped as f64);
        m.insert(names::LEARNING_RATE.into(), lr);
        m.insert(names::REWARD_MEAN.into(), reward_mean);
        m.insert(names::REWARD_STD.into(), reward_std);
        m.insert("reward/failures".into(), failures as f64);
        m.insert(names::RESPONSE_LENGTH.into(), mean(&lengths));
        m.insert(
            "response_length/max".into(),
            lengths.iter().copied().fold(0.0, f64::max),
        );
        m.insert(
            names::TOKENS_PER_SECOND.into(),
            total_tokens / time_total.max(1e-9),
        );
        for (k, v) in plan.metrics.named() {
            m.insert(k.into(), v);
        }
        m.insert("time/rollout".into(), time_rollout);
        m.insert("time/reward".into(), time_reward);
        m.insert("time/teacher".into(), time_teacher);
        m.insert("time/student".into(), time_student);
        m.insert("time/update".into(), time_update);
        m.insert("time/step".into(), time_total);

        let mut warnings = Vec::new();
        let signal = plan.self_distillation_mask.iter().any(|&x| x > 0.0);
        self.health.steps_without_signal = if signal {
            0
        } else {
            self.health.steps_without_signal + 1
        };
        self.health.steps_with_flat_rewards = if reward_std > 0.0 {
            0
        } else {
            self.health.steps_with_flat_rewards + 1
        };
        let k = cfg.warn_after_steps;
        if k > 0 && w > 0.0 && self.health.steps_without_signal >= k {
            warnings.push(format!(
                "no sample has had a teacher signal (a successful peer or feedback) for {} steps: the distillation loss is zero; check the rewards, success_reward_threshold and include_environment_feedback",
                self.health.steps_without_signal
            ));
        }
        if k > 0 && self.health.steps_with_flat_rewards >= k {
            warnings.push(format!(
                "rewards have been identical across all samples for {} steps (mean {reward_mean}): no sample is better than another",
                self.health.steps_with_flat_rewards
            ));
        }
        for w in &warnings {
            tracing::warn!(step = self.step, "{w}");
        }
        m.insert(
            "warning/steps_without_teacher_signal".into(),
            self.health.steps_without_signal as f64,
        );
        m.insert(
            "warning/steps_with_flat_rewards".into(),
            self.health.steps_with_flat_rewards as f64,
        );

        let samples = (0..n)
            .map(|i| SampleRecord {
                row: sample_rows[i],
                group: groups[i],
                completion: texts[i].clone(),
                score: scores[i],
                feedback: scored[i].1.clone(),
                reprompted: plan.teachers[i].reprompted(),
                teacher_prompt: teacher_texts[i].clone(),
            })
            .collect();
        Ok(StepReport {
            step: self.step,
            metrics: m,
            samples,
            warnings,
        })
    }

    /// Runs the remaining steps (up to `config().steps`), writing each step's metrics to
    /// `run_dir/metrics.jsonl` (or `.csv`) and to the `tracing` log, a checkpoint to
    /// `run_dir/checkpoints/` every `checkpoint_every` steps and after the last step, and
    /// calling `on_step` with each report (e.g. to drive a progress bar or stop early by
    /// returning `false`).
    ///
    /// # Errors
    /// The first [`TrainError`]; metrics written and checkpoints saved so far stay on disk.
    pub fn fit(
        &mut self,
        run_dir: &Path,
        mut on_step: impl FnMut(&StepReport) -> bool,
    ) -> Result<(), TrainError> {
        let mut writer =
            MetricsWriter::open(run_dir, self.cfg.metrics_format).map_err(|source| {
                CheckpointError::Io {
                    path: run_dir.to_path_buf(),
                    source,
                }
            })?;
        let checkpoints = run_dir.join("checkpoints");
        while self.step < self.cfg.steps {
            let report = self.step()?;
            writer
                .write(&report.metrics)
                .map_err(|source| CheckpointError::Io {
                    path: writer.path().to_path_buf(),
                    source,
                })?;
            let m = &report.metrics;
            tracing::info!(
                step = report.step,
                reward = m.get(names::REWARD_MEAN).copied().unwrap_or(f64::NAN),
                loss = m.get(names::LOSS).copied().unwrap_or(f64::NAN),
                seconds = m.get("time/step").copied().unwrap_or(f64::NAN),
                "step"
            );
            let every = self.cfg.checkpoint_every;
            let last = self.step == self.cfg.steps;
            if last || (every > 0 && self.step.is_multiple_of(every)) {
                self.save_checkpoint(&checkpoints)?;
            }
            if !on_step(&report) {
                self.save_checkpoint(&checkpoints)?;
                break;
            }
        }
        Ok(())
    }

    /// Writes a checkpoint of everything a bit-identical resume needs (trainable weights,
    /// optimizer, schedule, teacher, RNG and sampler state, step) as `dir/step-N`, atomically.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] naming the path.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf, TrainError> {
        let name = checkpoint::step_dir_name(self.step);
        let p = |f: &str| dir.join(&name).join(f);
        let weights = match &self.policy.lora {
            Some(lora) => {
                checkpoint::encode_record::<B, _>(lora.clone().into_record(), &p("adapters.mpk"))?
            }
            None => checkpoint::encode_record::<B, _>(
                self.policy.lm.clone().into_record(),
                &p("model.mpk"),
            )?,
        };
        let optim = checkpoint::encode_record::<B, _>(self.optim.to_record(), &p("optimizer.mpk"))?;
        let mut files: Vec<(&str, Vec<u8>)> = vec![
            (
                if self.policy.lora.is_some() {
                    "adapters.mpk"
                } else {
                    "model.mpk"
                },
                weights,
            ),
            ("optimizer.mpk", optim),
        ];
        if let Some(tw) = self.teacher.weights() {
            files.push((
                "teacher.mpk",
                checkpoint::encode_record::<B::InnerBackend, _>(
                    tw.clone().into_record(),
                    &p("teacher.mpk"),
                )?,
            ));
        }
        let state = TrainerState {
            step: self.step,
            schedule_steps: self.schedule.steps_taken(),
            rng: self.rng.clone(),
            sampler: self.sampler.state(),
            health: self.health.clone(),
            lora: self.policy.lora.is_some(),
            teacher_mode: self.cfg.sdpo.teacher_mode.as_str().to_string(),
        };
        let state = serde_json::to_vec_pretty(&state).map_err(|e| CheckpointError::Mismatch {
            path: p("state.json"),
            reason: e.to_string(),
        })?;
        files.push(("state.json", state));
        files.push(("config.ron", self.cfg.to_ron_string().into_bytes()));
        let path = checkpoint::write_checkpoint(dir, &name, &files)?;
        checkpoint::prune_checkpoints(dir, self.cfg.keep_checkpoints)?;
        Ok(path)
    }

    /// Restores a checkpoint written by [`Self::save_checkpoint`] into a trainer built the same
    /// way (same config, model source, dataset and rewards).
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] naming the file that is missing, corrupt or from another
    /// kind of run.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<(), TrainError> {
        let state_path = path.join("state.json");
        let bytes = std::fs::read(&state_path).map_err(|source| CheckpointError::Io {
            path: state_path.clone(),
            source,
        })?;
        let state: TrainerState =
            serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Mismatch {
                path: state_path.clone(),
                reason: format!("not a trainer state: {e}"),
            })?;
        if state.lora != self.policy.lora.is_some()
            || state.teacher_mode != self.cfg.sdpo.teacher_mode.as_str()
        {
            return Err(CheckpointError::Mismatch {
                path: state_path,
                reason: format!(
                    "written by a run with lora = {}, teacher_mode = {}; this run has lora = {}, teacher_mode = {}",
                    state.lora,
                    state.teacher_mode,
                    self.policy.lora.is_some(),
                    self.cfg.sdpo.teacher_mode.as_str()
                ),
            }
            .into());
        }
        let dev = self.device.clone();
        self.policy = match self.policy.lora.take() {
            Some(lora) => {
                let rec = checkpoint::read_record::<B, _>(&path.join("adapters.mpk"), &dev)?;
                let mut policy = self.policy.clone();
                policy.lora = Some(lora.load_record(rec));
                policy
            }
            None => {
                let rec = checkpoint::read_record::<B, _>(&path.join("model.mpk"), &dev)?;
                let mut policy = self.policy.clone();
                policy.lm = policy.lm.load_record(rec);
                policy
            }
        };
        let rec = checkpoint::read_record::<B, _>(&path.join("optimizer.mpk"), &dev)?;
        self.optim = self.optim.clone().load_record(rec);
        if let Some(tw) = self.teacher.weights().cloned() {
            let rec =
                checkpoint::read_record::<B::InnerBackend, _>(&path.join("teacher.mpk"), &dev)?;
            self.teacher
                .set_weights(Some(TeacherWeights::load_record(tw, rec)));
        }
        self.schedule = LrScheduler::load_record::<B>(self.schedule.clone(), state.schedule_steps);
        self.sampler = self.dataset.resume_sampler(state.sampler)?;
        self.rng = state.rng;
        self.health = state.health;
        self.step = state.step;
        Ok(())
    }
}

/// Applies `max_reprompt_len` with the configured truncation side.
fn truncate(
    mut ids: Vec<u32>,
    max: usize,
    side: RepromptTruncation,
    sample: usize,
) -> Result<Vec<u32>, TrainError> {
    if ids.len() <= max {
        return Ok(ids);
    }
    match side {
        RepromptTruncation::Left => {
            ids.drain(..ids.len() - max);
            Ok(ids)
        }
        RepromptTruncation::Right => {
            ids.truncate(max);
            Ok(ids)
        }
        RepromptTruncation::Error => Err(TrainError::RepromptTooLong {
            sample,
            len: ids.len(),
            max,
        }),
    }
}

/// `0..n` split into `parts` contiguous ranges whose sizes differ by at most one.
fn split_even(n: usize, parts: usize) -> Vec<Vec<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (p * n / parts..(p + 1) * n / parts).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .collect()
}

/// Consecutive chunks of at most `size` items.
fn chunks(items: impl IntoIterator<Item = usize>, size: usize) -> Vec<Vec<usize>> {
    let items: Vec<usize> = items.into_iter().collect();
    items.chunks(size.max(1)).map(|c| c.to_vec()).collect()
}

fn index_tensor<B: Backend>(rows: &[usize], device: &Device<B>) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_data(TensorData::new(v, [rows.len()]), device)
}

/// Rows `rows` of a boolean mask. Selected through integers: burn-flex 0.21's `bool_select`
/// returns a tensor tagged `U8` instead of `Bool`, which its later boolean ops reject.
fn select_mask_rows<B: Backend>(
    mask: Tensor<B, 2, Bool>,
    rows: Tensor<B, 1, Int>,
) -> Tensor<B, 2, Bool> {
    mask.int().select(0, rows).equal_elem(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_every_sample_once() {
        assert_eq!(split_even(5, 2), vec![vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(split_even(3, 5).len(), 3);
        assert_eq!(chunks(0..5, 2), vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn truncation_sides() {
        let ids = vec![1, 2, 3, 4];
        assert_eq!(
            truncate(ids.clone(), 2, RepromptTruncation::Left, 0).unwrap(),
            vec![3, 4]
        );
        assert_eq!(
            truncate(ids.clone(), 2, RepromptTruncation::Right, 0).unwrap(),
            vec![1, 2]
        );
        let e = truncate(ids, 2, RepromptTruncation::Error, 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sample 7") && e.contains("4 tokens"), "{e}");
    }
}
