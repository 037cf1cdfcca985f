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
//! DIR/runs/ARM-lrLR-sSEED/  one run folder per run (config.ron, metrics, eval log, log.txt)
//! DIR/compare.{md,json,svg}
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use sdpo_train::TrainBackend;

use crate::backend::{dispatch, ensure_compiled, BackendKind, Dispatch};
use crate::commands::train::{algorithm_label, run_steps, save_base};
use crate::error::CliError;
use crate::interrupt;
use crate::job::{build_job, job_from_saved_base};
use crate::models::RUN_CONFIG;
use crate::plot::plot_compare;
use crate::progress::warm_start_bar;
use crate::run_config::{Override, RunConfig};
use crate::run_dir::{read_evals, write_file, RunSummary, Summary};
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

mod report;
use report::{CellResult, Report};

/// Runs `sdpo compare`.
///
/// # Errors
/// [`CliError`] for a bad config or arm (before any model work), a backend that is not compiled
/// in, the warm start, or a run that failed (naming its log).
pub fn compare(args: CompareArgs, backend: Option<BackendKind>) -> Result<(), CliError> {
    if let Some(dir) = &args.run {
        return run_one(dir, backend);
    }
    interrupt::install()?;
    let (cfg, arms) = shared_config(&args, backend)?;
    // Every run's config is settled before the folder and the warm start, so a bad arm fails
    // at once.
    let planned = plan_runs(&cfg, &arms, &args.learning_rates, &args.seeds)?;
    let lock = create_run_dir(args.out.as_deref().or(cfg.output_dir.as_deref()))?;
    let root = lock.dir().to_path_buf();
    let (cfg, cells) = write_runs(cfg, planned, &root)?;
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
    let json = serde_json::to_vec_pretty(&report).map_err(|e| CliError::Invalid {
        field: "compare.json",
        reason: e.to_string(),
    })?;
    write_file(&root, "compare.json", &json)?;
    let table = report.markdown();
    write_file(&root, "compare.md", table.as_bytes())?;
    plot_compare(&root.join("compare.svg"), &report.curves())?;
    println!("{table}");
    println!("comparison folder: {}", root.display());
    Ok(())
}

/// The shared config (file, `--smoke`, `--set`, `--steps`, backend; validated and resolved)
/// and the arms (distinct names).
fn shared_config(
    args: &CompareArgs,
    backend: Option<BackendKind>,
) -> Result<(RunConfig, Vec<Arm>), CliError> {
    let mut overrides = match args.smoke {
        true => Override::smoke(),
        false => Vec::new(),
    };
    overrides.extend(args.set.iter().map(Override::set));
    if let Some(n) = args.steps {
        overrides.push(Override::set(format!("train.steps={n}")));
    }
    let cfg = RunConfig::layered(args.config.as_deref(), &overrides, backend)?;
    ensure_compiled(cfg.backend)?;
    if args.learning_rates.is_empty() || args.seeds.is_empty() || args.jobs == 0 {
        return Err(CliError::Invalid {
            field: "--learning-rates / --seeds / --jobs",
            reason: "need at least one learning rate, one seed and one job".into(),
        });
    }
    let arms: Vec<Arm> = match args.arms.is_empty() {
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
    Ok((cfg, arms))
}

/// Each run's config: the shared one with the arm's assignments, the learning rate and the
/// seed (validated).
fn plan_runs(
    cfg: &RunConfig,
    arms: &[Arm],
    learning_rates: &[f64],
    seeds: &[u64],
) -> Result<Vec<(String, f64, u64, RunConfig)>, CliError> {
    let mut planned = Vec::new();
    for arm in arms {
        for &lr in learning_rates {
            for &seed in seeds {
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
    Ok(planned)
}

/// Writes the shared config to `root` and each run's to its folder `root/runs/ARM-lrLR-sSEED`.
fn write_runs(
    mut cfg: RunConfig,
    planned: Vec<(String, f64, u64, RunConfig)>,
    root: &Path,
) -> Result<(RunConfig, Vec<Cell>), CliError> {
    cfg.output_dir = Some(std::path::absolute(root).map_err(CliError::io(root))?);
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
    write_file(root, RUN_CONFIG, cfg.to_ron_string()?.as_bytes())?;
    Ok((cfg, cells))
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
            running.push((i, spawn_run(&exe, cell, backend, &threads)?, Instant::now()));
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
                    if !status.success() {
                        failed.push(cell.dir.join(RUN_LOG));
                    }
                    eprintln!(
                        "[{done}/{}] {} ({:.0}s; {:.0}s so far)",
                        cells.len(),
                        finish_line(cell, status),
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

/// Starts the child process that trains `cell`, its output going to the run's log.
fn spawn_run(
    exe: &Path,
    cell: &Cell,
    backend: BackendKind,
    threads: &str,
) -> Result<Child, CliError> {
    let log_path = cell.dir.join(RUN_LOG);
    let log = std::fs::File::create(&log_path).map_err(CliError::io(&log_path))?;
    let err = log.try_clone().map_err(CliError::io(&log_path))?;
    Command::new(exe)
        .args(["--backend", backend.name(), "compare", "--run"])
        .arg(&cell.dir)
        .env("RAYON_NUM_THREADS", threads)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(CliError::io(exe))
}

/// "sdpo lr 1e-3 seed 0: held-out 0.133 → 0.517" for a finished run (from its evaluation
/// log), or where to read why it failed.
fn finish_line(cell: &Cell, status: std::process::ExitStatus) -> String {
    let outcome = match (status.success(), read_evals(&cell.dir)) {
        (false, _) => format!(
            "failed ({status}); see {}",
            cell.dir.join(RUN_LOG).display()
        ),
        (true, Ok(evals)) if evals.len() >= 2 => format!(
            "held-out {:.3} → {:.3}",
            evals[0].held_out_success,
            evals[evals.len() - 1].held_out_success
        ),
        (true, _) => "done".into(),
    };
    format!(
        "{} lr {:e} seed {}: {outcome}",
        cell.arm, cell.learning_rate, cell.seed
    )
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
}
