//! `sdpo train [CONFIG.ron] [--set k=v].. [--out DIR] [--resume RUN_DIR] [--compare-grpo]
//! [--smoke] [--steps N]`.
//!
//! Everything about the config is settled before any model is loaded; then the job is built
//! (warm start with a progress bar for the built-in model), held-out success is measured
//! before training, every `eval.every` steps and after, checkpoints are written every
//! `train.checkpoint_every` steps and at the end, and the run folder gets its metrics, plot
//! and summary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use sdpo_train::TrainBackend;

use sdpo_core::metrics as names;
use sdpo_train::builtin::job::greedy_success;
use sdpo_train::checkpoint;
use sdpo_train::dataset::Row;
use sdpo_train::metrics_log::{truncate_after_step, Metrics};
use sdpo_train::schedule::WarmupSchedule;
use sdpo_train::trainer::AdamWOptimizer;
use sdpo_train::{FitHooks, Flow, SdpoTrainer, StepReport};

use crate::backend::{dispatch, ensure_compiled, BackendKind, Dispatch};
use crate::distributed::World;
use crate::error::CliError;
use crate::interrupt;
use crate::job::{build_job, grpo_config, grpo_trainer, mean_of_last, resume_job};
use crate::models::{ModelRef, BASE_MODEL, CHECKPOINTS, RUN_CONFIG};
use crate::plot::plot_runs;
use crate::progress::{note, step_message, steps_bar, warm_start_bar};
use crate::run_config::{ModelSpec, Override, RunConfig};
use crate::run_dir::{
    append_eval, read_curves, write_file, EvalPoint, RunSummary, Summary, EVAL_LOG, PLOT, SUMMARY,
};
use crate::run_lock::{create_run_dir, RunLock};

/// The `train` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// A RON run config (see examples/configs/); without one, the built-in job: the built-in
    /// model warm-started and trained on the built-in sort-digits task, on the CPU.
    pub config: Option<PathBuf>,
    /// Override a config field by dotted path, the value in RON
    /// (`--set train.steps=20 --set train.sdpo.alpha=1.0 --set 'train.lora=Some((rank:4))'`).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// The run folder to create (default: `output_dir` of the config, else runs/run-N).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its latest checkpoint, with its config.ron (raise
    /// the step budget with --steps or --set train.steps=N).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "out", "smoke", "compare_grpo"])]
    pub resume: Option<PathBuf>,
    /// After the SDPO run, run GRPO (distillation_weight 0) with the same budget and seed
    /// from the same starting weights; both curves go into one plot.
    #[arg(long)]
    pub compare_grpo: bool,
    /// A few steps with small batches and a short warm start (a quick check, for CI).
    #[arg(long)]
    pub smoke: bool,
    /// The model to train, as `sdpo generate` takes it: a Hugging Face folder, a .gguf file,
    /// `builtin` or a Hub id ORG/NAME[:FILE][@REVISION] (the same as
    /// --set 'model=Hub("ORG/NAME")').
    #[arg(long, value_name = "MODEL", conflicts_with = "resume")]
    pub model: Option<String>,
    /// Total training steps (the same as --set train.steps=N).
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Float precision of the model's weights and activations: f32, f16 or bf16 (the same as
    /// --set train.precision=f16). Half precision trains LoRA adapters (kept in f32) and needs
    /// a device that supports the dtype.
    #[arg(long, value_name = "f32|f16|bf16")]
    pub precision: Option<sdpo_models::Precision>,
}

/// What `train` will do, settled before anything is loaded (the run folder is held by then).
#[derive(Debug, Clone)]
struct Plan {
    cfg: RunConfig,
    dir: PathBuf,
    start: Start,
    compare_grpo: bool,
    /// The ranks this process is one of (one, unless started by `mpirun`).
    world: World,
}

/// A plan as rank 0 shares it with the other ranks.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedPlan {
    config: String,
    dir: PathBuf,
    start: Start,
}

impl Plan {
    fn shared(&self) -> Result<SharedPlan, CliError> {
        Ok(SharedPlan {
            config: self.cfg.to_ron_string()?,
            dir: self.dir.clone(),
            start: self.start.clone(),
        })
    }

    fn from_shared(shared: SharedPlan, world: World) -> Result<Self, CliError> {
        Ok(Self {
            cfg: RunConfig::from_run_file_text(&shared.config, "rank 0's run config")?,
            dir: shared.dir,
            start: shared.start,
            compare_grpo: false,
            world,
        })
    }
}

/// Where training starts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Start {
    /// A new run folder.
    Fresh,
    /// `--resume` from this checkpoint.
    Resume(PathBuf),
    /// `--resume` of a folder without any checkpoint: from step 0, in the same folder.
    Restart,
}

/// Runs `sdpo train`.
///
/// # Errors
/// [`CliError`] for a bad config (before any model is loaded), a backend that is not
/// compiled in, a run folder in use, a failure while training, or
/// [`CliError::Interrupted`] after a signal stopped training (checkpoint written).
pub fn train(args: TrainArgs, backend: Option<BackendKind>) -> Result<(), CliError> {
    let world = World::from_environment()?;
    if world.size() > 1 {
        return train_as_rank(args, backend, world);
    }
    interrupt::install()?;
    let (plan, lock) = plan(args, backend)?;
    let result = ensure_compiled(plan.cfg.backend).and_then(|()| dispatch(plan.cfg.backend, plan));
    match result {
        Err(e) if !matches!(e, CliError::Interrupted { .. }) => {
            lock.release_removing_if_unused();
            Err(e)
        }
        other => other,
    }
}

/// `sdpo train` as one rank of `mpirun -np N`: rank 0 settles the plan (and holds the run
/// folder) and shares it; every rank trains; an error on any rank ends every rank
/// ([`World::fail`]): the others may wait in an operation that rank will never join.
fn train_as_rank(
    args: TrainArgs,
    backend: Option<BackendKind>,
    world: World,
) -> Result<(), CliError> {
    // No graceful stop on a signal here: Open MPI ends a job (Ctrl-C on mpirun, a rank's
    // abort) by SIGTERM to every rank, which must end them; the run resumes from its last
    // checkpoint (written atomically).
    let (mine, held) = match world.is_lead() {
        true => {
            let (shared, lock) = lead_plan(args, backend, &world);
            (Some(shared), Some(lock))
        }
        false => (None, None),
    };
    let shared = world
        .share("run plan", mine.as_ref())
        .unwrap_or_else(|e| world.fail(&e));
    let plan = Plan::from_shared(shared, world.clone()).unwrap_or_else(|e| world.fail(&e));
    world.set_timeout(plan.cfg.train.distributed.timeout_secs);
    let result = ensure_compiled(plan.cfg.backend).and_then(|()| dispatch(plan.cfg.backend, plan));
    // No signal handler here, so no `Interrupted`: every error ends the job.
    result.map_err(|e| {
        if let Some(lock) = held {
            lock.release_removing_if_unused();
        }
        world.fail(&e)
    })
}

/// Rank 0's plan (it alone reads the arguments and files), checked against the number of ranks
/// before any model work, and the run folder it holds until the end. An error ends the job.
fn lead_plan(
    args: TrainArgs,
    backend: Option<BackendKind>,
    world: &World,
) -> (SharedPlan, RunLock) {
    let planned = match args.compare_grpo {
        true => Err(CliError::Argument {
            arg: "--compare-grpo".into(),
            reason: "runs in one process; start the two runs with mpirun one after the other (--set train.sdpo.distillation_weight=0 for GRPO)".into(),
        }),
        false => plan(args, backend),
    };
    let (plan, lock) = planned.unwrap_or_else(|e| world.fail(&e));
    let shared = plan
        .cfg
        .train
        .validate_world(world.size())
        .map_err(CliError::from)
        .and_then(|()| plan.shared());
    match shared {
        Ok(shared) => (shared, lock),
        Err(e) => {
            lock.release_removing_if_unused();
            world.fail(&e)
        }
    }
}

/// `--model MODEL` as the `model=...` assignment of the run config.
fn model_override(arg: &str) -> Result<Override, CliError> {
    let ModelRef::Spec(spec) = ModelRef::parse(arg)? else {
        return Err(CliError::Argument {
            arg: arg.to_string(),
            reason: "a run folder cannot be trained from with --model; continue it with --resume, or export it and train from the export".into(),
        });
    };
    let value = ron::to_string(&spec).map_err(|e| CliError::Argument {
        arg: arg.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Override {
        origin: "--model",
        assignment: format!("model={value}"),
    })
}

fn plan(args: TrainArgs, backend: Option<BackendKind>) -> Result<(Plan, RunLock), CliError> {
    let mut overrides = Vec::new();
    if args.smoke {
        overrides.extend(Override::smoke());
    }
    if let Some(model) = &args.model {
        overrides.push(model_override(model)?);
    }
    overrides.extend(args.set.iter().map(Override::set));
    if let Some(n) = args.steps {
        overrides.push(Override {
            origin: "--steps",
            assignment: format!("train.steps={n}"),
        });
    }
    if let Some(p) = args.precision {
        overrides.push(Override {
            origin: "--precision",
            assignment: format!("train.precision={p}"),
        });
    }
    if let Some(dir) = &args.resume {
        return plan_resume(dir, &overrides, backend);
    }
    let mut cfg = RunConfig::layered(args.config.as_deref(), &overrides, backend)?;
    let out = args.out.clone().or_else(|| cfg.output_dir.clone());
    let lock = create_run_dir(out.as_deref())?;
    let dir = lock.dir().to_path_buf();
    cfg.output_dir = Some(std::path::absolute(&dir).map_err(CliError::io(&dir))?);
    let plan = Plan {
        cfg,
        dir,
        start: Start::Fresh,
        compare_grpo: args.compare_grpo,
        world: World::default(),
    };
    Ok((plan, lock))
}

/// `--resume DIR`: hold the folder, clean what a killed run left, check the settings against
/// the folder's config, and find the newest intact checkpoint (or none: restart from step 0).
fn plan_resume(
    dir: &Path,
    overrides: &[Override],
    backend: Option<BackendKind>,
) -> Result<(Plan, RunLock), CliError> {
    let config_path = dir.join(RUN_CONFIG);
    if !config_path.is_file() {
        return Err(CliError::RunFolder {
            path: dir.to_path_buf(),
            reason: format!(
                "not a run folder (no {RUN_CONFIG}); a --compare-grpo run is resumed per algorithm: RUN/sdpo or RUN/grpo"
            ),
        });
    }
    let lock = RunLock::acquire(dir)?;
    let checkpoints = dir.join(CHECKPOINTS);
    for stale in [
        checkpoint::remove_stale_temporaries(dir)?,
        checkpoint::remove_stale_temporaries(&checkpoints)?,
    ]
    .concat()
    {
        eprintln!("removed {} (left by a killed run)", stale.display());
    }
    let recorded = RunConfig::from_run_file(&config_path)?;
    let mut cfg = recorded.clone().with_overrides(overrides)?;
    if let Some(b) = backend {
        cfg.backend = b;
    }
    cfg.validate()?;
    let conflicts = recorded.resume_conflicts(&cfg);
    if !conflicts.is_empty() {
        return Err(CliError::RunFolder {
            path: dir.to_path_buf(),
            reason: format!(
                "cannot be resumed with other settings ({}): a resumed run continues the same model, data and batch; start a new run for these",
                conflicts.join("; ")
            ),
        });
    }
    let (found, skipped) = checkpoint::newest_intact(&checkpoints)?;
    for line in skipped {
        eprintln!("warning: {line}");
    }
    let start = match found {
        Some(c) => Start::Resume(c),
        None => {
            eprintln!(
                "{} has no checkpoint: starting the run again from step 0",
                dir.display()
            );
            Start::Restart
        }
    };
    let plan = Plan {
        cfg,
        dir: dir.to_path_buf(),
        start,
        compare_grpo: false,
        world: World::default(),
    };
    Ok((plan, lock))
}

/// Removes the outputs of an earlier attempt of a run restarted from step 0.
fn clear_outputs(dir: &Path) -> Result<(), CliError> {
    for name in [
        "metrics.jsonl",
        "metrics.csv",
        EVAL_LOG,
        SUMMARY,
        PLOT,
        BASE_MODEL,
    ] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::io(&path)(e)),
        }
    }
    Ok(())
}

impl Dispatch for Plan {
    type Output = ();

    fn run<B: TrainBackend>(self, device: Device<B>) -> Result<(), CliError> {
        let t0 = Instant::now();
        let cfg = &self.cfg;
        // Before any model work (the built-in job's warm start takes minutes).
        cfg.train.precision.check::<B>(&device)?;
        let mut summaries = Vec::new();
        let lead = self.world.is_lead();
        if self.start == Start::Restart && lead {
            clear_outputs(&self.dir)?;
        }
        if let Start::Resume(checkpoint) = &self.start {
            if lead {
                eprintln!(
                    "resuming {} from {} on {}{}",
                    self.dir.display(),
                    checkpoint.display(),
                    cfg.backend.name(),
                    ranks_note(&self.world)
                );
            }
            let mut job = resume_job::<B>(cfg, &self.dir, checkpoint, &device)?;
            let done = job.trainer.steps_done();
            if done >= cfg.train.steps {
                return Err(CliError::RunFolder {
                    path: self.dir.clone(),
                    reason: format!(
                        "already trained {done} of train.steps = {} steps; pass --steps N with N > {done} to continue",
                        cfg.train.steps
                    ),
                });
            }
            self.world.attach(&mut job.trainer, cfg.backend)?;
            if !lead {
                return follow(&mut job.trainer, &self.dir);
            }
            write_file(&self.dir, RUN_CONFIG, cfg.to_ron_string()?.as_bytes())?;
            // Evaluations of steps after the checkpoint were made by a run killed after it.
            truncate_after_step(&self.dir.join(EVAL_LOG), done).map_err(CliError::io(&self.dir))?;
            let previous = Summary::read(&self.dir).and_then(|s| s.runs.into_iter().next());
            let label = previous
                .as_ref()
                .map(|r| r.label.clone())
                .unwrap_or_else(|| algorithm_label(cfg).to_string());
            let secs = run_steps(
                &mut job.trainer,
                &job.held_out,
                cfg,
                &self.dir,
                &label,
                true,
            )?;
            summaries.push(RunSummary::from_files(
                &self.dir,
                &label,
                cfg.train.metrics_format,
                secs + previous.as_ref().map_or(0.0, |r| r.train_secs),
                previous.as_ref().map_or(0.0, |r| r.warm_start_secs),
            )?);
        } else {
            if lead {
                eprintln!(
                    "run folder {} ({} on {}, {}, {}{})",
                    self.dir.display(),
                    cfg.model.describe(),
                    cfg.backend.name(),
                    data_description(cfg),
                    loss_kernels::<B>(cfg, &device),
                    ranks_note(&self.world)
                );
            }
            let warm = (cfg.warm_starts() && lead).then(|| warm_start_bar(cfg.warm_start.steps));
            // Shown: the mean loss of the last tenth of the steps (batches are grouped by
            // length, so single steps' losses jump between short and long prompts).
            let tenth = (cfg.warm_start.steps / 10).max(1);
            let mut losses = Vec::with_capacity(cfg.warm_start.steps);
            let mut job = build_job::<B>(cfg, &device, |step, loss| {
                losses.push(loss);
                let mean = mean_of_last(&losses, tenth).unwrap_or(loss);
                if let Some(bar) = &warm {
                    bar.set_position(step as u64 + 1);
                    bar.set_message(format!("loss {mean:.3}"));
                    // Without a terminal the bar is hidden: a line every tenth of the way.
                    if bar.is_hidden() && (step + 1) % tenth == 0 {
                        eprintln!(
                            "warm start {}/{} loss {mean:.3}",
                            step + 1,
                            cfg.warm_start.steps
                        );
                    }
                }
            })?;
            if let Some(bar) = warm {
                bar.finish_and_clear();
                eprintln!(
                    "warm start: {} steps in {:.1}s, final loss {:.3} (mean of the last tenth)",
                    cfg.warm_start.steps,
                    job.warm_start_secs,
                    job.warm_start_loss.unwrap_or(f64::NAN)
                );
            }
            self.world.attach(&mut job.trainer, cfg.backend)?;
            if !lead {
                return follow(&mut job.trainer, &self.dir);
            }
            // The folder appears once the model and data are ready.
            std::fs::create_dir_all(&self.dir).map_err(CliError::io(&self.dir))?;
            write_file(&self.dir, RUN_CONFIG, cfg.to_ron_string()?.as_bytes())?;
            let runs: Vec<(&str, PathBuf, RunConfig)> = if self.compare_grpo {
                let mut grpo = cfg.clone();
                grpo.train = grpo_config(&cfg.train);
                vec![
                    (
                        "sdpo",
                        self.dir.join("sdpo"),
                        with_dir(cfg, &self.dir.join("sdpo"))?,
                    ),
                    (
                        "grpo",
                        self.dir.join("grpo"),
                        with_dir(&grpo, &self.dir.join("grpo"))?,
                    ),
                ]
            } else {
                vec![(algorithm_label(cfg), self.dir.clone(), cfg.clone())]
            };
            for (label, dir, run_cfg) in &runs {
                if interrupt::stop_requested() {
                    break;
                }
                std::fs::create_dir_all(dir).map_err(CliError::io(dir))?;
                write_file(dir, RUN_CONFIG, run_cfg.to_ron_string()?.as_bytes())?;
                if cfg.model == ModelSpec::Builtin {
                    save_base::<B>(&job.base, dir)?;
                }
                let secs = if *label == "grpo" && self.compare_grpo {
                    let mut trainer = grpo_trainer(cfg, &job, &device)?;
                    run_steps(&mut trainer, &job.held_out, run_cfg, dir, label, false)?
                } else {
                    run_steps(&mut job.trainer, &job.held_out, run_cfg, dir, label, false)?
                };
                let summary = RunSummary::from_files(
                    dir,
                    label,
                    run_cfg.train.metrics_format,
                    secs,
                    job.warm_start_secs,
                )?;
                if self.compare_grpo {
                    Summary {
                        runs: vec![summary.clone()],
                        wall_time_secs: secs,
                    }
                    .write(dir)?;
                    plot_runs(
                        &dir.join(PLOT),
                        &[read_curves(dir, label, run_cfg.train.metrics_format)?],
                    )?;
                }
                summaries.push(summary);
            }
        }
        let curves = summaries
            .iter()
            .map(|s| read_curves(&s.dir, &s.label, cfg.train.metrics_format))
            .collect::<Result<Vec<_>, _>>()?;
        plot_runs(&self.dir.join(PLOT), &curves)?;
        let summary = Summary {
            runs: summaries,
            wall_time_secs: t0.elapsed().as_secs_f64(),
        };
        summary.write(&self.dir)?;
        println!("{}", summary.table());
        println!("run folder: {}", self.dir.display());
        if interrupt::stop_requested() {
            let step = summary.runs.last().map_or(0, |r| r.steps);
            return Err(CliError::Interrupted {
                dir: summary
                    .runs
                    .last()
                    .map_or(self.dir.clone(), |r| r.dir.clone()),
                step,
            });
        }
        Ok(())
    }
}

/// A rank other than 0: the same steps as rank 0, which writes every file and decides when
/// to stop.
fn follow<B: TrainBackend>(trainer: &mut SdpoTrainer<B>, dir: &Path) -> Result<(), CliError> {
    trainer.fit(dir, &mut |_: &StepReport| true)?;
    Ok(())
}

/// `, 2 ranks` on a data-parallel run (nothing for one).
fn ranks_note(world: &World) -> String {
    match world.size() {
        1 => String::new(),
        n => format!(", {n} data-parallel ranks"),
    }
}

fn with_dir(cfg: &RunConfig, dir: &Path) -> Result<RunConfig, CliError> {
    let mut c = cfg.clone();
    c.output_dir = Some(std::path::absolute(dir).map_err(CliError::io(dir))?);
    Ok(c)
}

pub(crate) fn algorithm_label(cfg: &RunConfig) -> &'static str {
    if cfg.train.sdpo.distillation_weight == 0.0 {
        "grpo"
    } else {
        "sdpo"
    }
}

fn data_description(cfg: &RunConfig) -> String {
    match (cfg.effective_task(), &cfg.dataset) {
        (Some(task), _) => format!("built-in task `{}`", task.name()),
        (None, Some(path)) => format!("dataset {}", path.display()),
        (None, None) => "no data".into(),
    }
}

/// Which code computes the distillation loss on this backend, for the run's first line.
fn loss_kernels<B: TrainBackend>(cfg: &RunConfig, device: &B::Device) -> &'static str {
    if !cfg.train.sdpo.fused_loss {
        "composite loss: fused_loss is off"
    } else if sdpo_core::loss::fused::fused_available::<B>(device) {
        "fused loss kernels"
    } else {
        "composite loss: no fused kernel on this backend"
    }
}

pub(crate) fn save_base<B: TrainBackend>(
    base: &sdpo_models::CausalLm<B>,
    dir: &Path,
) -> Result<(), CliError> {
    let path = dir.join(BASE_MODEL);
    let bytes = checkpoint::encode_record::<B, _>(base.clone().into_record(), &path)?;
    write_file(dir, BASE_MODEL, &bytes)
}

/// Held-out greedy success, or `None` without held-out rows.
fn evaluate<B: TrainBackend>(
    trainer: &SdpoTrainer<B>,
    held_out: &[Row],
    cfg: &RunConfig,
) -> Result<Option<f64>, CliError> {
    if held_out.is_empty() {
        return Ok(None);
    }
    Ok(Some(greedy_success(
        trainer,
        held_out,
        cfg.eval_max_new_tokens(),
    )?))
}

/// Trains until `train.steps` with [`SdpoTrainer::fit`], logging metrics and evaluations
/// into `dir`; returns seconds.
pub(crate) fn run_steps<B: TrainBackend>(
    trainer: &mut SdpoTrainer<B>,
    held_out: &[Row],
    cfg: &RunConfig,
    dir: &Path,
    label: &str,
    resumed: bool,
) -> Result<f64, CliError> {
    let t0 = Instant::now();
    // TensorBoard's Text tab shows the run's config.ron, not only its `train` section.
    trainer.set_tensorboard_config(cfg.to_ron_string()?);
    let mut hooks = Progress {
        bar: steps_bar(label, cfg.train.steps, trainer.steps_done()),
        held_out,
        cfg,
        dir,
        label,
        held: None,
        scalars: Vec::new(),
    };
    let capped = trainer.config().sdpo.max_reprompt_len;
    if capped < cfg.train.sdpo.max_reprompt_len {
        note(
            &hooks.bar,
            &format!(
                "{label}: teacher prompts are capped at {capped} tokens (train.sdpo.max_reprompt_len = {}): the model's context minus sampling.max_new_tokens",
                cfg.train.sdpo.max_reprompt_len
            ),
        );
    }
    interrupt::training_started();
    if !resumed {
        hooks.held = hooks.evaluate(trainer, |s| {
            format!("held-out success before training {s:.3}")
        })?;
    }
    if !interrupt::stop_requested() {
        trainer.fit(dir, &mut hooks)?;
    }
    hooks.bar.finish_and_clear();
    Ok(t0.elapsed().as_secs_f64())
}

/// The command line's side of [`SdpoTrainer::fit`]: the progress bar, warnings, and held-out
/// evaluations every `eval.every` steps and at the end (written to `eval.jsonl`).
struct Progress<'a> {
    bar: indicatif::ProgressBar,
    held_out: &'a [Row],
    cfg: &'a RunConfig,
    dir: &'a Path,
    label: &'a str,
    held: Option<f64>,
    /// Evaluations not yet handed to the TensorBoard file ([`FitHooks::take_scalars`]).
    scalars: Vec<(usize, Metrics)>,
}

/// The held-out success's tag in the TensorBoard file.
const EVAL_TAG: &str = "eval/held_out_success";

impl Progress<'_> {
    /// Held-out success now, appended to `eval.jsonl` and noted as `line(success)`.
    fn evaluate<B: TrainBackend>(
        &mut self,
        trainer: &SdpoTrainer<B>,
        line: impl FnOnce(f64) -> String,
    ) -> Result<Option<f64>, CliError> {
        let Some(s) = evaluate(trainer, self.held_out, self.cfg)? else {
            return Ok(None);
        };
        let step = trainer.steps_done();
        append_eval(
            self.dir,
            EvalPoint {
                step,
                held_out_success: s,
            },
        )?;
        self.scalars
            .push((step, Metrics::from([(EVAL_TAG.to_string(), s)])));
        note(&self.bar, &format!("{}: {}", self.label, line(s)));
        Ok(Some(s))
    }
}

impl<B: TrainBackend> FitHooks<B, AdamWOptimizer<B>, WarmupSchedule> for Progress<'_> {
    type Error = CliError;

    fn after_step(
        &mut self,
        trainer: &SdpoTrainer<B>,
        report: &StepReport,
    ) -> Result<Flow, CliError> {
        let (step, total) = (report.step, self.cfg.train.steps);
        for w in &report.warnings {
            note(
                &self.bar,
                &format!("{}: warning at step {step}: {w}", self.label),
            );
        }
        let metric = |name: &str| report.metrics.get(name).copied().unwrap_or(f64::NAN);
        let (reward, loss) = (metric(names::REWARD_MEAN), metric(names::LOSS));
        let every = self.cfg.eval.every;
        if every > 0 && step % every == 0 && step < total {
            let line = |s: f64| {
                format!(
                    "step {step}/{total} reward {reward:.3} loss {loss:.4} held-out success {s:.3}"
                )
            };
            self.held = self.evaluate(trainer, line)?.or(self.held);
        }
        self.bar.set_position(step as u64);
        self.bar.set_message(step_message(reward, loss, self.held));
        Ok(if interrupt::stop_requested() {
            Flow::Stop
        } else {
            Flow::Continue
        })
    }

    fn before_end(&mut self, trainer: &SdpoTrainer<B>) -> Result<(), CliError> {
        if interrupt::stop_requested() {
            // Out quickly: the checkpoint comes next; evaluate after resuming.
            return Ok(());
        }
        let step = trainer.steps_done();
        self.evaluate(trainer, |s| {
            format!("held-out success after {step} steps {s:.3}")
        })?;
        Ok(())
    }

    fn take_scalars(&mut self) -> Vec<(usize, Metrics)> {
        std::mem::take(&mut self.scalars)
    }
}
