//! `sdpo eval MODEL (--task NAME | --dataset FILE --rewards RON)`: pass@k and mean reward.
//!
//! Each problem gets `--samples` completions (greedy when it is 1 and no temperature is
//! given); pass@k is the unbiased estimator `1 − C(n−c, k) / C(n, k)` of Chen et al. (2021)
//! averaged over problems, with `c` the completions scoring at least `--threshold`. A run
//! folder with neither `--task` nor `--dataset` is evaluated on its own held-out set.

use std::path::PathBuf;

use burn::tensor::Device;
use sdpo_train::TrainBackend;

use sdpo_models::generate::{sampler_rng, SamplingParams};
use sdpo_train::builtin::Task;
use sdpo_train::dataset::{Columns, Dataset, Row};
use sdpo_train::prompts::Prompts;
use sdpo_train::reward::{RewardConfig, Rewards};
use sdpo_train::rollout::{requests, Rollout};
use sdpo_train::scoring::score_rollout;
use sdpo_train::TrainConfig;

use crate::backend::Dispatch;
use crate::error::CliError;
use crate::job::{build_rewards, load_data};
use crate::models::{load_model, ModelRef, RUN_CONFIG};
use crate::run_config::{parse_typed, RunConfig};

/// The `eval` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// `builtin`, a Hugging Face folder, a .gguf file, a run folder, or a Hugging Face Hub id
    /// ORG/NAME[:FILE][@REVISION] (fetched into the Hugging Face cache).
    pub model: String,
    /// Evaluate on every problem of a built-in task (`sort-digits` or `addition`).
    #[arg(long, value_parser = Task::from_name, conflicts_with = "dataset")]
    pub task: Option<Task>,
    /// A dataset (needs --rewards): JSONL, parquet (verl's files), Arrow, or a Hugging Face
    /// `datasets` folder (its --split); verl's columns are read as they are.
    #[arg(long, value_name = "FILE_OR_DIR", requires = "rewards")]
    pub dataset: Option<PathBuf>,
    /// The split of a --dataset folder.
    #[arg(long, default_value = "test", value_name = "NAME")]
    pub split: String,
    /// The rewards for --dataset: a RON list of reward configs, inline or a file
    /// (`'[(reward: NumericMatch(field: "answer"))]'`).
    #[arg(long, value_name = "RON_OR_FILE")]
    pub rewards: Option<String>,
    /// k of pass@k.
    #[arg(short = 'k', default_value_t = 1)]
    pub k: usize,
    /// Completions per problem (default: k).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Sampling temperature (default: 0 = greedy for one sample, 1 otherwise).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Longest completion in tokens (default: the run's evaluation setting for a run
    /// folder, else 64).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// A completion with at least this reward is a success (default: the run's
    /// `success_reward_threshold` for a run folder, else 1.0).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Evaluate only the first N problems.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Problems per generation batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Float precision of the model's weights and activations: f32 (default), f16 or bf16;
    /// refused, naming the device, where the backend cannot run it. Logits stay f32.
    #[arg(long, value_name = "f32|f16|bf16")]
    pub precision: Option<sdpo_models::Precision>,
}

/// `eval`, with everything read and checked before the model is loaded.
pub struct Eval {
    model: ModelRef,
    rows: Vec<Row>,
    rewards_from: RewardsFrom,
    args: EvalArgs,
    samples: usize,
    params: SamplingParams,
    threshold: f64,
    max_prompt_len: Option<usize>,
}

enum RewardsFrom {
    Task(Task),
    Configs(Vec<RewardConfig>),
    Run(Box<RunConfig>),
}

impl RewardsFrom {
    fn build(&self) -> Result<Rewards, CliError> {
        Ok(match self {
            RewardsFrom::Task(t) => Rewards::new().add(*t, 1.0)?,
            RewardsFrom::Configs(c) => RewardConfig::build_all(c)?,
            RewardsFrom::Run(cfg) => build_rewards(cfg)?,
        })
    }
}

/// The results.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Problems evaluated.
    pub problems: usize,
    /// Completions per problem.
    pub samples: usize,
    /// k.
    pub k: usize,
    /// Mean pass@k over problems.
    pub pass_at_k: f64,
    /// Mean reward over all completions.
    pub mean_reward: f64,
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "pass@{}: {:.4} ({} problems, {} samples each)",
            self.k, self.pass_at_k, self.problems, self.samples
        )?;
        write!(f, "mean reward: {:.4}", self.mean_reward)
    }
}

/// Unbiased pass@k from `n` samples of which `c` succeeded (`k <= n`).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if n < k || n - c < k {
        return if c > 0 { 1.0 } else { 0.0 };
    }
    // 1 - prod_{i = n-c+1}^{n} (1 - k / i)
    1.0 - ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product::<f64>()
}

impl Eval {
    /// Reads the data and rewards and checks the numbers.
    ///
    /// # Errors
    /// [`CliError`] naming the argument or file that is wrong.
    pub fn prepare(args: EvalArgs) -> Result<Self, CliError> {
        let model = ModelRef::parse(&args.model)?;
        if args.k == 0 {
            return Err(CliError::Argument {
                arg: "-k".into(),
                reason: "must be at least 1".into(),
            });
        }
        let samples = args.samples.unwrap_or(args.k);
        if samples < args.k {
            return Err(CliError::Argument {
                arg: "--samples".into(),
                reason: format!(
                    "{samples} samples cannot estimate pass@{}: need at least k",
                    args.k
                ),
            });
        }
        let run_cfg = match &model {
            ModelRef::Run { dir, .. } => Some(RunConfig::from_run_file(&dir.join(RUN_CONFIG))?),
            ModelRef::Spec(_) => None,
        };
        let (rows, rewards_from) = match (&args.task, &args.dataset, &run_cfg) {
            (Some(t), _, _) => (t.problems(), RewardsFrom::Task(*t)),
            (None, Some(path), _) => {
                let text = args.rewards.as_deref().unwrap_or_default();
                let configs: Vec<RewardConfig> = if std::path::Path::new(text).is_file() {
                    let file_text = std::fs::read_to_string(text).map_err(CliError::io(text))?;
                    parse_typed(&file_text, text)?
                } else {
                    parse_typed(text, "--rewards")?
                };
                // Build once now so a bad reward fails before the model loads.
                RewardConfig::build_all(&configs)?;
                (
                    Dataset::open(path, &Columns::default(), &args.split)?
                        .rows()
                        .to_vec(),
                    RewardsFrom::Configs(configs),
                )
            }
            (None, None, Some(cfg)) => {
                let data = load_data(cfg)?;
                if data.held_out.is_empty() {
                    return Err(CliError::Argument {
                        arg: args.model.clone(),
                        reason: "the run has no held-out set; pass --task or --dataset".into(),
                    });
                }
                build_rewards(cfg)?;
                (data.held_out, RewardsFrom::Run(Box::new(cfg.clone())))
            }
            (None, None, _) => {
                return Err(CliError::Argument {
                    arg: "eval".into(),
                    reason: "say what to evaluate on: --task NAME, or --dataset FILE --rewards RON"
                        .into(),
                })
            }
        };
        let rows = match args.limit {
            Some(n) => rows.into_iter().take(n).collect(),
            None => rows,
        };
        let temperature = args
            .temperature
            .unwrap_or(if samples == 1 { 0.0 } else { 1.0 });
        let max_new_tokens = args
            .max_new_tokens
            .or(run_cfg.as_ref().map(RunConfig::eval_max_new_tokens))
            .unwrap_or(64);
        let threshold = args
            .threshold
            .or(run_cfg
                .as_ref()
                .map(|c| c.train.sdpo.success_reward_threshold))
            .unwrap_or(1.0);
        let params = SamplingParams {
            temperature,
            max_new_tokens,
            ..SamplingParams::default()
        };
        params.validate()?;
        if args.batch_size == 0 {
            return Err(CliError::Argument {
                arg: "--batch-size".into(),
                reason: "must be at least 1".into(),
            });
        }
        // A run folder's own prompt limit, else derived from the model when it is loaded.
        let max_prompt_len = run_cfg.as_ref().and_then(|c| c.train.max_prompt_len);
        Ok(Self {
            max_prompt_len,
            model,
            rows,
            rewards_from,
            args,
            samples,
            params,
            threshold,
        })
    }
}

impl Dispatch for Eval {
    type Output = EvalReport;

    fn run<B: TrainBackend>(self, device: Device<B>) -> Result<EvalReport, CliError> {
        // Sampling only: the model (LoRA merged) on the inner backend, no trainer, no
        // optimizer.
        let precision = self.args.precision.unwrap_or_default();
        precision.check::<B::InnerBackend>(&device)?;
        let loaded = load_model::<B::InnerBackend>(&self.model, &device)?;
        let model = precision.cast(loaded.model);
        eprintln!(
            "evaluating {} on {} problems",
            loaded.origin,
            self.rows.len()
        );
        // The run's own prompt limit, else what the model's context leaves for the prompt.
        let budget_cfg = TrainConfig {
            max_prompt_len: self.max_prompt_len,
            sampling: SamplingParams {
                max_new_tokens: self.params.max_new_tokens,
                ..SamplingParams::default()
            },
            ..TrainConfig::default()
        };
        let budget = budget_cfg
            .prompt_budget(model.config.max_position_embeddings)
            .map_err(|e| e.within("train"))?;
        let prompts = Prompts::new(loaded.tokenizer, budget.max_prompt_len);
        let rewards = self.rewards_from.build()?;
        let mut params = self.params.clone();
        params.stop_token_ids = prompts.tokenizer().eos_token_ids().to_vec();
        let mut rng = sampler_rng(self.args.seed);
        let mut pass = 0.0;
        let mut reward_sum = 0.0;
        let mut count = 0usize;
        for chunk in self.rows.chunks(self.args.batch_size) {
            let messages = chunk
                .iter()
                .enumerate()
                .map(|(r, row)| (r, row.prompt.to_messages()));
            let requests = requests(&prompts, messages, self.samples, "evaluation row")?;
            let rollout = Rollout::run(&model, &prompts, requests, &params, &mut rng, &device)?;
            let rows: Vec<&Row> = rollout.requests.iter().map(|r| &chunk[r.row]).collect();
            let scored = score_rollout(&rewards, &rows, &rollout);
            let mut successes = vec![0usize; chunk.len()];
            for (request, s) in rollout.requests.iter().zip(&scored) {
                reward_sum += s.score;
                count += 1;
                if s.score >= self.threshold {
                    successes[request.row] += 1;
                }
            }
            pass += successes
                .iter()
                .map(|&c| pass_at_k(self.samples, c, self.args.k))
                .sum::<f64>();
        }
        Ok(EvalReport {
            problems: self.rows.len(),
            samples: self.samples,
            k: self.args.k,
            pass_at_k: if self.rows.is_empty() {
                0.0
            } else {
                pass / self.rows.len() as f64
            },
            mean_reward: if count == 0 {
                0.0
            } else {
                reward_sum / count as f64
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pass@k by counting the k-subsets of n samples that hold a success.
    fn brute(n: usize, c: usize, k: usize) -> f64 {
        fn choose(n: usize, k: usize) -> f64 {
            (0..k).map(|i| (n - i) as f64 / (i + 1) as f64).product()
        }
        1.0 - choose(n - c, k) / choose(n, k)
    }

    #[test]
    fn pass_at_k_matches_the_combinatorial_formula() {
        assert_eq!(pass_at_k(1, 1, 1), 1.0);
        assert_eq!(pass_at_k(1, 0, 1), 0.0);
        assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
        for (n, c, k) in [(10, 3, 2), (10, 3, 5), (20, 1, 10), (8, 0, 4)] {
            assert!(
                (pass_at_k(n, c, k) - brute(n, c, k)).abs() < 1e-12,
                "{n} {c} {k}"
            );
        }
        // Fewer failures than k: every k-subset holds a success.
        assert_eq!(pass_at_k(5, 4, 2), 1.0);
    }
}
