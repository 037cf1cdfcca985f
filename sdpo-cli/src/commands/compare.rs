//! `sdpo compare [CONFIG.ron] [--set k=v].. [--arm 'NAME: k=v; k=v'].. [--learning-rates
//! 1e-4,3e-4,1e-3] [--seeds 0,1,2] [--jobs 2] [--out DIR]`: a fair comparison of training
//! settings ("arms", e.g. SDPO, GRPO and their blend) under one protocol.
//!
//! Every run starts from the same weights (one warm start, or the config's model) with the
//! same training rows and held-out set; each arm is trained at every learning rate of the sweep
//! with every seed (the seed changes sampling, prompt order and adapter initialization, not
//! the data). Runs go to child processes, `--jobs` at a time, each with its share of the CPU
//! threads (`RAYON_NUM_THREADS`); each is an ordinary run folder under `DIR/runs/`. The report
//! (`compare.md`, `compare.json`, `compare.svg`) gives, per arm and learning rate, held-out
//! success at fixed steps, its area under the curve (the mean held-out success over training,
//! by the trapezoid rule), mean ± std over seeds, time per step, and — at each arm's best
//! learning rate — the teacher probe's readings.
//!
//! ```text
//! DIR/config.ron          the shared config (model, data, budget)
//! DIR/base_model.mpk      the warm-started built-in model every run starts from
//! DIR/runs/ARM-lrLR-sSEED/  one run folder per run (its own config.ron, metrics, eval log, log.txt)
//! DIR/compare.{md,json,svg}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use sdpo_train::TrainBackend;
use serde::Serialize;

use sdpo_core::metrics as names;

use crate::backend::{dispatch, ensure_compiled, BackendKind, Dispatch};
use crate::commands::train::{algorithm_label, run_steps, save_base};
use crate::error::CliError;
use crate::interrupt;
use crate::job::{build_job, job_from_saved_base};
use crate::models::RUN_CONFIG;
use crate::plot::{plot_compare, ArmCurves};
use crate::progress::warm_start_bar;
use crate::run_config::{Override, RunConfig};
use crate::run_dir::{read_evals, read_metrics, write_file, RunSummary, Summary};
use crate::run_lock::create_run_dir;

/// The runs' folder inside a comparison folder.
pub const RUNS: &str = "runs";
/// Each run's output (stdout and stderr of its process).
pub const RUN_LOG: &str = "log.txt";

/// The `compare` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The shared RON run config (model, data, budget); without one, the built-in job.
    pub config: Option<PathBuf>,
    /// Override a field of the shared config (as `sdpo train --set`).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// An arm: a name, then `--set`-style assignments separated by `;`
    /// (`--arm 'blend: train.sdpo.distillation_weight=0.5'`; `--arm sdpo` is the config
    /// as is). Default: `sdpo`, `grpo` (distillation weight 0) and `blend` (0.5).
    #[arg(long = "arm", value_name = "NAME: PATH=VALUE; ..")]
    pub arms: Vec<String>,
    /// The learning-rate sweep every arm is trained with.
    #[arg(long, value_delimiter = ',', default_values_t = [1e-4, 3e-4, 1e-3])]
    pub learning_rates: Vec<f64>,
    /// Seeds of every (arm, learning rate).
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1, 2])]
    pub seeds: Vec<u64>,
    /// Runs at a time (each gets cores / jobs threads unless RAYON_NUM_THREADS is set).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// The `train --smoke` settings: a few steps of small batches and a short warm start.
    #[arg(long)]
    pub smoke: bool,
    /// Training steps of every run (the same as --set train.steps=N).
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// The comparison folder to create (default runs/run-N).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Internal: train the one run in this folder of a comparison (what the child processes
    /// run).
    #[arg(long, hide = true, value_name = "RUN_DIR")]
    pub run: Option<PathBuf>,
}

/// One arm: its name and overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// The name in tables and plots.
    pub name: String,
    /// Its `path=value` assignments.
    pub overrides: Vec<String>,
}

impl Arm {
    /// Parses `NAME` or `NAME: a.b=v; c=w`.
    ///
    /// # Errors
    /// [`CliError::Invalid`] for an empty name or one with characters a folder name cannot
    /// have.
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(CliError::Invalid {
                field: "--arm",
                reason: format!(
                    "`{text}`: expected `NAME` or `NAME: path=value; path=value`, NAME of letters, digits, `-`, `_`, `.`"
                ),
            });
        }
        let overrides = rest
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Self {
            name: name.to_string(),
            overrides,
        })
    }

    /// SDPO as configured, GRPO, and the even blend.
    pub fn defaults() -> Vec<Self> {
        [
            "sdpo",
            "grpo: train.sdpo.distillation_weight=0.0",
            "blend: train.sdpo.distillation_weight=0.5",
        ]
        .iter()
        .map(|a| Self::parse(a).expect("valid built-in arm"))
        .collect()
    }
}

/// One run of the comparison.
#[derive(Debug, Clone)]
struct Cell {
    arm: String,
    learning_rate: f64,
    seed: u64,
    dir: PathBuf,
}

/// Runs `sdpo compare`.
///
/// # Errors
/// [`CliError`] for a bad config or arm (before any model work), a backend that is not compiled
/// in, the warm start, or a run that failed (naming its log).
pub fn compare(args: CompareArgs, backend: Option<BackendKind>) -> Result<(), CliError> {
    if let Some(dir) = args.run {
        return run_one(&dir, backend);
    }
    interrupt::install()?;
    let mut overrides = match args.smoke {
        true => Override::smoke(),
        false => Vec::new(),
    };
    overrides.extend(args.set.iter().map(Override::set));
    if let Some(n) = args.steps {
        overrides.push(Override::set(format!("train.steps={n}")));
    }
    let base = match &args.config {
        Some(path) => RunConfig::from_file(path)?,
        None => RunConfig::default(),
    };
    let mut cfg = base.with_overrides(&overrides)?;
    if let Some(b) = backend {
        cfg.backend = b;
    }
    cfg.validate()?;
    let mut cfg = cfg.resolved()?;
    ensure_compiled(cfg.backend)?;
    if args.learning_rates.is_empty() || args.seeds.is_empty() || args.jobs == 0 {
        return Err(CliError::Invalid {
            field: "--learning-rates / --seeds / --jobs",
            reason: "need at least one learning rate, one seed and one job".into(),
        });
    }
    let arms = match args.arms.is_empty() {
        true => Arm::defaults(),
        false => args
            .arms
            .iter()
            .map(|a| Arm::parse(a))
            .collect::<Result<_, _>>()?,
    };
    let mut names: Vec<&str> = arms.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(CliError::Invalid {
            field: "--arm",
            reason: format!("two arms are named `{}`", w[0]),
        });
    }
    // Every run's config is settled before the folder and the warm start, so a bad arm fails
    // at once.
    let mut planned = Vec::new();
    for arm in &arms {
        for &lr in &args.learning_rates {
            for &seed in &args.seeds {
                let mut sets: Vec<Override> = arm.overrides.iter().map(Override::set).collect();
                sets.push(Override::set(format!(
                    "train.optimizer.learning_rate={lr:e}"
                )));
                sets.push(Override::set(format!("train.seed={seed}")));
                let run_cfg = cfg.clone().with_overrides(&sets)?;
                run_cfg.validate()?;
                planned.push((arm.name.clone(), lr, seed, run_cfg));
            }
        }
    }
    let lock = create_run_dir(args.out.as_deref().or(cfg.output_dir.as_deref()))?;
    let root = lock.dir().to_path_buf();
    cfg.output_dir = Some(std::path::absolute(&root).map_err(CliError::io(&root))?);
    let mut cells = Vec::new();
    for (arm, learning_rate, seed, mut run_cfg) in planned {
        let dir = root
            .join(RUNS)
            .join(format!("{arm}-lr{learning_rate:e}-s{seed}"));
        run_cfg.output_dir = Some(std::path::absolute(&dir).map_err(CliError::io(&dir))?);
        std::fs::create_dir_all(&dir).map_err(CliError::io(&dir))?;
        write_file(&dir, RUN_CONFIG, run_cfg.to_ron_string()?.as_bytes())?;
        cells.push(Cell {
            arm,
            learning_rate,
            seed,
            dir,
        });
    }
    write_file(&root, RUN_CONFIG, cfg.to_ron_string()?.as_bytes())?;
    eprintln!(
        "comparison {}: {} arms × {} learning rates × {} seeds = {} runs, {} at a time",
        root.display(),
        arms.len(),
        args.learning_rates.len(),
        args.seeds.len(),
        cells.len(),
        args.jobs
    );
    dispatch(
        cfg.backend,
        WarmStart {
            cfg: cfg.clone(),
            dir: root.clone(),
        },
    )?;
    run_all(&cells, args.jobs, cfg.backend)?;
    let results = cells
        .iter()
        .map(|c| CellResult::read(c, &cfg))
        .collect::<Result<Vec<_>, _>>()?;
    let report = Report::of(&arms, &args.learning_rates, results, cfg.train.steps);
    write_file(
        &root,
        "compare.json",
        &serde_json::to_vec_pretty(&report).map_err(|e| CliError::Invalid {
            field: "compare.json",
            reason: e.to_string(),
        })?,
    )?;
    let table = report.markdown();
    write_file(&root, "compare.md", table.as_bytes())?;
    plot_compare(&root.join("compare.svg"), &report.curves())?;
    println!("{table}");
    println!("comparison folder: {}", root.display());
    Ok(())
}

/// The shared starting point: the warm start (built-in model) saved as the base of every run.
struct WarmStart {
    cfg: RunConfig,
    dir: PathBuf,
}

impl Dispatch for WarmStart {
    type Output = ();

    fn run<B: TrainBackend>(self, device: Device<B>) -> Result<(), CliError> {
        if !self.cfg.warm_starts() {
            return Ok(());
        }
        let bar = warm_start_bar(self.cfg.warm_start.steps);
        let job = build_job::<B>(&self.cfg, &device, |step, _| {
            bar.set_position(step as u64 + 1)
        })?;
        bar.finish_and_clear();
        eprintln!(
            "warm start: {} steps in {:.1}s, final loss {:.3}",
            self.cfg.warm_start.steps,
            job.warm_start_secs,
            job.warm_start_loss.unwrap_or(f64::NAN)
        );
        save_base::<B>(&job.base, &self.dir)
    }
}

/// Runs `cells` as child processes, `jobs` at a time; on a signal, stops them all.
fn run_all(cells: &[Cell], jobs: usize, backend: BackendKind) -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(CliError::io(Path::new("sdpo")))?;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / jobs).max(1).to_string()
    });
    let t0 = Instant::now();
    let mut pending = cells.iter().enumerate();
    let mut running: Vec<(usize, Child, Instant)> = Vec::new();
    let mut failed = Vec::new();
    let mut done = 0;
    loop {
        while running.len() < jobs && !interrupt::stop_requested() {
            let Some((i, cell)) = pending.next() else {
                break;
            };
            let log_path = cell.dir.join(RUN_LOG);
            let log = std::fs::File::create(&log_path).map_err(CliError::io(&log_path))?;
            let err = log.try_clone().map_err(CliError::io(&log_path))?;
            let child = Command::new(&exe)
                .args(["--backend", backend.name(), "compare", "--run"])
                .arg(&cell.dir)
                .env("RAYON_NUM_THREADS", &threads)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(CliError::io(&exe))?;
            running.push((i, child, Instant::now()));
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut still = Vec::new();
        for (i, mut child, started) in running {
            if interrupt::stop_requested() {
                let _ = child.kill();
            }
            match child.try_wait().map_err(CliError::io(&exe))? {
                None => still.push((i, child, started)),
                Some(status) => {
                    done += 1;
                    let cell = &cells[i];
                    let line = match status.success() {
                        true => summary_line(cell),
                        false => {
                            failed.push(cell.dir.join(RUN_LOG));
                            format!(
                                "failed ({status}); see {}",
                                cell.dir.join(RUN_LOG).display()
                            )
                        }
                    };
                    eprintln!(
                        "[{done}/{}] {} lr {:e} seed {}: {line} ({:.0}s; {:.0}s so far)",
                        cells.len(),
                        cell.arm,
                        cell.learning_rate,
                        cell.seed,
                        started.elapsed().as_secs_f64(),
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
        }
        running = still;
    }
    if interrupt::stop_requested() {
        return Err(CliError::Invalid {
            field: "compare",
            reason: "interrupted: the runs in progress were stopped".into(),
        });
    }
    match failed.first() {
        None => Ok(()),
        Some(log) => Err(CliError::Invalid {
            field: "compare",
            reason: format!(
                "{} of {} runs failed; the first one's output: {}",
                failed.len(),
                cells.len(),
                log.display()
            ),
        }),
    }
}

/// "held-out 0.133 → 0.517" from a finished run's evaluation log.
fn summary_line(cell: &Cell) -> String {
    match read_evals(&cell.dir) {
        Ok(evals) if evals.len() >= 2 => format!(
            "held-out {:.3} → {:.3}",
            evals[0].held_out_success,
            evals[evals.len() - 1].held_out_success
        ),
        _ => "done".into(),
    }
}

/// The child process: trains the run in `dir` from the comparison's shared start.
fn run_one(dir: &Path, backend: Option<BackendKind>) -> Result<(), CliError> {
    let root = dir
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| CliError::RunFolder {
            path: dir.to_path_buf(),
            reason: format!("not a run of a comparison (expected COMPARISON/{RUNS}/NAME)"),
        })?;
    let shared = RunConfig::from_run_file(&root.join(RUN_CONFIG))?;
    let mut cfg = RunConfig::from_run_file(&dir.join(RUN_CONFIG))?;
    if let Some(b) = backend {
        cfg.backend = b;
    }
    ensure_compiled(cfg.backend)?;
    dispatch(
        cfg.backend,
        OneRun {
            shared,
            cfg,
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
        },
    )
}

/// One run of a comparison, in its child process.
struct OneRun {
    shared: RunConfig,
    cfg: RunConfig,
    root: PathBuf,
    dir: PathBuf,
}

impl Dispatch for OneRun {
    type Output = ();

    fn run<B: TrainBackend>(self, device: Device<B>) -> Result<(), CliError> {
        let mut job = job_from_saved_base::<B>(&self.shared, &self.root, &self.cfg, &device)?;
        let label = algorithm_label(&self.cfg);
        let secs = run_steps(
            &mut job.trainer,
            &job.held_out,
            &self.cfg,
            &self.dir,
            label,
            false,
        )?;
        let summary =
            RunSummary::from_files(&self.dir, label, self.cfg.train.metrics_format, secs, 0.0)?;
        Summary {
            runs: vec![summary],
            wall_time_secs: secs,
        }
        .write(&self.dir)
    }
}

/// Where a finished run ended up.
#[derive(Debug, Clone, Serialize)]
struct CellResult {
    arm: String,
    learning_rate: f64,
    seed: u64,
    /// (step, held-out success) of every evaluation.
    held_out: Vec<(usize, f64)>,
    /// Mean held-out success over training (trapezoid rule over the evaluations).
    auc: f64,
    /// Held-out success after the last step.
    last: f64,
    /// Mean seconds per training step (teacher probe and evaluations excluded).
    secs_per_step: f64,
    /// The teacher probe's readings and the teacher KL, each averaged over the steps that
    /// have it.
    teacher: BTreeMap<String, f64>,
}

/// The metrics averaged into [`CellResult::teacher`].
const TEACHER_METRICS: [&str; 14] = [
    names::PROBE_TEACHER_SUCCESS,
    names::PROBE_STUDENT_SUCCESS,
    names::PROBE_TEACHER_SUCCESS_DEMONSTRATION,
    names::PROBE_STUDENT_SUCCESS_DEMONSTRATION,
    names::PROBE_TEACHER_SUCCESS_FEEDBACK,
    names::PROBE_STUDENT_SUCCESS_FEEDBACK,
    names::PROBE_FIRST_ERROR_FIXED,
    names::PROBE_FIRST_ERROR_TEACHER_PROB,
    names::PROBE_FIRST_ERROR_STUDENT_PROB,
    names::PROBE_AGREEMENT_BEFORE_ERROR,
    names::PROBE_AGREEMENT_AFTER_ERROR,
    names::PROBE_KL_FAILED,
    names::PROBE_KL_SUCCESSFUL,
    names::PROBE_SUCCESSFUL_WITH_SIGNAL,
];

impl CellResult {
    fn read(cell: &Cell, cfg: &RunConfig) -> Result<Self, CliError> {
        let held_out: Vec<(usize, f64)> = read_evals(&cell.dir)?
            .iter()
            .map(|e| (e.step, e.held_out_success))
            .collect();
        let metrics = read_metrics(&cell.dir, cfg.train.metrics_format)?;
        let mean_of = |name: &str| {
            let v: Vec<f64> = metrics
                .iter()
                .filter_map(|m| m.get(name).copied())
                .filter(|v| v.is_finite())
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let teacher = TEACHER_METRICS
            .iter()
            .chain(&[names::TEACHER_KL])
            .filter_map(|&n| mean_of(n).map(|v| (n.to_string(), v)))
            .collect();
        Ok(Self {
            arm: cell.arm.clone(),
            learning_rate: cell.learning_rate,
            seed: cell.seed,
            auc: area_under_curve(&held_out),
            last: held_out.last().map_or(f64::NAN, |p| p.1),
            held_out,
            secs_per_step: mean_of(names::TIME_STEP).unwrap_or(f64::NAN),
            teacher,
        })
    }
}

/// The mean of a curve over its step range by the trapezoid rule (its only value for one
/// point, NaN for none).
pub fn area_under_curve(points: &[(usize, f64)]) -> f64 {
    match points {
        [] => f64::NAN,
        [(_, v)] => *v,
        _ => {
            let span = (points[points.len() - 1].0 - points[0].0) as f64;
            let area: f64 = points
                .windows(2)
                .map(|w| (w[1].0 - w[0].0) as f64 * (w[0].1 + w[1].1) / 2.0)
                .sum();
            match span > 0.0 {
                true => area / span,
                false => points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64,
            }
        }
    }
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = match values.len() {
        0 | 1 => 0.0,
        _ => values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0),
    };
    (mean, var.sqrt())
}

/// One (arm, learning rate) over its seeds.
#[derive(Debug, Clone, Serialize)]
struct Group {
    arm: String,
    learning_rate: f64,
    seeds: usize,
    auc: (f64, f64),
    last: (f64, f64),
    /// Held-out success at the report's fixed steps, mean and std over seeds.
    at_steps: Vec<(usize, f64, f64)>,
    secs_per_step: f64,
    teacher: BTreeMap<String, f64>,
    best: bool,
}

/// The comparison's results.
#[derive(Debug, Clone, Serialize)]
struct Report {
    steps: usize,
    fixed_steps: Vec<usize>,
    groups: Vec<Group>,
    runs: Vec<CellResult>,
}

impl Report {
    fn of(arms: &[Arm], learning_rates: &[f64], runs: Vec<CellResult>, steps: usize) -> Self {
        let fixed_steps: Vec<usize> = [0, steps / 10, steps / 4, steps / 2, steps]
            .into_iter()
            .fold(Vec::new(), |mut v, s| {
                if v.last() != Some(&s) {
                    v.push(s);
                }
                v
            });
        let mut groups = Vec::new();
        for arm in arms {
            let start = groups.len();
            for &lr in learning_rates {
                let of: Vec<&CellResult> = runs
                    .iter()
                    .filter(|r| r.arm == arm.name && r.learning_rate == lr)
                    .collect();
                let stat = |f: &dyn Fn(&CellResult) -> f64| {
                    mean_sd(&of.iter().map(|r| f(r)).collect::<Vec<_>>())
                };
                let at_steps = fixed_steps
                    .iter()
                    .map(|&s| {
                        let (m, sd) = stat(&|r: &CellResult| value_at(&r.held_out, s));
                        (s, m, sd)
                    })
                    .collect();
                let mut teacher = BTreeMap::new();
                for name in of.iter().flat_map(|r| r.teacher.keys()) {
                    let v: Vec<f64> = of
                        .iter()
                        .filter_map(|r| r.teacher.get(name).copied())
                        .collect();
                    teacher.insert(name.clone(), mean_sd(&v).0);
                }
                groups.push(Group {
                    arm: arm.name.clone(),
                    learning_rate: lr,
                    seeds: of.len(),
                    auc: stat(&|r| r.auc),
                    last: stat(&|r| r.last),
                    at_steps,
                    secs_per_step: stat(&|r| r.secs_per_step).0,
                    teacher,
                    best: false,
                });
            }
            // Ties go to the learning rate listed first.
            let best = (start..groups.len())
                .rev()
                .max_by(|&a, &b| groups[a].auc.0.total_cmp(&groups[b].auc.0));
            if let Some(b) = best {
                groups[b].best = true;
            }
        }
        Self {
            steps,
            fixed_steps,
            groups,
            runs,
        }
    }

    /// The tables as Markdown.
    fn markdown(&self) -> String {
        let mut out = String::new();
        let steps: Vec<String> = self.fixed_steps.iter().map(|s| format!("@{s}")).collect();
        out.push_str(&format!(
            "Held-out success (greedy pass@1), mean ± std over seeds; AUC = mean held-out success over the {} steps; * = the arm's best learning rate by AUC.\n\n",
            self.steps
        ));
        out.push_str(&format!(
            "| arm | lr | seeds | AUC | {} | s/step |\n|---|---|---|---|{}---|\n",
            steps.join(" | "),
            "---|".repeat(steps.len())
        ));
        for g in &self.groups {
            let at: Vec<String> = g
                .at_steps
                .iter()
                .map(|&(_, m, sd)| format!("{m:.3} ± {sd:.3}"))
                .collect();
            out.push_str(&format!(
                "| {}{} | {:e} | {} | {:.3} ± {:.3} | {} | {:.3} |\n",
                g.arm,
                if g.best { " *" } else { "" },
                g.learning_rate,
                g.seeds,
                g.auc.0,
                g.auc.1,
                at.join(" | "),
                g.secs_per_step
            ));
        }
        out.push_str("\nThe teacher at each arm's best learning rate (teacher probe, means over probe steps and seeds):\n\n");
        let cols: [(&str, &str); 15] = [
            (names::PROBE_TEACHER_SUCCESS, "teacher greedy success"),
            (names::PROBE_STUDENT_SUCCESS, "student greedy success"),
            (
                names::PROBE_TEACHER_SUCCESS_DEMONSTRATION,
                "teacher, demonstration",
            ),
            (
                names::PROBE_STUDENT_SUCCESS_DEMONSTRATION,
                "student, same samples",
            ),
            (
                names::PROBE_TEACHER_SUCCESS_FEEDBACK,
                "teacher, feedback only",
            ),
            (
                names::PROBE_STUDENT_SUCCESS_FEEDBACK,
                "student, same samples",
            ),
            (names::PROBE_FIRST_ERROR_FIXED, "first error fixed"),
            (
                names::PROBE_FIRST_ERROR_TEACHER_PROB,
                "p_teacher(answer) at first error",
            ),
            (
                names::PROBE_FIRST_ERROR_STUDENT_PROB,
                "p_student(answer) at first error",
            ),
            (
                names::PROBE_AGREEMENT_BEFORE_ERROR,
                "agreement before error",
            ),
            (names::PROBE_AGREEMENT_AFTER_ERROR, "agreement after error"),
            (names::TEACHER_KL, "teacher KL"),
            (names::PROBE_KL_FAILED, "KL, failed"),
            (names::PROBE_KL_SUCCESSFUL, "KL, successful"),
            (
                names::PROBE_SUCCESSFUL_WITH_SIGNAL,
                "successes with a signal",
            ),
        ];
        out.push_str(&format!(
            "| arm | {} |\n|---|{}\n",
            cols.iter().map(|c| c.1).collect::<Vec<_>>().join(" | "),
            "---|".repeat(cols.len())
        ));
        for g in self.groups.iter().filter(|g| g.best) {
            let cells: Vec<String> = cols
                .iter()
                .map(|(n, _)| g.teacher.get(*n).map_or("–".into(), |v| format!("{v:.3}")))
                .collect();
            out.push_str(&format!("| {} | {} |\n", g.arm, cells.join(" | ")));
        }
        out
    }

    /// Each arm's held-out curves (every seed) at its best learning rate.
    fn curves(&self) -> Vec<ArmCurves> {
        self.groups
            .iter()
            .filter(|g| g.best)
            .map(|g| ArmCurves {
                label: format!("{} (lr {:e})", g.arm, g.learning_rate),
                seeds: self
                    .runs
                    .iter()
                    .filter(|r| r.arm == g.arm && r.learning_rate == g.learning_rate)
                    .map(|r| r.held_out.iter().map(|&(s, v)| (s as f64, v)).collect())
                    .collect(),
            })
            .collect()
    }
}

/// The curve's value at `step`: the last evaluation at or before it (NaN before the first).
fn value_at(points: &[(usize, f64)], step: usize) -> f64 {
    points
        .iter()
        .take_while(|p| p.0 <= step)
        .last()
        .map_or(f64::NAN, |p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_parse_names_and_assignments() {
        let arm =
            Arm::parse("blend: train.sdpo.distillation_weight=0.5; train.sdpo.alpha=1.0").unwrap();
        assert_eq!(arm.name, "blend");
        assert_eq!(
            arm.overrides,
            ["train.sdpo.distillation_weight=0.5", "train.sdpo.alpha=1.0"]
        );
        assert_eq!(Arm::parse("sdpo").unwrap().overrides, Vec::<String>::new());
        assert!(Arm::parse(": a=1").is_err());
        assert!(Arm::parse("a/b: a=1").is_err());
        assert_eq!(Arm::defaults().len(), 3);
    }

    #[test]
    fn area_under_curve_is_the_trapezoid_mean() {
        assert!(area_under_curve(&[]).is_nan());
        assert_eq!(area_under_curve(&[(0, 0.5)]), 0.5);
        // 0 → 1 over 10 steps, then flat at 1 over 10 more: (5 + 10) / 20.
        assert_eq!(area_under_curve(&[(0, 0.0), (10, 1.0), (20, 1.0)]), 0.75);
    }

    #[test]
    fn value_at_takes_the_last_evaluation_before() {
        let c = [(0, 0.1), (10, 0.2), (20, 0.3)];
        assert_eq!(value_at(&c, 15), 0.2);
        assert_eq!(value_at(&c, 20), 0.3);
        assert_eq!(value_at(&c[1..], 5).is_nan(), true);
        assert_eq!(mean_sd(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(mean_sd(&[1.0]), (1.0, 0.0));
    }
}
