//! The run folder: where it goes, the evaluation log, the curves read back for the plot and
//! the summary.
//!
//! ```text
//! RUN/config.ron        the fully resolved RunConfig
//! RUN/metrics.jsonl     one JSON object per step (or metrics.csv)
//! RUN/eval.jsonl        {"step": N, "held_out_success": x} before, during and after training
//! RUN/plot.svg          train reward and held-out success over steps
//! RUN/checkpoints/      step-N/ folders and `latest`
//! RUN/base_model.mpk    the warm-started built-in model training started from
//! RUN/summary.json      before/after numbers and wall time
//! RUN/.lock             held by the `sdpo train` writing the folder (see `run_lock`)
//! ```
//!
//! With `--compare-grpo`, `RUN/sdpo/` and `RUN/grpo/` are run folders of this shape and
//! `RUN/` holds the shared config, the two-run plot and the summary.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sdpo_core::metrics as names;
use sdpo_train::config::MetricsFormat;
use sdpo_train::metrics_log::{read_jsonl, Metrics};

use crate::error::CliError;
use crate::plot::RunCurves;

/// The per-evaluation log.
pub const EVAL_LOG: &str = "eval.jsonl";
/// The summary.
pub const SUMMARY: &str = "summary.json";
/// The plot.
pub const PLOT: &str = "plot.svg";
/// Steps averaged for the "after" train reward.
pub const LAST_STEPS: usize = 5;

/// Writes `text` to `dir/name`, through a temporary file and a rename.
///
/// # Errors
/// [`CliError::Io`] naming the file.
pub fn write_file(dir: &Path, name: &str, text: &[u8]) -> Result<(), CliError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(CliError::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(CliError::io(&path))
}

/// One held-out evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Training steps done when it was taken.
    pub step: usize,
    /// Fraction of held-out problems solved by greedy decoding.
    pub held_out_success: f64,
}

/// Appends an evaluation to `dir/eval.jsonl`.
///
/// # Errors
/// [`CliError::Io`] naming the file.
pub fn append_eval(dir: &Path, point: EvalPoint) -> Result<(), CliError> {
    let path = dir.join(EVAL_LOG);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(CliError::io(&path))?;
    let line = serde_json::json!({"step": point.step, "held_out_success": point.held_out_success});
    writeln!(f, "{line}").map_err(CliError::io(&path))
}

/// Reads `dir/eval.jsonl` (empty when absent).
///
/// # Errors
/// [`CliError::Io`] naming the file and line of a bad entry.
pub fn read_evals(dir: &Path) -> Result<Vec<EvalPoint>, CliError> {
    let path = dir.join(EVAL_LOG);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CliError::io(&path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(CliError::io(&path))?;
        if line.trim().is_empty() {
            continue;
        }
        let point: EvalPoint = serde_json::from_str(&line).map_err(|e| CliError::Io {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {}: {e}", i + 1),
            ),
        })?;
        out.push(point);
    }
    Ok(out)
}

/// Reads the per-step metrics of `dir` in either format (empty when absent).
///
/// # Errors
/// [`CliError::Io`] naming the file.
pub fn read_metrics(dir: &Path, format: MetricsFormat) -> Result<Vec<Metrics>, CliError> {
    match format {
        MetricsFormat::Jsonl => {
            let path = dir.join("metrics.jsonl");
            if !path.exists() {
                return Ok(Vec::new());
            }
            read_jsonl(&path).map_err(CliError::io(&path))
        }
        MetricsFormat::Csv => {
            let path = dir.join("metrics.csv");
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(CliError::io(&path)(e)),
            };
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
            Ok(lines
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    header
                        .iter()
                        .zip(l.split(','))
                        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
                        .collect()
                })
                .collect())
        }
    }
}

/// The curves of run folder `dir` for the plot.
///
/// # Errors
/// As [`read_metrics`] and [`read_evals`].
pub fn read_curves(dir: &Path, label: &str, format: MetricsFormat) -> Result<RunCurves, CliError> {
    let metrics = read_metrics(dir, format)?;
    let reward = metrics
        .iter()
        .filter_map(|m| Some((*m.get("step")?, *m.get(names::REWARD_MEAN)?)))
        .collect();
    let held_out = read_evals(dir)?
        .iter()
        .map(|p| (p.step as f64, p.held_out_success))
        .collect();
    Ok(RunCurves {
        label: label.to_string(),
        reward,
        held_out,
    })
}

/// Before/after numbers of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// `sdpo` or `grpo`.
    pub label: String,
    /// The run folder.
    pub dir: PathBuf,
    /// Training steps done.
    pub steps: usize,
    /// Held-out greedy success before training (first evaluation).
    pub held_out_success_before: Option<f64>,
    /// Held-out greedy success after training (last evaluation).
    pub held_out_success_after: Option<f64>,
    /// Mean train reward of the first step (samples of the untrained policy).
    pub train_reward_first_step: Option<f64>,
    /// Mean train reward over the last [`LAST_STEPS`] steps.
    pub train_reward_last_steps: Option<f64>,
    /// Seconds of training and evaluation, over every invocation of this run.
    pub train_secs: f64,
    /// Seconds of the warm start (0 without one).
    pub warm_start_secs: f64,
}

impl RunSummary {
    /// The summary of run folder `dir` from its files.
    ///
    /// # Errors
    /// As [`read_curves`].
    pub fn from_files(
        dir: &Path,
        label: &str,
        format: MetricsFormat,
        train_secs: f64,
        warm_start_secs: f64,
    ) -> Result<Self, CliError> {
        let curves = read_curves(dir, label, format)?;
        let steps = curves.reward.last().map(|p| p.0 as usize).unwrap_or(0);
        let tail: Vec<f64> = curves
            .reward
            .iter()
            .rev()
            .take(LAST_STEPS)
            .map(|p| p.1)
            .collect();
        Ok(Self {
            label: label.to_string(),
            dir: dir.to_path_buf(),
            steps,
            held_out_success_before: curves.held_out.first().map(|p| p.1),
            held_out_success_after: curves.held_out.last().map(|p| p.1),
            train_reward_first_step: curves.reward.first().map(|p| p.1),
            train_reward_last_steps: (!tail.is_empty())
                .then(|| tail.iter().sum::<f64>() / tail.len() as f64),
            train_secs,
            warm_start_secs,
        })
    }
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// One entry per run (SDPO, and GRPO with `--compare-grpo`).
    pub runs: Vec<RunSummary>,
    /// Wall time of the command that wrote it, seconds.
    pub wall_time_secs: f64,
}

impl Summary {
    /// Reads `dir/summary.json`, if there is one.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(SUMMARY)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes `dir/summary.json`.
    ///
    /// # Errors
    /// [`CliError::Io`] naming the file.
    pub fn write(&self, dir: &Path) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| CliError::Io {
            path: dir.join(SUMMARY),
            source: std::io::Error::other(e),
        })?;
        write_file(dir, SUMMARY, text.as_bytes())
    }

    /// The before/after table printed at the end of `sdpo train`.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into());
        let mut out = format!(
            "{:<6} {:>6}  {:>27}  {:>33}  {:>10}\n",
            "run",
            "steps",
            "held-out success before→after",
            "train reward step 1→last 5 steps",
            "train time"
        );
        for r in &self.runs {
            out.push_str(&format!(
                "{:<6} {:>6}  {:>27}  {:>33}  {:>9.1}s\n",
                r.label,
                r.steps,
                format!(
                    "{} → {}",
                    f(r.held_out_success_before),
                    f(r.held_out_success_after)
                ),
                format!(
                    "{} → {}",
                    f(r.train_reward_first_step),
                    f(r.train_reward_last_steps)
                ),
                r.train_secs,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_comes_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut lines = String::new();
        for (step, r) in [(1, 0.0), (2, 0.2), (3, 0.4), (4, 0.6), (5, 0.8), (6, 1.0)] {
            lines.push_str(&format!("{{\"step\": {step}, \"reward/mean\": {r}}}\n"));
        }
        std::fs::write(d.join("metrics.jsonl"), lines).unwrap();
        append_eval(
            d,
            EvalPoint {
                step: 0,
                held_out_success: 0.1,
            },
        )
        .unwrap();
        append_eval(
            d,
            EvalPoint {
                step: 6,
                held_out_success: 0.7,
            },
        )
        .unwrap();
        let s = RunSummary::from_files(d, "sdpo", MetricsFormat::Jsonl, 2.0, 1.0).unwrap();
        assert_eq!(s.steps, 6);
        assert_eq!(s.held_out_success_before, Some(0.1));
        assert_eq!(s.held_out_success_after, Some(0.7));
        assert_eq!(s.train_reward_first_step, Some(0.0));
        assert!((s.train_reward_last_steps.unwrap() - 0.6).abs() < 1e-12);
        let summary = Summary {
            runs: vec![s],
            wall_time_secs: 3.0,
        };
        summary.write(d).unwrap();
        assert_eq!(Summary::read(d).unwrap(), summary);
        assert!(
            summary.table().contains("0.100 → 0.700"),
            "{}",
            summary.table()
        );
    }
}
