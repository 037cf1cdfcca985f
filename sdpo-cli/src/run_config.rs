//! [`RunConfig`]: everything `sdpo train` needs, as one RON file.
//!
//! Every field has a default and a misspelled field is an error with file, line and column.
//! The defaults describe the built-in job (`sdpo train` with no arguments); a file that names
//! another model starts from the library's generic [`TrainConfig`] defaults instead. A file
//! only lists what differs: it is layered over those defaults field by field, then `--smoke`
//! and each `--set key=value` are applied (see [`crate::overrides`]).
//!
//! ```ron
//! (
//!     model: HfDir("models/SmolLM2-135M-Instruct"),
//!     dataset: "data/train.jsonl",
//!     rewards: [(reward: NumericMatch(field: "answer"))],
//!     train: (steps: 200, lora: (rank: 16, alpha: 32.0), sdpo: (alpha: 1.0)),
//!     eval: (held_out: 50, every: 20),
//! )
//! ```
//!
//! `Option` fields may be written bare (`lora: (rank: 4)`) or as `Some(..)`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sdpo_core::config::ConfigError;
use sdpo_models::hub::HubModel;
use sdpo_train::builtin::job::{default_train_config, WarmStartConfig};
use sdpo_train::builtin::{tiny_model_config, Task};
use sdpo_train::dataset::Columns;
use sdpo_train::reward::{RewardConfig, RewardSpec};
use sdpo_train::TrainConfig;

use crate::backend::BackendKind;
use crate::error::CliError;
use crate::overrides::{split_assignment, Node};

/// Which model training starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ModelSpec {
    /// The built-in character-level model (~0.2 M parameters), warm-started on the task.
    #[default]
    Builtin,
    /// A Hugging Face model folder (config.json, safetensors, tokenizer.json).
    HfDir(PathBuf),
    /// A GGUF file (dequantized to f32).
    Gguf(PathBuf),
    /// A model on the Hugging Face Hub, `Hub("ORG/NAME[:FILE][@REVISION]")`: a model repo
    /// (`Hub("Qwen/Qwen2.5-0.5B-Instruct")`), at a branch, tag or commit (`@v1.0`), or one
    /// GGUF file of a repo (`:model.Q8_0.gguf`); fetched into the Hugging Face cache
    /// (`HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` as in Python).
    Hub(HubModel),
}

impl ModelSpec {
    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            ModelSpec::Builtin => "the built-in model".to_string(),
            ModelSpec::HfDir(p) => format!("Hugging Face folder {}", p.display()),
            ModelSpec::Gguf(p) => format!("GGUF file {}", p.display()),
            ModelSpec::Hub(m) => format!("Hub model {m}"),
        }
    }
}

/// How the policy is evaluated on held-out problems (greedy decoding; a problem counts as
/// solved when its reward is at least `train.sdpo.success_reward_threshold`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Problems held out of the training data (the task's or the dataset's) for evaluation;
    /// 0 = no held-out evaluation. Ignored when `dataset` is set. Default 60.
    pub held_out: usize,
    /// A separate evaluation set (scored with the run's rewards), in any form `dataset`
    /// takes. Default none.
    pub dataset: Option<PathBuf>,
    /// The split of an `eval.dataset` folder (a Hugging Face `datasets` folder). Default
    /// `"test"`.
    pub split: String,
    /// Evaluate every this many steps (0 = only before and after training). Default 10.
    pub every: usize,
    /// Longest greedy completion; default: `train.sampling.max_new_tokens`.
    pub max_new_tokens: Option<usize>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            held_out: 60,
            dataset: None,
            split: "test".into(),
            every: 10,
            max_new_tokens: None,
        }
    }
}

/// A training run: model, data, rewards, trainer settings, evaluation and output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The model to train. Default `Builtin`.
    pub model: ModelSpec,
    /// A built-in task (`sort-digits` or `addition`), its own verifier. Default: `sort-digits`
    /// unless `dataset` is set.
    pub task: Option<Task>,
    /// The training data; needs `rewards`. A JSONL file (one `{"prompt": ..., ...}` object a
    /// line), a parquet file (verl's `train.parquet`), an Arrow file, or a Hugging Face
    /// `datasets` folder (`save_to_disk`, or `push_to_hub`'s parquet shards).
    pub dataset: Option<PathBuf>,
    /// Which columns of `dataset` (and `eval.dataset`) are the prompt, the answer and the
    /// feedback. The defaults read our JSONL and verl's parquet schema as they are.
    pub columns: Columns,
    /// The split of a `dataset` folder. Default `"train"`.
    pub dataset_split: String,
    /// The rewards scoring completions of `dataset` rows (weighted sum).
    pub rewards: Vec<RewardConfig>,
    /// Train on only the first this many training rows (after the held-out split); default
    /// all.
    pub train_rows: Option<usize>,
    /// Trainer settings: algorithm (`sdpo`), batch shape, optimizer, schedule, sampling,
    /// LoRA, seed, checkpoints.
    pub train: TrainConfig,
    /// The supervised warm start of the built-in model on a built-in task.
    pub warm_start: WarmStartConfig,
    /// Held-out evaluation.
    pub eval: EvalConfig,
    /// The compute backend (`flex`, `ndarray`, `wgpu`, `cuda`); `--backend` overrides it.
    pub backend: BackendKind,
    /// The run folder; default `runs/run-N` (the first unused N). `--out` overrides it.
    pub output_dir: Option<PathBuf>,
}

/// The trainer settings of the built-in job: the library's calibrated
/// [`default_train_config`], with a checkpoint every 20 steps.
pub fn builtin_train_config() -> TrainConfig {
    let mut cfg = default_train_config();
    cfg.checkpoint_every = 20;
    cfg
}

impl Default for RunConfig {
    /// The built-in job.
    fn default() -> Self {
        Self {
            model: ModelSpec::Builtin,
            task: None,
            dataset: None,
            columns: Columns::default(),
            dataset_split: "train".into(),
            rewards: Vec::new(),
            train_rows: None,
            train: builtin_train_config(),
            warm_start: WarmStartConfig::default(),
            eval: EvalConfig::default(),
            backend: BackendKind::Flex,
            output_dir: None,
        }
    }
}

/// The overrides `--smoke` applies (before any `--set`): a few steps of small batches and a
/// short warm start, for CI.
pub const SMOKE: [&str; 10] = [
    "train.steps=3",
    "train.prompts_per_step=2",
    "train.num_generations=4",
    "train.checkpoint_every=2",
    "warm_start.steps=30",
    "warm_start.batch_size=16",
    "eval.held_out=8",
    "eval.every=2",
    "train.sampling.max_new_tokens=6",
    "eval.max_new_tokens=Some(6)",
];

/// One override and where it came from (for messages).
#[derive(Debug, Clone)]
pub struct Override {
    /// `--set` or `--smoke`.
    pub origin: &'static str,
    /// `path=value`.
    pub assignment: String,
}

impl Override {
    /// A `--set path=value`.
    pub fn set(assignment: impl Into<String>) -> Self {
        Self {
            origin: "--set",
            assignment: assignment.into(),
        }
    }

    /// The `--smoke` overrides.
    pub fn smoke() -> Vec<Self> {
        SMOKE
            .iter()
            .map(|a| Self {
                origin: "--smoke",
                assignment: a.to_string(),
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!("{} {}", self.origin, self.assignment)
    }
}

fn ron_options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

/// Parses RON text as `T` (implicit `Some`), reporting `source_name:line:column` on failure:
/// the same parser as every RON config of the workspace.
pub use sdpo_core::config::parse_ron as parse_typed;

impl RunConfig {
    /// The defaults a file naming `model` starts from: the built-in job for the built-in
    /// model, the library's generic trainer defaults otherwise.
    pub fn defaults_for(model: &ModelSpec) -> Self {
        match model {
            ModelSpec::Builtin => Self::default(),
            other => Self {
                model: other.clone(),
                train: TrainConfig::default(),
                ..Self::default()
            },
        }
    }

    /// Reads a run config file and layers it over [`Self::defaults_for`] its model.
    ///
    /// # Errors
    /// [`CliError::Config`] with the file's line and column for a syntax error, an unknown
    /// field or a wrong type.
    pub fn from_file(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_ron_str(&text, &path.display().to_string())
    }

    /// [`Self::from_file`] on text; `source_name` names it in errors.
    ///
    /// # Errors
    /// As [`Self::from_file`].
    pub fn from_ron_str(text: &str, source_name: &str) -> Result<Self, CliError> {
        let typed: RunConfig = parse_typed(text, source_name)?;
        let file = Node::parse(text).map_err(|e| CliError::Argument {
            arg: source_name.to_string(),
            reason: e.to_string(),
        })?;
        let mut tree = Self::defaults_for(&typed.model).to_tree()?;
        tree.merge(file);
        Self::from_tree(&tree).map_err(|reason| CliError::Argument {
            arg: source_name.to_string(),
            reason: format!("cannot be layered over the defaults: {reason}"),
        })
    }

    /// Reads a run folder's `config.ron` as written (fully resolved, no layering).
    ///
    /// # Errors
    /// [`CliError::Config`] naming the file.
    pub fn from_run_file(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_run_file_text(&text, &path.display().to_string())
    }

    /// [`Self::from_run_file`] on text; `source_name` names it in errors.
    ///
    /// # Errors
    /// [`CliError::Config`] naming `source_name`.
    pub fn from_run_file_text(text: &str, source_name: &str) -> Result<Self, CliError> {
        Ok(parse_typed(text, source_name)?)
    }

    fn to_tree(&self) -> Result<Node, CliError> {
        let text = ron::to_string(self).map_err(|e| CliError::Argument {
            arg: "run config".into(),
            reason: format!("cannot be written as RON: {e}"),
        })?;
        Node::parse(&text).map_err(|e| CliError::Argument {
            arg: "run config".into(),
            reason: format!("cannot be read back: {e}"),
        })
    }

    fn from_tree(tree: &Node) -> Result<Self, String> {
        ron_options()
            .from_str(&tree.to_string())
            .map_err(|e| e.code.to_string())
    }

    /// The config of a new run: `file` (the built-in job without one) with `overrides` applied
    /// in order and `backend` (the `--backend` flag) over its own, validated and
    /// [resolved](Self::resolved).
    ///
    /// # Errors
    /// [`CliError`] naming the file, line or field that is wrong.
    pub fn layered(
        file: Option<&Path>,
        overrides: &[Override],
        backend: Option<BackendKind>,
    ) -> Result<Self, CliError> {
        let base = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let mut cfg = base.with_overrides(overrides)?;
        if let Some(b) = backend {
            cfg.backend = b;
        }
        cfg.validate()?;
        cfg.resolved()
    }

    /// Applies overrides in order; each must name an existing field and leave a config that
    /// still deserializes.
    ///
    /// # Errors
    /// [`CliError::Override`] naming the override and the problem (an unknown path lists
    /// the fields that exist there).
    pub fn with_overrides(self, overrides: &[Override]) -> Result<Self, CliError> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut tree = self.to_tree()?;
        let mut cfg = self;
        for o in overrides {
            let fail = |reason: String| CliError::Override {
                origin: o.describe(),
                reason,
            };
            let (path, value) = split_assignment(&o.assignment).map_err(|e| fail(e.to_string()))?;
            let value =
                Node::parse(value).map_err(|e| fail(format!("the value is not RON: {e}")))?;
            tree.set_path(path, value)
                .map_err(|e| fail(e.to_string()))?;
            cfg = Self::from_tree(&tree).map_err(|e| fail(format!("`{path}`: {e}")))?;
            // Re-read from the typed value: a later path may walk into what this one set
            // (`train.lora=Some((rank: 4))`, then `train.lora.alpha=8.0`) and find every field.
            tree = cfg.to_tree()?;
        }
        Ok(cfg)
    }

    /// The task trained on, when the data is a built-in task (the default when neither `task`
    /// nor `dataset` is set).
    pub fn effective_task(&self) -> Option<Task> {
        match (&self.task, &self.dataset) {
            (Some(t), _) => Some(*t),
            (None, None) => Some(Task::default()),
            (None, Some(_)) => None,
        }
    }

    /// Whether the built-in warm start runs (built-in model on a built-in task).
    pub fn warm_starts(&self) -> bool {
        self.model == ModelSpec::Builtin && self.dataset.is_none()
    }

    /// Longest greedy completion in evaluations.
    pub fn eval_max_new_tokens(&self) -> usize {
        self.eval
            .max_new_tokens
            .unwrap_or(self.train.sampling.max_new_tokens)
    }

    /// Fills in what the defaults leave implicit (the task, a command reward's working
    /// folder) and makes relative paths (relative to the current folder) absolute, so the run
    /// folder's `config.ron` works from any folder.
    ///
    /// # Errors
    /// [`CliError::Io`] when a path cannot be made absolute.
    pub fn resolved(mut self) -> Result<Self, CliError> {
        self.task = self.effective_task();
        let abs = |p: &Path| -> Result<PathBuf, CliError> {
            std::path::absolute(p).map_err(CliError::io(p))
        };
        self.model = match &self.model {
            ModelSpec::Builtin => ModelSpec::Builtin,
            ModelSpec::HfDir(p) => ModelSpec::HfDir(abs(p)?),
            ModelSpec::Gguf(p) => ModelSpec::Gguf(abs(p)?),
            ModelSpec::Hub(m) => ModelSpec::Hub(m.clone()),
        };
        if let Some(p) = &self.dataset {
            self.dataset = Some(abs(p)?);
        }
        if let Some(p) = &self.eval.dataset {
            self.eval.dataset = Some(abs(p)?);
        }
        // A command reward runs where `sdpo train` was started, also when the run is resumed
        // from elsewhere.
        for r in &mut self.rewards {
            if let RewardSpec::Command { working_dir, .. } = &mut r.reward {
                if working_dir.is_none() {
                    *working_dir = Some(abs(Path::new("."))?);
                }
            }
        }
        Ok(self)
    }

    /// The settings a resumed run must share with the run it continues (`self`, the run
    /// folder's config) that `resumed` changes, one `field: was X, now Y` each. Changing the
    /// model, the data, the batch shape, the adapters, the teacher mode or the seed would mix
    /// two runs in one folder; the step budget, learning rate, evaluation interval, backend
    /// and checkpoint settings may change.
    pub fn resume_conflicts(&self, resumed: &RunConfig) -> Vec<String> {
        fn ron<T: Serialize>(v: &T) -> String {
            ron::to_string(v).unwrap_or_else(|e| format!("<{e}>"))
        }
        let (a, b) = (self, resumed);
        let fixed = [
            ("model", ron(&a.model), ron(&b.model)),
            ("task", ron(&a.effective_task()), ron(&b.effective_task())),
            ("dataset", ron(&a.dataset), ron(&b.dataset)),
            ("columns", ron(&a.columns), ron(&b.columns)),
            (
                "dataset_split",
                ron(&a.dataset_split),
                ron(&b.dataset_split),
            ),
            ("rewards", ron(&a.rewards), ron(&b.rewards)),
            ("train_rows", ron(&a.train_rows), ron(&b.train_rows)),
            (
                "eval.held_out",
                ron(&a.eval.held_out),
                ron(&b.eval.held_out),
            ),
            ("eval.dataset", ron(&a.eval.dataset), ron(&b.eval.dataset)),
            ("eval.split", ron(&a.eval.split), ron(&b.eval.split)),
            (
                "train.prompts_per_step",
                ron(&a.train.prompts_per_step),
                ron(&b.train.prompts_per_step),
            ),
            (
                "train.num_generations",
                ron(&a.train.num_generations),
                ron(&b.train.num_generations),
            ),
            ("train.lora", ron(&a.train.lora), ron(&b.train.lora)),
            (
                "train.sdpo.teacher_mode",
                ron(&a.train.sdpo.teacher_mode),
                ron(&b.train.sdpo.teacher_mode),
            ),
            ("train.seed", ron(&a.train.seed), ron(&b.train.seed)),
        ];
        fixed
            .into_iter()
            .filter(|(_, x, y)| x != y)
            .map(|(field, x, y)| format!("{field}: was {x}, now {y}"))
            .collect()
    }

    /// Checks the trainer settings and the contradictions between fields.
    ///
    /// # Errors
    /// [`CliError::Config`] from [`TrainConfig::validate`] (field names relative to `train`),
    /// or [`CliError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), CliError> {
        self.train.validate().map_err(|e| e.within("train"))?;
        self.warm_start.validate()?;
        if self.task.is_some() && self.dataset.is_some() {
            return Err(CliError::Invalid {
                field: "task",
                reason: "set either a built-in `task` or a `dataset`, not both".into(),
            });
        }
        if self.dataset.is_some() && self.rewards.is_empty() {
            return Err(CliError::Invalid {
                field: "rewards",
                reason: "a dataset needs at least one reward, e.g. `rewards: [(reward: NumericMatch(field: \"answer\"))]`".into(),
            });
        }
        if self.dataset.is_none() && !self.rewards.is_empty() {
            return Err(CliError::Invalid {
                field: "rewards",
                reason:
                    "a built-in task is scored by its own verifier; `rewards` apply to a `dataset`"
                        .into(),
            });
        }
        if self.train_rows == Some(0) {
            return Err(CliError::Invalid {
                field: "train_rows",
                reason: "must be at least 1 (or None for all rows)".into(),
            });
        }
        if let (Some(task), None) = (self.effective_task(), &self.dataset) {
            let problems = task.problems().len();
            if self.eval.held_out >= problems {
                return Err(CliError::Invalid {
                    field: "eval.held_out",
                    reason: format!(
                        "is {}, but the task `{}` has {problems} problems: hold out at most {}",
                        self.eval.held_out,
                        task.name(),
                        problems - 1
                    ),
                });
            }
        }
        if self.model == ModelSpec::Builtin {
            // Checked here, before the warm start; other models when they are loaded.
            let context = tiny_model_config(1).max_position_embeddings;
            self.train
                .prompt_budget(context)
                .map_err(|e| e.within("train"))?;
        }
        if self.eval.max_new_tokens == Some(0) {
            return Err(CliError::Invalid {
                field: "eval.max_new_tokens",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The config as pretty RON, with a header saying what wrote it.
    pub fn to_ron_string(&self) -> Result<String, CliError> {
        let body =
            ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default()).map_err(|e| {
                CliError::Argument {
                    arg: "run config".into(),
                    reason: format!("cannot be written as RON: {e}"),
                }
            })?;
        Ok(format!(
            "// The fully resolved configuration of this run, written by `sdpo train`.\n\
             // `sdpo train THIS_FILE` repeats it; `sdpo train --resume RUN_DIR` continues it.\n{body}\n"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdpo_core::config::TeacherMode;

    #[test]
    fn default_is_the_builtin_job_and_round_trips() {
        let cfg = RunConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.effective_task(), Some(Task::SortDigits));
        let text = cfg.to_ron_string().unwrap();
        assert_eq!(
            RunConfig::from_run_file_text(&text, "config.ron").unwrap(),
            cfg
        );
        // The layering path reads it back unchanged too.
        assert_eq!(RunConfig::from_ron_str(&text, "c.ron").unwrap(), cfg);
    }

    #[test]
    fn a_file_only_lists_what_differs() {
        let cfg =
            RunConfig::from_ron_str("(train: (steps: 5, sdpo: (alpha: 1.0)))", "f.ron").unwrap();
        assert_eq!(cfg.train.steps, 5);
        assert_eq!(cfg.train.sdpo.alpha, 1.0);
        // The built-in job's calibrated values survive a partial `train`.
        assert_eq!(
            cfg.train.optimizer.learning_rate,
            default_train_config().optimizer.learning_rate
        );
        assert_eq!(cfg.train.sdpo.teacher_mode, TeacherMode::Frozen);
        assert_eq!(cfg.train.sampling.max_new_tokens, 8);
        // Another model starts from the generic trainer defaults.
        let cfg = RunConfig::from_ron_str(
            "(model: HfDir(\"m\"), dataset: \"d.jsonl\", rewards: [(reward: NumericMatch())], train: (lora: (rank: 4)))",
            "f.ron",
        )
        .unwrap();
        assert_eq!(
            cfg.train.optimizer.learning_rate,
            TrainConfig::default().optimizer.learning_rate
        );
        assert_eq!(cfg.train.lora.as_ref().map(|l| l.rank), Some(4));
        cfg.validate().unwrap();
    }

    #[test]
    fn misspelled_field_gives_file_line_and_column() {
        let err = RunConfig::from_ron_str("(\n  train: (\n    stpes: 3,\n  ),\n)", "run.ron")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("run.ron:3:"), "{msg}");
        assert!(msg.contains("stpes"), "{msg}");
    }

    #[test]
    fn overrides_set_nested_fields_and_name_unknown_paths() {
        let cfg = RunConfig::default()
            .with_overrides(&[
                Override::set("train.steps=20"),
                Override::set("train.sdpo.alpha=1.0"),
                Override::set("train.lora=Some((rank:4))"),
                Override::set("train.lora.alpha=4.0"),
                Override::set("task=\"sort-digits\""),
                Override::set("model=HfDir(\"x\")"),
            ])
            .unwrap();
        assert_eq!(cfg.train.steps, 20);
        assert_eq!(cfg.train.sdpo.alpha, 1.0);
        let lora = cfg.train.lora.unwrap();
        assert_eq!((lora.rank, lora.alpha), (4, 4.0));
        assert_eq!(cfg.task, Some(Task::SortDigits));
        assert_eq!(cfg.model, ModelSpec::HfDir("x".into()));

        let err = RunConfig::default()
            .with_overrides(&[Override::set("train.sdpo.alpah=1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.sdpo.alpah") && err.contains("`alpha`"),
            "{err}"
        );
        let err = RunConfig::default()
            .with_overrides(&[Override::set("train.steps=\"many\"")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--set train.steps=\"many\"") && err.contains("train.steps"),
            "{err}"
        );
    }

    #[test]
    fn contradictions_name_the_field() {
        let cfg = RunConfig {
            dataset: Some("d.jsonl".into()),
            ..RunConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`rewards`"));
        let cfg = RunConfig {
            dataset: Some("d.jsonl".into()),
            task: Some(Task::Addition),
            ..RunConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("`task`"));
    }

    #[test]
    fn smoke_overrides_apply() {
        let cfg = RunConfig::default()
            .with_overrides(&Override::smoke())
            .unwrap();
        assert_eq!(cfg.train.steps, 3);
        assert_eq!(cfg.eval_max_new_tokens(), 6);
        cfg.validate().unwrap();
    }
}
