//! From a [`RunConfig`] to a ready trainer: data and rewards first (cheap checks before any
//! model is loaded), then the model (warm-started when built-in), then the trainer.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use sdpo_train::TrainBackend;

use sdpo_models::CausalLm;
use sdpo_models::Tokenizer;
use sdpo_train::builtin::job::{builtin_job, BuiltinJobConfig};
use sdpo_train::dataset::{Dataset, Row};
use sdpo_train::reward::{RewardConfig, Rewards};
use sdpo_train::{SdpoTrainer, TrainConfig};

use crate::error::CliError;
use crate::models::{load_run_base, load_spec};
use crate::run_config::RunConfig;

/// The training data and how it is scored.
#[derive(Debug, Clone)]
pub struct Data {
    /// Training rows.
    pub train: Dataset,
    /// Held-out rows (may be empty).
    pub held_out: Vec<Row>,
}

/// Builds the run's rewards (a built-in task's verifier, or `rewards`).
///
/// # Errors
/// [`CliError::Rewards`] naming the reward that cannot be built.
pub fn build_rewards(cfg: &RunConfig) -> Result<Rewards, CliError> {
    Ok(match cfg.effective_task() {
        Some(task) => Rewards::new().add(task, 1.0)?,
        None => RewardConfig::build_all(&cfg.rewards)?,
    })
}

/// Reads the training data and the held-out set.
///
/// # Errors
/// [`CliError::Dataset`] naming the file and line of a bad row, or an impossible split.
pub fn load_data(cfg: &RunConfig) -> Result<Data, CliError> {
    let seed = cfg.train.seed;
    let (train, held_out) = match (cfg.effective_task(), &cfg.dataset) {
        (Some(task), _) => {
            let (train, held) = task.split(cfg.eval.held_out, seed);
            (Dataset::from_rows(train)?, held)
        }
        (None, Some(path)) => {
            let all = Dataset::open(path, &cfg.columns, &cfg.dataset_split)?;
            if cfg.eval.held_out > 0 && cfg.eval.dataset.is_none() {
                let split = all.split(cfg.eval.held_out, seed).map_err(|e| CliError::Invalid {
                    field: "eval.held_out",
                    reason: format!(
                        "{e} (dataset {}); lower it, set 0 for no held-out evaluation, or give eval.dataset",
                        path.display()
                    ),
                })?;
                (split.train, split.held_out.rows().to_vec())
            } else {
                (all, Vec::new())
            }
        }
        (None, None) => {
            return Err(CliError::Invalid {
                field: "dataset",
                reason: "no data: set `task` or `dataset`".into(),
            })
        }
    };
    let held_out = match &cfg.eval.dataset {
        Some(path) => Dataset::open(path, &cfg.columns, &cfg.eval.split)?
            .rows()
            .to_vec(),
        None => held_out,
    };
    // As the built-in job does it: the first rows after the split.
    let train = match cfg.train_rows {
        Some(n) if n < train.len() => Dataset::from_rows(train.rows()[..n.max(1)].to_vec())?,
        _ => train,
    };
    Ok(Data { train, held_out })
}

/// A trainer ready to step, with what else a run needs.
pub struct Job<B: TrainBackend> {
    /// The trainer.
    pub trainer: SdpoTrainer<B>,
    /// Held-out rows for greedy success.
    pub held_out: Vec<Row>,
    /// The model training starts from (after the warm start), for a GRPO comparison and
    /// for the run folder.
    pub base: CausalLm<B>,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// The training rows.
    pub train_rows: Dataset,
    /// Seconds spent in the warm start (0 without one).
    pub warm_start_secs: f64,
    /// The warm start's mean loss over its last tenth of steps (batches are grouped by
    /// length, so single steps' losses differ by batch).
    pub warm_start_loss: Option<f64>,
}

/// Builds a fresh job: data and rewards, the model (with the built-in warm start when the
/// config asks for it; `on_warm_step(step, loss)` reports its progress), then the trainer.
///
/// # Errors
/// [`CliError`] naming the file, field or model that failed.
pub fn build_job<B: TrainBackend>(
    cfg: &RunConfig,
    device: &Device<B>,
    on_warm_step: impl FnMut(usize, f64),
) -> Result<Job<B>, CliError> {
    let data = load_data(cfg)?;
    let rewards = build_rewards(cfg)?;
    if cfg.warm_starts() {
        // Built before any model is loaded, so a bad reward fails fast; the built-in job
        // scores with its task's own verifier.
        drop(rewards);
        let task = cfg.effective_task().unwrap_or_default();
        let t0 = Instant::now();
        let job_cfg = BuiltinJobConfig {
            task,
            held_out: cfg.eval.held_out,
            train_rows: cfg.train_rows,
            warm_start: cfg.warm_start.clone(),
        };
        let job = builtin_job::<B>(&job_cfg, cfg.train.clone(), device, on_warm_step)?;
        let warm_start_secs = t0.elapsed().as_secs_f64();
        let base = job.trainer.policy().lm.clone();
        let tokenizer = job.trainer.tokenizer().clone();
        let train_rows = job.trainer.dataset().clone();
        // An explicit evaluation set replaces the task's held-out split.
        let held_out = if cfg.eval.dataset.is_some() {
            data.held_out
        } else {
            job.held_out
        };
        return Ok(Job {
            trainer: job.trainer,
            held_out,
            base,
            tokenizer,
            train_rows,
            warm_start_secs,
            warm_start_loss: tail_mean(&job.warm_start_losses),
        });
    }
    let (model, tokenizer) = load_spec::<B>(&cfg.model, cfg.train.seed, device)?;
    job_from_model(cfg, model, tokenizer, data, rewards, device)
}

/// Rebuilds the job of run folder `dir` from its saved base model (no warm start) and
/// restores the checkpoint `checkpoint`.
///
/// # Errors
/// As [`build_job`]; [`CliError::Checkpoint`] / [`CliError::Train`] for a checkpoint that
/// does not fit.
pub fn resume_job<B: TrainBackend>(
    cfg: &RunConfig,
    dir: &Path,
    checkpoint: &Path,
    device: &Device<B>,
) -> Result<Job<B>, CliError> {
    let data = load_data(cfg)?;
    let rewards = build_rewards(cfg)?;
    let (model, tokenizer) = load_run_base::<B>(dir, cfg, device)?;
    let mut job = job_from_model(cfg, model, tokenizer, data, rewards, device)?;
    job.trainer.load_checkpoint(checkpoint)?;
    Ok(job)
}

/// A job training `cfg` from the base model saved in folder `base_dir` (written by a run of
/// `base_cfg`), with `base_cfg`'s training rows and held-out set and no warm start: the runs of
/// `sdpo compare` share one start and one data split this way, whatever their seeds.
///
/// # Errors
/// As [`build_job`]; [`CliError::Checkpoint`] when the saved base weights do not load.
pub fn job_from_saved_base<B: TrainBackend>(
    base_cfg: &RunConfig,
    base_dir: &Path,
    cfg: &RunConfig,
    device: &Device<B>,
) -> Result<Job<B>, CliError> {
    let data = load_data(base_cfg)?;
    let rewards = build_rewards(cfg)?;
    let (model, tokenizer) = load_run_base::<B>(base_dir, base_cfg, device)?;
    job_from_model(cfg, model, tokenizer, data, rewards, device)
}

fn job_from_model<B: TrainBackend>(
    cfg: &RunConfig,
    model: CausalLm<B>,
    tokenizer: Tokenizer,
    data: Data,
    rewards: Rewards,
    device: &Device<B>,
) -> Result<Job<B>, CliError> {
    let trainer = SdpoTrainer::new(
        cfg.train.clone(),
        model.clone(),
        tokenizer.clone(),
        data.train.clone(),
        rewards,
        device,
    )?;
    // The trainer reads (materializes) the weights; keep the materialized ones.
    let base = trainer.policy().lm.clone();
    drop(model);
    Ok(Job {
        trainer,
        held_out: data.held_out,
        base,
        tokenizer,
        train_rows: data.train,
        warm_start_secs: 0.0,
        warm_start_loss: None,
    })
}

/// The mean of the last `n` (at least one, at most all) of `values`; `None` when empty.
pub fn mean_of_last(values: &[f64], n: usize) -> Option<f64> {
    let n = n.max(1).min(values.len());
    (n > 0).then(|| values[values.len() - n..].iter().sum::<f64>() / n as f64)
}

/// The mean of the last tenth (at least one) of `losses`; `None` when empty.
pub fn tail_mean(losses: &[f64]) -> Option<f64> {
    mean_of_last(losses, losses.len() / 10)
}

/// A GRPO trainer (`distillation_weight` 0) with `job`'s budget, seed and starting weights.
///
/// # Errors
/// As [`SdpoTrainer::new`].
pub fn grpo_trainer<B: TrainBackend>(
    cfg: &RunConfig,
    job: &Job<B>,
    device: &Device<B>,
) -> Result<SdpoTrainer<B>, CliError> {
    Ok(SdpoTrainer::new(
        grpo_config(&cfg.train),
        job.base.clone(),
        job.tokenizer.clone(),
        job.train_rows.clone(),
        build_rewards(cfg)?,
        device,
    )?)
}

/// `train` with the distillation weight at 0: GRPO.
pub fn grpo_config(train: &TrainConfig) -> TrainConfig {
    let mut t = train.clone();
    t.sdpo.distillation_weight = 0.0;
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdpo_train::builtin::Task;

    #[test]
    fn tail_mean_averages_the_last_tenth() {
        assert_eq!(tail_mean(&[]), None);
        assert_eq!(tail_mean(&[3.0]), Some(3.0));
        let losses: Vec<f64> = (0..20).map(f64::from).collect();
        assert_eq!(tail_mean(&losses), Some(18.5));
        assert_eq!(mean_of_last(&losses, 4), Some(17.5));
        assert_eq!(mean_of_last(&losses, 0), Some(19.0));
        assert_eq!(mean_of_last(&losses[..2], 5), Some(0.5));
    }

    #[test]
    fn task_data_matches_the_builtin_split_and_train_rows() {
        let cfg = RunConfig {
            train_rows: Some(10),
            ..RunConfig::default()
        };
        let data = load_data(&cfg).unwrap();
        let (train, held) = Task::default().split(cfg.eval.held_out, cfg.train.seed);
        assert_eq!(data.held_out, held);
        assert_eq!(data.train.rows(), &train[..10]);
    }

    #[test]
    fn dataset_rows_split_and_an_eval_set_replaces_the_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let rows: String = (0..6)
            .map(|i| format!("{{\"prompt\": \"q{i}\", \"answer\": \"{i}\"}}\n"))
            .collect();
        std::fs::write(&path, rows).unwrap();
        let mut cfg = RunConfig {
            dataset: Some(path.clone()),
            ..RunConfig::default()
        };
        cfg.eval.held_out = 2;
        let data = load_data(&cfg).unwrap();
        assert_eq!((data.train.len(), data.held_out.len()), (4, 2));
        cfg.eval.dataset = Some(path);
        let data = load_data(&cfg).unwrap();
        assert_eq!((data.train.len(), data.held_out.len()), (6, 6));
        cfg.eval.held_out = 6;
        cfg.eval.dataset = None;
        let err = load_data(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("eval.held_out") && err.contains("6 of 6"),
            "{err}"
        );
    }
}
