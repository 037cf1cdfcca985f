//! The `MODEL` argument of `eval`, `generate`, `inspect` and `export`, and loading the model a
//! run config or run folder describes.
//!
//! `MODEL` is `builtin`, a Hugging Face folder, a `.gguf` file, a run folder (its latest
//! checkpoint, LoRA adapters merged), one checkpoint folder of a run
//! (`RUN/checkpoints/step-N`) or, when no such path exists, a Hugging Face Hub id
//! `ORG/NAME[:FILE][@REVISION]` (see [`sdpo_models::hub`]).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::Device;

use sdpo_models::hub::{self, HubModel, HubSettings};
use sdpo_models::lora::{merge, LoraSet};
use sdpo_models::{load, CausalLm, Tokenizer};
use sdpo_train::builtin::{char_tokenizer, init_model, tiny_model_config};
use sdpo_train::checkpoint;

use crate::error::CliError;
use crate::run_config::{ModelSpec, RunConfig};

/// A run folder's resolved configuration.
pub const RUN_CONFIG: &str = "config.ron";
/// The checkpoints folder inside a run folder.
pub const CHECKPOINTS: &str = "checkpoints";
/// The weights training started from (the warm-started built-in model), inside a run folder.
pub const BASE_MODEL: &str = "base_model.mpk";

/// What a `MODEL` argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A model the run config form can name (built-in, HF folder, GGUF file, Hub id).
    Spec(ModelSpec),
    /// A run folder and the checkpoint to use (`None`: its base model, nothing trained yet).
    Run {
        /// The run folder.
        dir: PathBuf,
        /// The checkpoint folder.
        checkpoint: Option<PathBuf>,
    },
}

impl ModelRef {
    /// Classifies a `MODEL` argument.
    ///
    /// # Errors
    /// [`CliError::Argument`] for a path that does not exist or is neither a folder nor a
    /// `.gguf` file; [`CliError::Checkpoint`] for a run folder whose `latest` is broken.
    pub fn parse(arg: &str) -> Result<Self, CliError> {
        if arg == "builtin" {
            return Ok(Self::Spec(ModelSpec::Builtin));
        }
        let path = PathBuf::from(arg);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                // Not a local path: a Hub id, when it has the form of one (ORG/NAME...).
                let hub_like = arg.contains('/') && !arg.starts_with(['.', '/', '~']);
                if let (true, Ok(model)) = (hub_like, HubModel::parse(arg)) {
                    return Ok(Self::Spec(ModelSpec::Hub(model)));
                }
                return Err(CliError::Argument {
                    arg: arg.to_string(),
                    reason: format!(
                        "{e}; MODEL is `builtin`, a Hugging Face folder, a .gguf file, a run folder or a Hub id ORG/NAME[:FILE][@REVISION]"
                    ),
                });
            }
        };
        if meta.is_file() {
            return Ok(Self::Spec(ModelSpec::Gguf(path)));
        }
        if path.join(RUN_CONFIG).is_file() {
            // The newest checkpoint whose files match their manifest (as `--resume` picks).
            let (checkpoint, skipped) = checkpoint::newest_intact(&path.join(CHECKPOINTS))?;
            for line in skipped {
                eprintln!("warning: {line}");
            }
            return Ok(Self::Run {
                dir: path,
                checkpoint,
            });
        }
        if path.join("state.json").is_file() {
            // A checkpoint folder: RUN/checkpoints/step-N.
            let run = path
                .parent()
                .and_then(Path::parent)
                .filter(|r| r.join(RUN_CONFIG).is_file());
            return match run {
                Some(run) => Ok(Self::Run {
                    dir: run.to_path_buf(),
                    checkpoint: Some(path.clone()),
                }),
                None => Err(CliError::RunFolder {
                    path,
                    reason: format!("a checkpoint outside a run folder (no ../../{RUN_CONFIG})"),
                }),
            };
        }
        Ok(Self::Spec(ModelSpec::HfDir(path)))
    }
}

/// The built-in model (seeded with `seed`) and its character tokenizer.
///
/// # Errors
/// [`CliError::Tokenizer`] if the built-in tokenizer cannot be built.
pub fn builtin_model<B: Backend>(
    seed: u64,
    device: &Device<B>,
) -> Result<(CausalLm<B>, Tokenizer), CliError> {
    let tokenizer = char_tokenizer()?;
    B::seed(device, seed);
    let model = init_model::<B>(&tiny_model_config(tokenizer.vocab_size()), device);
    Ok((model, tokenizer))
}

/// Loads the model a [`ModelSpec`] names (the built-in one freshly initialized from `seed`).
///
/// # Errors
/// [`CliError::Load`] naming the path.
pub fn load_spec<B: Backend>(
    spec: &ModelSpec,
    seed: u64,
    device: &Device<B>,
) -> Result<(CausalLm<B>, Tokenizer), CliError> {
    match spec {
        ModelSpec::Builtin => builtin_model(seed, device),
        ModelSpec::HfDir(p) | ModelSpec::Gguf(p) => load_path(p, device),
        ModelSpec::Hub(model) => load_path(&fetch_hub(model)?, device),
    }
}

fn load_path<B: Backend>(
    path: &Path,
    device: &Device<B>,
) -> Result<(CausalLm<B>, Tokenizer), CliError> {
    let loaded = load::<B>(path, device).map_err(|source| CliError::Load {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok((loaded.model, loaded.tokenizer))
}

/// The local path of a Hub model: fetched into the Hugging Face cache, or found there when
/// `HF_HUB_OFFLINE` is set; a line on stderr says which commit.
///
/// # Errors
/// [`CliError::Hub`] naming the repo and file.
pub fn fetch_hub(model: &HubModel) -> Result<PathBuf, CliError> {
    let settings = HubSettings::from_env();
    let resolved = hub::resolve(model, &settings).map_err(|source| CliError::Hub {
        model: model.to_string(),
        source,
    })?;
    eprintln!(
        "Hub model {model} at commit {} ({})",
        &resolved.commit[..resolved.commit.len().min(12)],
        resolved.path.display()
    );
    Ok(resolved.path)
}

/// The model training starts from in run folder `dir`: the config's model, with the saved
/// warm-started weights ([`BASE_MODEL`]) for the built-in one.
///
/// # Errors
/// As [`load_spec`]; [`CliError::Checkpoint`] when the saved base weights do not load.
pub fn load_run_base<B: Backend>(
    dir: &Path,
    cfg: &RunConfig,
    device: &Device<B>,
) -> Result<(CausalLm<B>, Tokenizer), CliError> {
    let (model, tokenizer) = load_spec::<B>(&cfg.model, cfg.train.seed, device)?;
    let base = dir.join(BASE_MODEL);
    let model = if base.is_file() {
        let record = checkpoint::read_record::<B, _>(&base, device)?;
        checkpoint::load_into(model, record, &base)?
    } else if cfg.model == ModelSpec::Builtin {
        return Err(CliError::RunFolder {
            path: dir.to_path_buf(),
            reason: format!("{BASE_MODEL} (the warm-started built-in model) is missing"),
        });
    } else {
        model
    };
    Ok((model, tokenizer))
}

/// Applies a trainer checkpoint to `base`: full weights (`model.mpk`) replace it, LoRA
/// adapters (`adapters.mpk`) are merged into it.
///
/// # Errors
/// [`CliError::Checkpoint`] naming the file; [`CliError::Lora`] when the adapters do not fit.
pub fn apply_checkpoint<B: Backend>(
    base: CausalLm<B>,
    checkpoint_dir: &Path,
    cfg: &RunConfig,
    device: &Device<B>,
) -> Result<CausalLm<B>, CliError> {
    checkpoint::verify(checkpoint_dir)?;
    let full = checkpoint_dir.join("model.mpk");
    let adapters = checkpoint_dir.join("adapters.mpk");
    if full.is_file() {
        let record = checkpoint::read_record::<B, _>(&full, device)?;
        return Ok(checkpoint::load_into(base, record, &full)?);
    }
    if adapters.is_file() {
        let lora_cfg = cfg.train.lora.as_ref().ok_or_else(|| CliError::RunFolder {
            path: checkpoint_dir.to_path_buf(),
            reason: "holds LoRA adapters but the run's config.ron has no `train.lora`".into(),
        })?;
        let set = LoraSet::<B>::new(lora_cfg, &base.config, device)?;
        let record = checkpoint::read_record::<B, _>(&adapters, device)?;
        let set = checkpoint::load_into(set, record, &adapters)?;
        return Ok(merge(&base, &set)?);
    }
    Err(CliError::RunFolder {
        path: checkpoint_dir.to_path_buf(),
        reason: "holds neither model.mpk nor adapters.mpk".into(),
    })
}

/// A loaded model, its tokenizer and a line saying where it came from.
pub struct LoadedModel<B: Backend> {
    /// The model (LoRA merged).
    pub model: CausalLm<B>,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Where it came from.
    pub origin: String,
}

/// Loads what a `MODEL` argument names.
///
/// # Errors
/// [`CliError`] naming the file that is missing or unreadable.
pub fn load_model<B: Backend>(
    model: &ModelRef,
    device: &Device<B>,
) -> Result<LoadedModel<B>, CliError> {
    match model {
        ModelRef::Spec(spec) => {
            let (model, tokenizer) = load_spec::<B>(spec, 0, device)?;
            let origin = match spec {
                ModelSpec::Builtin => "the built-in model, freshly initialized (seed 0)".into(),
                other => other.describe(),
            };
            Ok(LoadedModel {
                model,
                tokenizer,
                origin,
            })
        }
        ModelRef::Run { dir, checkpoint } => {
            let cfg = RunConfig::from_run_file(&dir.join(RUN_CONFIG))?;
            let (base, tokenizer) = load_run_base::<B>(dir, &cfg, device)?;
            let (model, origin) = match checkpoint {
                Some(c) => (
                    apply_checkpoint(base, c, &cfg, device)?,
                    format!("run {} at checkpoint {}", dir.display(), c.display()),
                ),
                None => (
                    base,
                    format!("run {} before training (no checkpoint yet)", dir.display()),
                ),
            };
            Ok(LoadedModel {
                model,
                tokenizer,
                origin,
            })
        }
    }
}
