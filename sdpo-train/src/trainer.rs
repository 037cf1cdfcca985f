//! [`SdpoTrainer`]: one training step is rollout → reward → reprompt → teacher → update, each
//! a component of its own (docs/ARCHITECTURE.md):
//!
//! | phase    | component                                        | produces                     |
//! |----------|--------------------------------------------------|------------------------------|
//! | rollout  | [`Rollout`] (with [`Prompts`])                   | samples, texts, token ids    |
//! | reward   | [`score_rollout`]                                | [`Scored`] per sample        |
//! | reprompt | [`plan_reprompts`] + [`TeacherInputs`]           | teacher ids, the SD mask     |
//! | teacher  | [`Teacher::logits`] (every mode forms its own)   | teacher logits per pass      |
//! | update   | [`StepBatch`] passes, [`Updater`], [`Policy::loss`] | gradients, optimizer updates |
//! | metrics  | [`StepMetrics`]                                  | the step's metrics by name   |
//!
//! The trainer owns model, optimizer and schedule itself (as burn-train's `Learner` does)
//! because `Learner` in 0.21 exposes its optimizer state only through a checkpointer that needs
//! a private event store, and resumable, atomic checkpoints need that state. It is generic over
//! Burn's [`Optimizer`] and [`LrScheduler`]: AdamW and [`WarmupSchedule`] by default, any other
//! through [`SdpoTrainer::with_optimizer`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::TrainBackend;
use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Device, Tensor};

use rand::Rng;
use sdpo_core::policy::group_advantages;
use sdpo_core::reprompt::{plan_reprompts, RepromptPlan, SampleOutcome};
use sdpo_core::{metrics as names, ChatMessage, RolloutIsLevel};
use sdpo_models::generate::{sampler_rng, RowStreams, SamplerRng, SamplingParams};
use sdpo_models::lora::{materialize, LoraSet};
use sdpo_models::{CausalLm, Precision, Tokenizer};

use crate::checkpoint::{self, CheckpointError};
use crate::collective::{broadcast_bytes, Collective, SingleProcess};
use crate::config::{OptimizerConfig, TrainConfig};
use crate::data_parallel::{
    check_parameters, loss_shares, loss_tokens, parameter_checksum, reduce_metrics, LossShares,
};
use crate::dataset::{Dataset, PromptSampler, Row, SamplerState};
use crate::metrics_log::{Metrics, MetricsWriter};
use crate::model_identity::{ModelIdentity, IDENTITY_FILE};
use crate::phase_clock::{timed, PhaseTime, Span};
use crate::policy::{Policy, StepSettings, TeacherSignal};
use crate::prompts::Prompts;
use crate::reward::{Rewards, Scored};
use crate::reward_failures::RewardFailures;
use crate::rollout::{requests, Rollout};
use crate::schedule::WarmupSchedule;
use crate::scoring::score_rollout;
use crate::step_batch::StepBatch;
use crate::step_metrics::{mean_std, PhaseTimes, ResponseStats, RewardStats, StepMetrics};
use crate::teacher::{teacher_for, Teacher};
use crate::teacher_inputs::TeacherInputs;
use crate::teacher_probe::{probe_teacher, ProbeContext, ProbeReport};
use crate::tensorboard::EventWriter;
use crate::updater::{old_log_probs, BatchSplit, UpdateOutcome, Updater};

pub use crate::error::TrainError;

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

impl StepReport {
    /// `first` in front of the report's warnings, every one logged with `tracing`.
    fn with_warnings_first(mut self, mut first: Vec<String>) -> Self {
        first.append(&mut self.warnings);
        for w in &first {
            tracing::warn!(step = self.step, "{w}");
        }
        self.warnings = first;
        self
    }
}

/// Consecutive-step counters behind the "no learning signal" warnings.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
struct Health {
    steps_without_signal: usize,
    steps_with_flat_rewards: usize,
    #[serde(default)]
    reward_failures: RewardFailures,
}

impl Health {
    /// Counts this step (whether any sample had a teacher signal, the reward spread) and
    /// returns the warnings due after `warn_after` such steps in a row (0 = never).
    fn observe(
        &mut self,
        signal: bool,
        distills: bool,
        reward: &RewardStats,
        warn_after: usize,
    ) -> Vec<String> {
        self.steps_without_signal = if signal {
            0
        } else {
            self.steps_without_signal + 1
        };
        self.steps_with_flat_rewards = if reward.std > 0.0 {
            0
        } else {
            self.steps_with_flat_rewards + 1
        };
        let mut warnings = Vec::new();
        if warn_after > 0 && distills && self.steps_without_signal >= warn_after {
            warnings.push(format!(
                "no sample has had a teacher signal (a successful peer or feedback) for {} steps: the distillation loss is zero; check the rewards, success_reward_threshold and include_environment_feedback",
                self.steps_without_signal
            ));
        }
        if warn_after > 0 && self.steps_with_flat_rewards >= warn_after {
            warnings.push(format!(
                "rewards have been identical across all samples for {} steps (mean {}): no sample is better than another",
                self.steps_with_flat_rewards, reward.mean
            ));
        }
        warnings
    }
}

/// The serializable part of a checkpoint besides the Burn records.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct TrainerState {
    step: usize,
    rng: SamplerRng,
    sampler: SamplerState,
    health: Health,
    lora: bool,
    teacher_mode: String,
    /// Prompts per step and samples per prompt (absent in checkpoints of older versions).
    #[serde(default)]
    batch: Option<(usize, usize)>,
}

/// Whether [`SdpoTrainer::fit`] goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Run the next step.
    Continue,
    /// Stop here (the end hook and the final checkpoint still run).
    Stop,
}

/// What [`SdpoTrainer::fit`] calls around the steps; every method defaults to doing nothing.
/// A closure `FnMut(&StepReport) -> bool` is a hook set too (`false` stops).
pub trait FitHooks<B: TrainBackend, O, S> {
    /// The hooks' error; training errors convert into it.
    type Error: From<TrainError>;

    /// After each step, its metrics written: report progress, evaluate, or stop.
    ///
    /// # Errors
    /// Whatever the hook fails with; `fit` stops and returns it.
    fn after_step(
        &mut self,
        _trainer: &SdpoTrainer<B, O, S>,
        _report: &StepReport,
    ) -> Result<Flow, Self::Error> {
        Ok(Flow::Continue)
    }

    /// After a checkpoint of step `step` was written to `path`.
    ///
    /// # Errors
    /// As [`Self::after_step`].
    fn after_checkpoint(&mut self, _step: usize, _path: &Path) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Once, after the last step (or a stop), before the final checkpoint: e.g. a final
    /// evaluation.
    ///
    /// # Errors
    /// As [`Self::after_step`].
    fn before_end(&mut self, _trainer: &SdpoTrainer<B, O, S>) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Scalars the hooks computed since the last call (e.g. held-out evaluations), each with
    /// its step, for the TensorBoard file: `fit` takes them when it starts and after each
    /// other hook.
    fn take_scalars(&mut self) -> Vec<(usize, Metrics)> {
        Vec::new()
    }
}

impl<B: TrainBackend, O, S, F: FnMut(&StepReport) -> bool> FitHooks<B, O, S> for F {
    type Error = TrainError;

    fn after_step(
        &mut self,
        _trainer: &SdpoTrainer<B, O, S>,
        report: &StepReport,
    ) -> Result<Flow, TrainError> {
        Ok(match self(report) {
            true => Flow::Continue,
            false => Flow::Stop,
        })
    }
}

/// The default optimizer: Burn's AdamW over the policy.
pub type AdamWOptimizer<B> = OptimizerAdaptor<AdamW, Policy<B>, B>;

/// AdamW with the run's settings.
pub fn adamw<B: TrainBackend>(cfg: &OptimizerConfig) -> AdamWOptimizer<B> {
    AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.epsilon as f32)
        .with_weight_decay(cfg.weight_decay as f32)
        .init::<B, Policy<B>>()
}

/// The SDPO trainer (library API). Generic over the autodiff backend, the optimizer and the
/// learning-rate schedule; rollouts and teacher passes run on the inner backend without a
/// graph.
pub struct SdpoTrainer<B: TrainBackend, O = AdamWOptimizer<B>, S = WarmupSchedule> {
    cfg: TrainConfig,
    policy: Policy<B>,
    updater: Updater<B, O, S>,
    teacher: Teacher<B::InnerBackend>,
    prompts: Prompts,
    dataset: Dataset,
    sampler: PromptSampler,
    rewards: Rewards,
    rng: SamplerRng,
    sampling: SamplingParams,
    step: usize,
    health: Health,
    device: Device<B>,
    /// The data-parallel ranks this trainer is one of ([`SingleProcess`] alone).
    collective: Arc<dyn Collective<B::InnerBackend>>,
    /// The config text of the TensorBoard file ([`Self::set_tensorboard_config`]).
    tensorboard_config: Option<String>,
}

impl<B: TrainBackend> SdpoTrainer<B> {
    /// A trainer for `model` (weights loaded), its tokenizer, a dataset and rewards, with
    /// AdamW and the warmup schedule of `cfg`.
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
        // One learning rate per training step, shared by its mini-batch updates.
        let schedule = WarmupSchedule::new(&cfg.schedule, cfg.optimizer.learning_rate, cfg.steps);
        let updater = Updater::new(
            adamw::<B>(&cfg.optimizer),
            schedule,
            cfg.optimizer.max_grad_norm,
            batch_split(&cfg),
        );
        let teacher = teacher_for(
            cfg.sdpo.teacher_mode,
            cfg.sdpo.teacher_update_rate,
            cfg.sdpo.teacher_sync_steps,
            &policy,
        );
        let sampler = dataset.sampler(cfg.prompts_per_step, cfg.seed)?;
        let budget = cfg.prompt_budget(policy.lm.config.max_position_embeddings)?;
        if budget.reprompt_capped {
            tracing::info!(
                "teacher prompts are capped at {} tokens (sdpo.max_reprompt_len = {}): the model has {} positions",
                budget.max_reprompt_len,
                cfg.sdpo.max_reprompt_len,
                policy.lm.config.max_position_embeddings
            );
        }
        let mut cfg = cfg;
        cfg.sdpo.max_reprompt_len = budget.max_reprompt_len;
        let mut sampling = cfg.sampling.clone();
        for &id in tokenizer.eos_token_ids() {
            if !sampling.stop_token_ids.contains(&id) {
                sampling.stop_token_ids.push(id);
            }
        }
        Ok(Self {
            rng: sampler_rng(cfg.seed),
            prompts: Prompts::new(tokenizer, budget.max_prompt_len)
                .with_template_kwargs(cfg.chat_template_kwargs.clone()),
            cfg,
            policy,
            updater,
            teacher,
            dataset,
            sampler,
            rewards,
            sampling,
            step: 0,
            health: Health::default(),
            device: device.clone(),
            collective: Arc::new(SingleProcess),
            tensorboard_config: None,
        })
    }
}

impl<B: TrainBackend, O, S> SdpoTrainer<B, O, S> {
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

    /// The teacher, to change (e.g. to start from other teacher weights with
    /// [`Teacher::set_weights`]).
    pub fn teacher_mut(&mut self) -> &mut Teacher<B::InnerBackend> {
        &mut self.teacher
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        self.prompts.tokenizer()
    }

    /// The prompt encoder (chat template, padding, prompt length limit).
    pub fn prompts(&self) -> &Prompts {
        &self.prompts
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
        self.prompts.pad_id()
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
        self.prompts
            .encode_prompt_within(messages, max_len, context)
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
        let prompts = rows
            .iter()
            .enumerate()
            .map(|(r, row)| (r, row.prompt.to_messages()));
        let requests = requests(&self.prompts, prompts, n, "evaluation row")?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let params = SamplingParams {
            stop_token_ids: self.sampling.stop_token_ids.clone(),
            ..params.clone()
        };
        let rollout = Rollout::run(
            &self.policy.valid(),
            &self.prompts,
            requests,
            &params,
            rng,
            &self.device,
        )?;
        let row_refs: Vec<&Row> = rollout.requests.iter().map(|r| &rows[r.row]).collect();
        let scored = score_rollout(&self.rewards, &row_refs, &rollout);
        Ok(sample_records(&rollout, scored, None))
    }
}

impl<B, O, S> SdpoTrainer<B, O, S>
where
    B: TrainBackend,
    O: Optimizer<Policy<B>, B>,
    S: LrScheduler,
{
    /// The same trainer with another optimizer and schedule (before any step: the state of
    /// the current ones is dropped). The schedule is stepped once per training step;
    /// `optimizer.max_grad_norm`, `mini_batches` and `micro_batch_size` of the config still
    /// apply.
    pub fn with_optimizer<O2, S2>(self, optimizer: O2, schedule: S2) -> SdpoTrainer<B, O2, S2>
    where
        O2: Optimizer<Policy<B>, B>,
        S2: LrScheduler,
    {
        let mut updater = Updater::new(
            optimizer,
            schedule,
            self.cfg.optimizer.max_grad_norm,
            batch_split(&self.cfg),
        );
        updater.set_collective(self.collective.clone());
        SdpoTrainer {
            cfg: self.cfg,
            policy: self.policy,
            updater,
            teacher: self.teacher,
            prompts: self.prompts,
            dataset: self.dataset,
            sampler: self.sampler,
            rewards: self.rewards,
            rng: self.rng,
            sampling: self.sampling,
            step: self.step,
            health: self.health,
            device: self.device,
            collective: self.collective,
            tensorboard_config: self.tensorboard_config,
        }
    }

    /// Makes this trainer one rank of data-parallel training over `collective` (before the
    /// first step; every rank built the same way): each step trains on this rank's share of
    /// the prompts (`prompts_per_step` is the global batch), divides the loss by the global
    /// token count, sums the gradients over the ranks and takes the same optimizer step as the
    /// others; its metrics are combined over the ranks. See docs/distributed.md.
    ///
    /// # Errors
    /// [`TrainError::Config`] when the batch does not split over the ranks
    /// ([`TrainConfig::validate_world`]).
    pub fn set_collective(
        &mut self,
        collective: Arc<dyn Collective<B::InnerBackend>>,
    ) -> Result<(), TrainError> {
        self.cfg.validate_world(collective.world_size())?;
        self.updater.set_collective(collective.clone());
        self.collective = collective;
        Ok(())
    }

    /// The text [`Self::fit`] records as the run's config in the TensorBoard file (tag
    /// `config`), e.g. the whole run config a command line resolved; by default the trainer's
    /// own [`TrainConfig`] in RON.
    pub fn set_tensorboard_config(&mut self, text: String) {
        self.tensorboard_config = Some(text);
    }

    /// This trainer's rank and the number of ranks (`(0, 1)` in one process).
    pub fn rank(&self) -> (usize, usize) {
        (self.collective.rank(), self.collective.world_size())
    }

    /// Runs one training step on the next prompts of the dataset.
    ///
    /// # Errors
    /// [`TrainError`] for what could not be done; the weights are unchanged when the error
    /// comes before the optimizer step.
    pub fn step(&mut self) -> Result<StepReport, TrainError> {
        let batch = self.sampler.next_batch();
        let rows = batch.rows();
        // Every rank draws the same global batch and trains on its contiguous share.
        let (rank, world) = self.rank();
        let per_rank = rows.len() / world;
        let mine = &rows[rank * per_rank..(rank + 1) * per_rank];
        let report = self.step_on(mine, self.cfg.num_generations, rank * per_rank)?;
        let every = self.cfg.distributed.checksum_every;
        if world > 1 && every > 0 && self.step.is_multiple_of(every) {
            self.check_parameters()?;
        }
        Ok(report)
    }

    /// Compares the ranks' parameters (nothing to compare in one process).
    ///
    /// # Errors
    /// [`TrainError::Collective`] naming the ranks that differ from rank 0.
    pub fn check_parameters(&self) -> Result<(), TrainError> {
        if self.collective.world_size() > 1 {
            let checksum = parameter_checksum(&self.policy);
            check_parameters(self.collective.as_ref(), checksum, self.step)?;
        }
        Ok(())
    }

    /// One training step on explicit dataset rows, `num_generations` samples each:
    /// rollout → reward → reprompt → teacher and student passes with optimizer updates →
    /// teacher update → metrics. On a data-parallel rank, `rows` are this rank's.
    ///
    /// # Errors
    /// As [`Self::step`].
    pub fn step_on_rows(
        &mut self,
        rows: &[usize],
        num_generations: usize,
    ) -> Result<StepReport, TrainError> {
        self.step_on(rows, num_generations, 0)
    }

    /// [`Self::step_on_rows`] for prompt groups numbered from `first_group` in the global
    /// batch (the sample streams are numbered globally, so ranks draw what one process would).
    fn step_on(
        &mut self,
        rows: &[usize],
        num_generations: usize,
        first_group: usize,
    ) -> Result<StepReport, TrainError> {
        let step_span = Span::start();
        let mut times = PhaseTimes::default();
        let rollout = timed(&mut times.rollout, || {
            self.rollout(rows, num_generations, first_group)
        })?;
        let scored = timed(&mut times.reward, || self.score(&rollout));
        let failure_reports = self.health.reward_failures.observe(
            &scored,
            self.step + 1,
            self.cfg.stop_after_failed_reward_steps,
        )?;
        let plan = plan_reprompts(&outcomes(&rollout, &scored), &self.cfg.sdpo)?;
        let teacher_inputs =
            TeacherInputs::build(&plan, &rollout, &self.prompts, &self.cfg.sdpo, &self.device)?;
        let probe = match self.probe_due() {
            true => Some(timed(&mut times.probe, || {
                self.probe(&rollout, &scored, &plan, &teacher_inputs)
            })?),
            false => None,
        };
        let mut comm = Communication::default();
        let passes = self.update(&rollout, &scored, &teacher_inputs, &mut times, &mut comm)?;
        self.step += 1;
        // The teacher moves only after an update that happened (verl's order).
        if passes.outcome.applied() > 0 {
            timed(&mut times.teacher, || {
                self.teacher.update(&self.policy.valid(), self.step)
            })?;
        }
        times.update = passes.outcome.update_time;
        // The probe is a diagnostic: the step's time leaves it out.
        times.step = step_span.elapsed().without(times.probe);
        let report = self.report(rollout, scored, plan, teacher_inputs, passes, times, probe);
        let report = self.combine_ranks(report, comm)?;
        Ok(report.with_warnings_first(failure_reports))
    }

    /// The report with its metrics combined over the data-parallel ranks (as it is in one
    /// process), the communication figures added.
    fn combine_ranks(
        &self,
        mut report: StepReport,
        comm: Communication,
    ) -> Result<StepReport, TrainError> {
        let world = self.collective.world_size();
        if world == 1 {
            return Ok(report);
        }
        let t0 = Instant::now();
        let m = &mut report.metrics;
        m.insert(names::WORLD_SIZE.into(), world as f64);
        m.insert(names::REDUCED_BYTES.into(), comm.reduced_bytes as f64);
        m.insert(names::RANK_TOKENS_MIN.into(), comm.loss_tokens);
        m.insert(names::RANK_TOKENS_MAX.into(), comm.loss_tokens);
        let seconds = comm.seconds;
        m.insert(names::TIME_COMMUNICATION.into(), seconds);
        let mut combined = reduce_metrics(self.collective.as_ref(), m)?;
        if let Some(t) = combined.get_mut(names::TIME_COMMUNICATION) {
            *t += t0.elapsed().as_secs_f64();
        }
        report.metrics = combined;
        Ok(report)
    }

    /// The rollout phase: `n` samples for each of `rows` (groups `first_group..` of the
    /// global batch) from the current policy. Sample `i` of the global batch draws from
    /// stream `i` of a key drawn from the trainer's generator once per step, so the samples
    /// do not depend on how the batch is split over ranks.
    fn rollout(
        &mut self,
        rows: &[usize],
        n: usize,
        first_group: usize,
    ) -> Result<Rollout<B::InnerBackend>, TrainError> {
        let messages = rows
            .iter()
            .map(|&row| Ok((row, self.row(row)?.prompt.to_messages())))
            .collect::<Result<Vec<_>, TrainError>>()?;
        let requests = requests(&self.prompts, messages, n, "dataset row")?;
        let key: u64 = self.rng.random();
        let mut streams = RowStreams::new(key, (first_group * n) as u64, requests.len());
        Rollout::run(
            &self.policy.valid(),
            &self.prompts,
            requests,
            &self.sampling,
            &mut streams,
            &self.device,
        )
    }

    /// The reward phase: every sample of `rollout` scored against its dataset row.
    fn score(&self, rollout: &Rollout<B::InnerBackend>) -> Vec<Scored> {
        score_rollout(&self.rewards, &self.rows_of(rollout), rollout)
    }

    /// Each sample's dataset row.
    fn rows_of(&self, rollout: &Rollout<B::InnerBackend>) -> Vec<&Row> {
        rollout
            .requests
            .iter()
            .map(|r| &self.dataset.rows()[r.row])
            .collect()
    }

    /// Whether the step about to run is a teacher-probe step (the first, then every
    /// `teacher_probe_every`).
    fn probe_due(&self) -> bool {
        let (every, step) = (self.cfg.teacher_probe_every, self.step + 1);
        every > 0 && (step == 1 || step.is_multiple_of(every))
    }

    /// The teacher probe on this step's batch, before its update.
    fn probe(
        &self,
        rollout: &Rollout<B::InnerBackend>,
        scored: &[Scored],
        plan: &RepromptPlan,
        teacher_inputs: &TeacherInputs<B::InnerBackend>,
    ) -> Result<ProbeReport, TrainError> {
        let rows = self.rows_of(rollout);
        let student = self.policy.valid();
        let ctx = ProbeContext {
            student: &student,
            teacher: &self.teacher,
            prompts: &self.prompts,
            rewards: &self.rewards,
            rows: &rows,
            stop_ids: &self.sampling.stop_token_ids,
            max_new_tokens: self.sampling.max_new_tokens,
            temperature: self.loss_temperature(),
            success_threshold: self.cfg.sdpo.success_reward_threshold,
        };
        probe_teacher(&ctx, rollout, scored, plan, teacher_inputs)
    }

    /// The temperature the loss scores with: the sampling temperature (1 when greedy).
    fn loss_temperature(&self) -> f64 {
        match self.sampling.is_greedy() {
            true => 1.0,
            false => self.sampling.temperature,
        }
    }

    /// The step's report: metrics (and the health warnings they trigger) and the samples.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        rollout: Rollout<B::InnerBackend>,
        scored: Vec<Scored>,
        plan: RepromptPlan,
        teacher_inputs: TeacherInputs<B::InnerBackend>,
        passes: Passes,
        times: PhaseTimes,
        probe: Option<ProbeReport>,
    ) -> StepReport {
        let groups: Vec<usize> = rollout.requests.iter().map(|r| r.group).collect();
        let rewards = RewardStats::of(&scored, &groups);
        let signal = plan.self_distillation_mask.iter().any(|&x| x > 0.0);
        let distills = self.cfg.sdpo.distillation_weight > 0.0;
        let warnings = self
            .health
            .observe(signal, distills, &rewards, self.cfg.warn_after_steps);
        let generation = &rollout.generation;
        let metrics = StepMetrics {
            step: self.step,
            update: passes.outcome,
            rewards,
            responses: ResponseStats::of(&generation.tokens, &generation.stopped),
            reprompt: plan.metrics,
            advantages: passes.advantages,
            student_forwards: passes.student_forwards,
            health: (
                self.health.steps_without_signal,
                self.health.steps_with_flat_rewards,
            ),
            times,
            probe,
        };
        let reprompted: Vec<bool> = plan.teachers.iter().map(|t| t.reprompted()).collect();
        StepReport {
            step: self.step,
            metrics: metrics.to_metrics(),
            samples: sample_records(
                &rollout,
                scored,
                Some((reprompted.as_slice(), teacher_inputs.texts)),
            ),
            warnings,
        }
    }

    fn row(&self, row: usize) -> Result<&Row, TrainError> {
        self.dataset.get(row).ok_or(TrainError::RowOutOfRange {
            row,
            len: self.dataset.len(),
        })
    }

    /// The step's teacher and student passes and optimizer updates, on the batch the rollout,
    /// the rewards and the teacher inputs describe.
    fn update(
        &mut self,
        rollout: &Rollout<B::InnerBackend>,
        scored: &[Scored],
        teacher_inputs: &TeacherInputs<B::InnerBackend>,
        times: &mut PhaseTimes,
        comm: &mut Communication,
    ) -> Result<Passes, TrainError> {
        let sdpo = &self.cfg.sdpo;
        let n = rollout.len();
        let temperature = self.loss_temperature();
        let mut batch = StepBatch::new(
            rollout,
            teacher_inputs,
            self.cfg.mask_truncated_completions,
            &self.device,
        );
        let groups: Vec<usize> = rollout.requests.iter().map(|r| r.group).collect();
        let scores: Vec<f64> = scored.iter().map(|s| s.score).collect();
        let advantages = (sdpo.distillation_weight < 1.0)
            .then(|| group_advantages(&scores, &groups, sdpo.norm_adv_by_std_in_grpo));
        if let Some(adv) = &advantages {
            batch = batch.with_advantages(adv, &self.device);
        }
        // Off-policy (several updates per batch): old log-probs before the first update. On
        // policy every pass uses its own, detached.
        let needs_old = sdpo.is_clip.is_some()
            || advantages.is_some()
            || self.cfg.rollout_is.level != RolloutIsLevel::None;
        let mut student_forwards = 0;
        if needs_old && !self.updater.on_policy(n) {
            let passes: Vec<Vec<usize>> = self.updater.split(n).concat();
            student_forwards += passes.len();
            batch.old_log_probs = Some(timed(&mut times.student, || {
                old_log_probs(
                    &self.policy.valid(),
                    &batch.student.0,
                    &batch.student.1,
                    &batch.response_ids,
                    &passes,
                    temperature,
                )
            })?);
        }
        let shares = self.loss_shares(&batch, n, comm)?;
        let settings = StepSettings {
            sdpo: sdpo.clone(),
            temperature,
            loss_scale: 1.0,
            rollout_is: self.cfg.rollout_is.clone(),
            shares: LossShares::default(),
        };
        let teacher = &self.teacher;
        let distills = sdpo.distillation_weight > 0.0;
        let (mut teacher_s, mut student_s) = (PhaseTime::default(), PhaseTime::default());
        let outcome = self
            .updater
            .update(&mut self.policy, n, |policy, samples, loss_scale| {
                let signal = match distills {
                    false => TeacherSignal::None,
                    true => timed(&mut teacher_s, || {
                        let (ids, mask) = batch.teacher_rows(samples);
                        let current = policy.valid();
                        teacher.logits(&current, ids, mask, batch.response_len(), temperature)
                    })
                    .map(|logits| TeacherSignal::Logits(Tensor::from_inner(logits)))?,
                };
                timed(&mut student_s, || -> Result<_, TrainError> {
                    let settings = Arc::new(StepSettings {
                        loss_scale,
                        shares: shares.get(&samples[0]).copied().unwrap_or_default(),
                        ..settings.clone()
                    });
                    let (loss, item) = policy.loss(batch.pass(samples, signal, settings))?;
                    Ok((item, GradientsParams::from_grads(loss.backward(), policy)))
                })
            })?;
        times.teacher += teacher_s;
        times.student += student_s;
        comm.seconds += outcome.reduce_seconds;
        comm.reduced_bytes += outcome.reduced_bytes;
        Ok(Passes {
            student_forwards: student_forwards + outcome.items.len(),
            advantages: advantages.map(|a| mean_std(&a)),
            outcome,
        })
    }

    /// Each pass's share of the global loss denominators, by the pass's first sample (every
    /// share is 1 in one process).
    fn loss_shares(
        &self,
        batch: &StepBatch<B::InnerBackend>,
        n: usize,
        comm: &mut Communication,
    ) -> Result<HashMap<usize, LossShares>, TrainError> {
        if self.collective.world_size() == 1 {
            return Ok(HashMap::new());
        }
        let t0 = Instant::now();
        let width = batch.response_len();
        let host =
            |t: Tensor<B::InnerBackend, 1>| -> Vec<f64> { t.into_data().iter::<f64>().collect() };
        let tokens = host(batch.loss_mask.clone().sum_dim(1).reshape([n]));
        let signal = host(batch.self_distillation_mask.clone());
        let passes = self.updater.split(n).concat();
        let shares = loss_shares(
            self.collective.as_ref(),
            &passes,
            &tokens,
            &signal,
            width,
            self.cfg.sdpo.loss_agg_mode,
        )?;
        let distilling = self.cfg.sdpo.distillation_weight > 0.0;
        comm.loss_tokens = loss_tokens(&tokens, &signal, distilling);
        comm.seconds += t0.elapsed().as_secs_f64();
        Ok(passes
            .iter()
            .zip(shares)
            .filter_map(|(p, s)| p.first().map(|&first| (first, s)))
            .collect())
    }

    /// Runs the remaining steps (up to `config().steps`). Metrics rows and TensorBoard events
    /// of steps after the current one (left by a run killed after its last checkpoint) are
    /// removed first. After each step, its metrics go to `run_dir/metrics.jsonl` (or `.csv`),
    /// the TensorBoard event file (with `tensorboard` set; see [`crate::tensorboard`]) and the
    /// `tracing` log,
    /// then `hooks.after_step` runs (progress, evaluation, stopping early), then a checkpoint
    /// goes to `run_dir/checkpoints/` every `checkpoint_every` steps. At the end — the last
    /// step or a stop — `hooks.before_end`, then a checkpoint unless that step has one.
    ///
    /// On data-parallel ranks ([`Self::set_collective`]) rank 0 alone writes files and runs
    /// the hooks; the others follow its decision to stop. The ranks' parameters are compared
    /// first and every `distributed.checksum_every` steps.
    ///
    /// # Errors
    /// The first [`TrainError`] or hook error; metrics written and checkpoints saved so far
    /// stay on disk.
    pub fn fit<H: FitHooks<B, O, S>>(
        &mut self,
        run_dir: &Path,
        hooks: &mut H,
    ) -> Result<(), H::Error> {
        let lead = self.collective.rank() == 0;
        let mut logs = match lead {
            true => Some(self.open_logs(run_dir)?),
            false => None,
        };
        if let Some(logs) = logs.as_mut() {
            logs.write_hook_scalars(hooks)?;
        }
        self.check_parameters()?;
        let checkpoints = run_dir.join("checkpoints");
        let mut saved_at = None;
        while self.step < self.cfg.steps {
            let report = self.step()?;
            let flow = match logs.as_mut() {
                Some(logs) => self.record(logs, &report, hooks, &checkpoints, &mut saved_at)?,
                None => Flow::Continue,
            };
            if self.agree_to_stop(flow)? {
                break;
            }
        }
        if let Some(logs) = logs.as_mut() {
            hooks.before_end(self)?;
            logs.write_hook_scalars(hooks)?;
            if saved_at != Some(self.step) {
                let path = self.save_checkpoint(&checkpoints)?;
                hooks.after_checkpoint(self.step, &path)?;
            }
        }
        self.check_parameters()?;
        Ok(())
    }

    /// Rank 0's metrics files at the current step: the metrics file and, with `tensorboard`
    /// set, the TensorBoard events, both cut back to this step.
    fn open_logs(&self, run_dir: &Path) -> Result<StepLogs, TrainError> {
        let metrics = MetricsWriter::open_at(run_dir, self.cfg.metrics_format, self.step)
            .map_err(io_error(run_dir))?;
        let tensorboard = match self.cfg.tensorboard {
            true => {
                let config = match &self.tensorboard_config {
                    Some(text) => text.clone(),
                    None => self.cfg.to_ron_string(),
                };
                Some(EventWriter::open_at(run_dir, self.step, Some(&config))?)
            }
            false => None,
        };
        Ok(StepLogs {
            metrics,
            tensorboard,
        })
    }

    /// Rank 0's part of a step in [`Self::fit`]: the metrics written and logged, the hook,
    /// then a checkpoint when one is due (recorded in `saved_at`).
    fn record<H: FitHooks<B, O, S>>(
        &mut self,
        logs: &mut StepLogs,
        report: &StepReport,
        hooks: &mut H,
        checkpoints: &Path,
        saved_at: &mut Option<usize>,
    ) -> Result<Flow, H::Error> {
        logs.metrics
            .write(&report.metrics)
            .map_err(io_error(logs.metrics.path()))?;
        if let Some(events) = logs.tensorboard.as_mut() {
            events
                .write_scalars(report.step, &report.metrics)
                .map_err(TrainError::from)?;
        }
        let m = &report.metrics;
        tracing::info!(
            step = report.step,
            reward = m.get(names::REWARD_MEAN).copied().unwrap_or(f64::NAN),
            loss = m.get(names::LOSS).copied().unwrap_or(f64::NAN),
            seconds = m.get(names::TIME_STEP).copied().unwrap_or(f64::NAN),
            "step"
        );
        // The hook (which may evaluate and log) runs before the checkpoint: a run killed in
        // between resumes from the previous checkpoint and repeats both.
        let flow = hooks.after_step(self, report)?;
        logs.write_hook_scalars(hooks)?;
        let every = self.cfg.checkpoint_every;
        if every > 0 && self.step.is_multiple_of(every) {
            let path = self.save_checkpoint(checkpoints)?;
            *saved_at = Some(self.step);
            hooks.after_checkpoint(self.step, &path)?;
        }
        Ok(flow)
    }

    /// Whether to stop after this step: rank 0's `flow`, on every rank.
    fn agree_to_stop(&self, flow: Flow) -> Result<bool, TrainError> {
        let mine = [u8::from(flow == Flow::Stop)];
        let lead = broadcast_bytes(self.collective.as_ref(), "stop after the step", &mine)?;
        Ok(lead.first() == Some(&1))
    }

    /// Writes a checkpoint of everything a bit-identical resume needs (trainable weights,
    /// optimizer, schedule, teacher, RNG and sampler state, step) as `dir/step-N`, atomically:
    /// `model.mpk` or `adapters.mpk`, `optimizer.mpk`, `schedule.mpk`, `teacher.mpk` (modes
    /// with teacher weights), `state.json`, `config.ron`.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] naming the path.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf, TrainError> {
        use checkpoint::CheckpointFile;
        let name = checkpoint::step_dir_name(self.step);
        let p = |f: &str| dir.join(&name).join(f);
        // Records are encoded straight into their files, one after the other.
        let mut files = vec![
            match &self.policy.lora {
                Some(lora) => {
                    CheckpointFile::record::<B, _>("adapters.mpk", lora.clone().into_record())
                }
                None => CheckpointFile::record::<B, _>(
                    "model.mpk",
                    self.policy.lm.clone().into_record(),
                ),
            },
            CheckpointFile::record::<B, _>("optimizer.mpk", self.updater.optimizer_record()),
            CheckpointFile::record::<B, _>("schedule.mpk", self.updater.schedule_record()),
        ];
        if let Some(tw) = self.teacher.weights() {
            files.push(CheckpointFile::record::<B::InnerBackend, _>(
                "teacher.mpk",
                tw.clone().into_record(),
            ));
        }
        let state = TrainerState {
            step: self.step,
            rng: self.rng.clone(),
            sampler: self.sampler.state(),
            health: self.health.clone(),
            lora: self.policy.lora.is_some(),
            teacher_mode: self.cfg.sdpo.teacher_mode.as_str().to_string(),
            batch: Some((self.cfg.prompts_per_step, self.cfg.num_generations)),
        };
        let state = serde_json::to_vec_pretty(&state).map_err(|e| CheckpointError::Mismatch {
            path: p("state.json"),
            reason: e.to_string(),
        })?;
        let identity =
            serde_json::to_vec_pretty(&self.identity()).map_err(|e| CheckpointError::Mismatch {
                path: p(IDENTITY_FILE),
                reason: e.to_string(),
            })?;
        let config = self.cfg.to_ron_string().into_bytes();
        files.push(CheckpointFile::bytes("state.json", state));
        files.push(CheckpointFile::bytes(IDENTITY_FILE, identity));
        files.push(CheckpointFile::bytes("config.ron", config));
        let path = checkpoint::write_checkpoint_files(dir, &name, files)?;
        checkpoint::prune_checkpoints(dir, self.cfg.keep_checkpoints)?;
        Ok(path)
    }

    /// The identity of the model being trained (architecture, shapes, vocabulary hash), as
    /// recorded in checkpoints.
    pub fn identity(&self) -> ModelIdentity {
        ModelIdentity::of(&self.policy.lm, self.tokenizer())
    }

    /// Compares the model identity recorded in checkpoint `path` (if any) with this trainer's.
    fn check_identity(&self, path: &Path) -> Result<(), CheckpointError> {
        let file = path.join(IDENTITY_FILE);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(CheckpointError::Io { path: file, source }),
        };
        let recorded: ModelIdentity =
            serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Mismatch {
                path: file.clone(),
                reason: format!("not a model identity: {e}"),
            })?;
        let differences = recorded.differences(&self.identity());
        if differences.is_empty() {
            return Ok(());
        }
        Err(CheckpointError::Mismatch {
            path: file,
            reason: format!(
                "was written for another model ({}); resume with the model the run was started with",
                differences.join("; ")
            ),
        })
    }

    /// Restores a checkpoint written by [`Self::save_checkpoint`] into a trainer built the same
    /// way (same config, model source, dataset and rewards). Every file is checked against
    /// the folder's manifest and the recorded model identity against this trainer's model
    /// before anything is decoded.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] naming the file that is missing, damaged or from another
    /// kind of run, or what differs between the recorded model and this one.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<(), TrainError> {
        checkpoint::verify(path)?;
        self.check_identity(path)?;
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
        let now = (self.cfg.prompts_per_step, self.cfg.num_generations);
        if let Some(batch) = state.batch.filter(|&b| b != now) {
            return Err(CheckpointError::Mismatch {
                path: state_path,
                reason: format!(
                    "written by a run with prompts_per_step = {}, num_generations = {}; this run has {}, {} (the sampler's position depends on them)",
                    batch.0, batch.1, now.0, now.1
                ),
            }
            .into());
        }
        let dev = self.device.clone();
        self.policy = match self.policy.lora.take() {
            Some(lora) => {
                let file = path.join("adapters.mpk");
                let rec = checkpoint::read_record::<B, _>(&file, &dev)?;
                let mut policy = self.policy.clone();
                policy.lora = Some(checkpoint::load_into(lora, rec, &file)?);
                policy
            }
            None => {
                let file = path.join("model.mpk");
                let rec = checkpoint::read_record::<B, _>(&file, &dev)?;
                let mut policy = self.policy.clone();
                policy.lm = checkpoint::load_into(policy.lm, rec, &file)?;
                policy
            }
        };
        let optimizer = checkpoint::read_record::<B, _>(&path.join("optimizer.mpk"), &dev)?;
        let schedule = checkpoint::read_record::<B, _>(&path.join("schedule.mpk"), &dev)?;
        self.updater.load_records(optimizer, schedule);
        if let Some(tw) = self.teacher.weights().cloned() {
            let rec =
                checkpoint::read_record::<B::InnerBackend, _>(&path.join("teacher.mpk"), &dev)?;
            let teacher = checkpoint::load_into(tw, rec, &path.join("teacher.mpk"))?;
            self.teacher.set_weights(Some(teacher));
        }
        self.sampler = self.dataset.resume_sampler(state.sampler)?;
        self.rng = state.rng;
        self.health = state.health;
        self.step = state.step;
        Ok(())
    }
}

/// Where [`SdpoTrainer::fit`] writes each step's metrics (rank 0).
struct StepLogs {
    metrics: MetricsWriter,
    tensorboard: Option<EventWriter>,
}

impl StepLogs {
    /// The hooks' scalars ([`FitHooks::take_scalars`]) into the TensorBoard file.
    fn write_hook_scalars<B: TrainBackend, O, S, H: FitHooks<B, O, S>>(
        &mut self,
        hooks: &mut H,
    ) -> Result<(), TrainError> {
        let scalars = hooks.take_scalars();
        if let Some(events) = self.tensorboard.as_mut() {
            for (step, metrics) in &scalars {
                events.write_scalars(*step, metrics)?;
            }
        }
        Ok(())
    }
}

/// A file error at `path` as a training error.
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.to_path_buf();
    move |source| TrainError::from(CheckpointError::Io { path, source })
}

/// The config's mini-batches, micro-batches and epochs.
fn batch_split(cfg: &TrainConfig) -> BatchSplit {
    BatchSplit {
        mini_batches: cfg.mini_batches,
        micro_batch_size: cfg.micro_batch_size,
        epochs: cfg.ppo_epochs,
    }
}

/// A step's collective work on this rank (data-parallel training).
#[derive(Debug, Clone, Copy, Default)]
struct Communication {
    /// Seconds in collective operations.
    seconds: f64,
    /// This rank's loss tokens (the distillation term's when distilling).
    loss_tokens: f64,
    /// Bytes of the gradient all-reduces.
    reduced_bytes: usize,
}

/// What [`SdpoTrainer::update`] hands back to the step.
struct Passes {
    outcome: UpdateOutcome,
    student_forwards: usize,
    advantages: Option<(f64, f64)>,
}

/// The samples as reprompting sees them.
fn outcomes<'a, B: burn::tensor::backend::Backend>(
    rollout: &'a Rollout<B>,
    scored: &'a [Scored],
) -> Vec<SampleOutcome<'a>> {
    rollout
        .requests
        .iter()
        .zip(&rollout.texts)
        .zip(scored)
        .map(|((request, text), s)| SampleOutcome {
            group: request.group,
            prompt: &request.messages,
            response: text,
            score: s.score,
            feedback: s.feedback.as_deref(),
        })
        .collect()
}

/// One record per sample; `teachers` gives whether each was reprompted and its teacher
/// prompt (without it: not reprompted, no teacher prompt).
fn sample_records<B: burn::tensor::backend::Backend>(
    rollout: &Rollout<B>,
    scored: Vec<Scored>,
    teachers: Option<(&[bool], Vec<String>)>,
) -> Vec<SampleRecord> {
    let n = rollout.len();
    let (reprompted, teacher_prompts) = match teachers {
        Some((r, t)) => (r.to_vec(), t),
        None => (vec![false; n], vec![String::new(); n]),
    };
    rollout
        .requests
        .iter()
        .zip(&rollout.texts)
        .zip(scored)
        .zip(reprompted.into_iter().zip(teacher_prompts))
        .map(
            |(((request, text), s), (reprompted, teacher_prompt))| SampleRecord {
                row: request.row,
                group: request.group,
                completion: text.clone(),
                score: s.score,
                feedback: s.feedback,
                reprompted,
                teacher_prompt,
            },
        )
        .collect()
}
