//! Loading a Hugging Face model folder (`config.json` + safetensors) into a [`CausalLm`].
//!
//! The pipeline: parse and resolve `config.json` → build the model on the device (weights
//! lazily initialized) → run each safetensors file through burn-store with
//! [`PyTorchToBurnAdapter`] (transposes `Linear` weights, `[out, in]` → `[in, out]`) chained
//! with [`CastFloat`] (f16 / bf16 / f32 → the backend's float dtype) → merge the per-file
//! results → fail on anything missing, unused or misshapen, naming the file and the tensor.
//!
//! The apply-and-check half of that pipeline ([`load_adapter`], [`WeightTally`]) is shared with
//! the GGUF loader in [`crate::load`], whose dequantized tensors carry the same Hugging Face
//! names and layout.
//!
//! No keys are renamed: module fields carry the checkpoint names. The only checkpoint keys
//! allowed to go unused are:
//!
//! | key                                  | why                                        |
//! |--------------------------------------|--------------------------------------------|
//! | `lm_head.weight` (tied embeddings)   | some exports store a copy of the embedding |
//! | `*.rotary_emb.inv_freq`              | old exports store the RoPE buffer          |

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::tensor::{backend::Backend, DType, Device, Tensor};
use burn_store::{
    ApplyError, ApplyResult, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
    SafetensorsStoreError, TensorSnapshot, TensorSnapshotError,
};
use serde::Deserialize;

use crate::arch::{CausalLm, ConfigError, HfConfig, ModelConfig};
use crate::gguf::GgufError;
use crate::tokenizer::TokenizerError;

/// Name of the single-file checkpoint in a HF folder.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index of a sharded HF checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Names shown in an error before the rest are counted.
const NAMES_SHOWN: usize = 12;

/// `a, b, c` — at most [`NAMES_SHOWN`] names, then how many more (a broken file can list
/// millions).
fn name_list(names: &[String]) -> String {
    let shown = names[..names.len().min(NAMES_SHOWN)].join(", ");
    match names.len().saturating_sub(NAMES_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Why a model (a Hugging Face folder or a GGUF file) could not be loaded. Every variant names
/// the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `config.json` or the shard index is not valid JSON of the expected form.
    #[error("{}: invalid JSON: {source}", file.display())]
    Json {
        /// The file.
        file: PathBuf,
        /// The parser error (with line and column).
        source: serde_json::Error,
    },
    /// `config.json` (or a GGUF file's metadata) describes a model this crate does not support.
    #[error("{}: {source}", file.display())]
    Config {
        /// The `config.json` path, or the GGUF file.
        file: PathBuf,
        /// What is unsupported.
        source: ConfigError,
    },
    /// The folder holds neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error("{}: no weights found (expected {SINGLE_FILE} or {INDEX_FILE})", dir.display())]
    NoWeights {
        /// The folder.
        dir: PathBuf,
    },
    /// A safetensors file could not be opened or parsed.
    #[error("{}: {source}", file.display())]
    Safetensors {
        /// The safetensors file.
        file: PathBuf,
        /// The reader error.
        source: SafetensorsStoreError,
    },
    /// A tensor's shape differs from what the configuration implies (checkpoint layout,
    /// i.e. `[out, in]` for linear weights; for GGUF files the row-major shape, which is the
    /// GGUF dims reversed).
    #[error("{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", file.display())]
    ShapeMismatch {
        /// The safetensors or GGUF file.
        file: PathBuf,
        /// The tensor's name in that file (`model.layers.0.mlp.up_proj.weight`,
        /// `blk.0.ffn_up.weight`).
        tensor: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Shape found in the file.
        found: Vec<usize>,
    },
    /// A tensor could not be decoded or converted.
    #[error("{}: tensor `{tensor}`: {message}", file.display())]
    Tensor {
        /// The safetensors or GGUF file.
        file: PathBuf,
        /// The tensor's name in that file.
        tensor: String,
        /// What went wrong.
        message: String,
    },
    /// Tensors the model needs are in no file.
    #[error("{}: missing tensors: {}", file.display(), name_list(tensors))]
    MissingTensors {
        /// The single file, the shard index or the GGUF file.
        file: PathBuf,
        /// The tensors' names as that file would spell them, sorted.
        tensors: Vec<String>,
    },
    /// The config asks for more layers than the file has tensors for (checked before the
    /// model is built: a corrupt header must not allocate millions of layers).
    #[error("{}: the metadata says {configured} layers, but the file has tensors for {found}", file.display())]
    LayerCount {
        /// The file.
        file: PathBuf,
        /// Layers in the config.
        configured: usize,
        /// Layers the file's tensor names cover (`model.layers.N` / `blk.N`).
        found: usize,
    },
    /// The config describes a model larger than its weight files can hold (checked before the
    /// model is built).
    #[error("{}: the config describes a model of at least {needed} parameters, but the weights hold at most {available} values", file.display())]
    TooLarge {
        /// The weight file (or shard index, or GGUF file).
        file: PathBuf,
        /// The config's lower bound on parameters.
        needed: u128,
        /// Values the weight files can hold.
        available: u128,
    },
    /// A file holds tensors that belong to no parameter (wrong architecture or config).
    #[error("{}: unused tensors (no such parameter in a {model_type} model): {}", file.display(), name_list(tensors))]
    UnusedTensors {
        /// The safetensors or GGUF file.
        file: PathBuf,
        /// The resolved `model_type`.
        model_type: String,
        /// The tensors' names in that file, sorted.
        tensors: Vec<String>,
    },
    /// A GGUF file is malformed or describes something unsupported (the error names the file
    /// and the metadata key or tensor).
    #[error("{source}")]
    Gguf {
        /// The reader's error.
        #[from]
        source: GgufError,
    },
    /// The tokenizer stored with the model could not be built.
    #[error("{}: tokenizer: {source}", path.display())]
    Tokenizer {
        /// The model folder or GGUF file.
        path: PathBuf,
        /// What went wrong.
        source: TokenizerError,
    },
    /// The tokenizer produces ids the model has no embedding for.
    #[error("{}: the tokenizer has {tokenizer_vocab} tokens but the model only {model_vocab} (vocab_size): ids past {model_vocab} would have no embedding", path.display())]
    VocabMismatch {
        /// The model folder or GGUF file.
        path: PathBuf,
        /// Tokens the tokenizer knows, added tokens included.
        tokenizer_vocab: usize,
        /// Rows of the model's embedding matrix.
        model_vocab: usize,
    },
    /// The path is neither a Hugging Face model folder nor a GGUF file.
    #[error("{}: not a model: expected a Hugging Face model folder (config.json, model.safetensors, tokenizer.json) or a GGUF file (extension .gguf or magic bytes \"GGUF\"), found {found}", path.display())]
    UnknownFormat {
        /// The path given.
        path: PathBuf,
        /// What is there instead (e.g. the first bytes of the file).
        found: String,
    },
}

/// Casts every floating-point tensor to a target dtype while loading (f16 / bf16 / f32 / f64).
#[derive(Debug, Clone, Copy)]
pub struct CastFloat(pub DType);

impl ModuleAdapter for CastFloat {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let target = self.0;
        if snapshot.dtype == target {
            return snapshot.clone();
        }
        let data_fn = snapshot.clone_data_fn();
        let found = snapshot.dtype;
        // An integer or boolean tensor where a weight belongs: an error when it is read (Burn
        // would panic building a float tensor from it).
        let convert = move || {
            if found.is_float() {
                Ok(data_fn()?.convert_dtype(target))
            } else {
                Err(TensorSnapshotError::DataError(format!(
                    "stored as {found:?}, but a weight must be a float tensor"
                )))
            }
        };
        TensorSnapshot::from_closure(
            Rc::new(convert),
            target,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// The float dtype of the backend's tensors on `device` (what loaded weights are cast to).
pub fn float_dtype<B: Backend>(device: &Device<B>) -> DType {
    Tensor::<B, 1>::zeros([1], device).dtype()
}

/// The adapter both loaders apply to every tensor: Hugging Face (PyTorch) layout to Burn's
/// ([`PyTorchToBurnAdapter`] transposes `Linear` weights), then [`CastFloat`] to `dtype`.
pub fn load_adapter(dtype: DType) -> impl ModuleAdapter {
    PyTorchToBurnAdapter.chain(CastFloat(dtype))
}

/// Reads and resolves `<dir>/config.json`.
///
/// # Errors
/// [`LoadError::Io`], [`LoadError::Json`] or [`LoadError::Config`], naming the file.
pub fn load_hf_config(dir: &Path) -> Result<ModelConfig, LoadError> {
    let file = dir.join("config.json");
    let text = read_to_string(&file)?;
    let hf: HfConfig = serde_json::from_str(&text).map_err(|source| LoadError::Json {
        file: file.clone(),
        source,
    })?;
    ModelConfig::from_hf(&hf).map_err(|source| LoadError::Config { file, source })
}

/// The safetensors files of a HF folder, in shard order, and the file to blame for missing
/// tensors (the single file or the index).
///
/// # Errors
/// [`LoadError::NoWeights`] when neither file exists; I/O and JSON errors of the index.
pub fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, PathBuf), LoadError> {
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok((vec![single.clone()], single));
    }
    let index = dir.join(INDEX_FILE);
    if !index.is_file() {
        return Err(LoadError::NoWeights {
            dir: dir.to_path_buf(),
        });
    }
    let text = read_to_string(&index)?;
    let parsed: ShardIndex = serde_json::from_str(&text).map_err(|source| LoadError::Json {
        file: index.clone(),
        source,
    })?;
    let shards: BTreeSet<&String> = parsed.weight_map.values().collect();
    Ok((shards.into_iter().map(|s| dir.join(s)).collect(), index))
}

/// Loads a Hugging Face model folder: `config.json` plus `model.safetensors` or a sharded
/// `model.safetensors.index.json` with its shards. Weights stored as f32, f16 or bf16 are cast
/// to the backend's float dtype. (The tokenizer is not read; [`crate::load::load`] loads both.)
///
/// # Errors
/// [`LoadError`] naming the file and, for weights, the tensor with expected and found shapes;
/// missing and unused tensors are errors (except a stored `lm_head.weight` when embeddings are
/// tied).
pub fn load_hf_dir<B: Backend>(
    path: impl AsRef<Path>,
    device: &Device<B>,
) -> Result<CausalLm<B>, LoadError> {
    let dir = path.as_ref();
    let config = load_hf_config(dir)?;
    load_hf_weights(dir, &config, device)
}

/// Builds the model of `config` on `device` and loads the safetensors weights of folder `dir`
/// into it (the second half of [`load_hf_dir`]).
///
/// # Errors
/// As [`load_hf_dir`], minus the `config.json` errors.
pub fn load_hf_weights<B: Backend>(
    dir: &Path,
    config: &ModelConfig,
    device: &Device<B>,
) -> Result<CausalLm<B>, LoadError> {
    let (files, blame) = weight_files(dir)?;
    // At least 2 bytes a value (f16/bf16): a bound on what the files can hold.
    let bytes: u128 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len() as u128))
        .sum();
    check_size(&blame, config, bytes / 2)?;
    let mut model = CausalLm::<B>::new(config, device);
    let float_dtype = float_dtype::<B>(device);

    let mut tally = WeightTally::default();
    for file in &files {
        if !file.is_file() {
            return Err(LoadError::Io {
                path: file.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "shard listed in the index is absent",
                ),
            });
        }
        let mut store = SafetensorsStore::from_file(file.clone())
            .with_from_adapter(load_adapter(float_dtype))
            .allow_partial(true)
            .validate(false);
        let result = model
            .load_from(&mut store)
            .map_err(|source| LoadError::Safetensors {
                file: file.clone(),
                source,
            })?;
        tally.record(&model, file, result, &|name| name.to_string())?;
    }
    tally.finish(blame, &|name| name.to_string())?;
    Ok(model)
}

/// The outcome of applying one or more weight files to a model, checked file by file: the one
/// piece of code that decides what counts as a loading error, for safetensors and GGUF alike.
///
/// Tensor names in the model are Hugging Face names; the `spell` functions given to
/// [`WeightTally::record`] and [`WeightTally::finish`] turn one into the name the file uses
/// (the identity for safetensors, `blk.N.*` for GGUF), so errors quote the file.
#[derive(Debug, Default)]
pub struct WeightTally {
    applied: BTreeSet<String>,
    missing: BTreeSet<String>,
}

impl WeightTally {
    /// Checks one file's [`ApplyResult`] (from [`ModuleSnapshot::load_from`] or
    /// [`ModuleSnapshot::apply`] with [`load_adapter`]) and remembers what it provided.
    ///
    /// # Errors
    /// [`LoadError::ShapeMismatch`] (in the file's `[out, in]` layout),
    /// [`LoadError::Tensor`] for undecodable data, [`LoadError::UnusedTensors`] for tensors
    /// that match no parameter (a stored tied `lm_head.weight` and `rotary_emb.inv_freq`
    /// buffers excepted).
    pub fn record<B: Backend>(
        &mut self,
        model: &CausalLm<B>,
        file: &Path,
        result: ApplyResult,
        spell: &dyn Fn(&str) -> String,
    ) -> Result<(), LoadError> {
        check_file_result(model, file, &result, spell)?;
        self.applied.extend(result.applied);
        self.missing
            .extend(result.missing.into_iter().map(|(path, _)| path));
        Ok(())
    }

    /// Fails if a parameter was provided by no file; `blame` is the file named in the error
    /// (the single file, the shard index or the GGUF file).
    ///
    /// # Errors
    /// [`LoadError::MissingTensors`] with the names as `spell` writes them, sorted.
    pub fn finish(self, blame: PathBuf, spell: &dyn Fn(&str) -> String) -> Result<(), LoadError> {
        let missing: BTreeSet<String> = self
            .missing
            .difference(&self.applied)
            .map(|name| spell(name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(LoadError::MissingTensors {
            file: blame,
            tensors: missing.into_iter().collect(),
        })
    }
}

/// Turns one file's apply errors and unused keys into a [`LoadError`].
fn check_file_result<B: Backend>(
    model: &CausalLm<B>,
    file: &Path,
    result: &ApplyResult,
    spell: &dyn Fn(&str) -> String,
) -> Result<(), LoadError> {
    if let Some(error) = result.errors.first() {
        return Err(match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => {
                let (mut expected, mut found) = (expected.to_vec(), found.to_vec());
                // Linear weights were transposed to Burn's [in, out]; report the file's layout.
                if is_linear_weight(model, path) {
                    expected.reverse();
                    found.reverse();
                }
                LoadError::ShapeMismatch {
                    file: file.to_path_buf(),
                    tensor: spell(path),
                    expected,
                    found,
                }
            }
            ApplyError::DTypeMismatch { path, .. }
            | ApplyError::AdapterError { path, .. }
            | ApplyError::LoadError { path, .. } => LoadError::Tensor {
                file: file.to_path_buf(),
                tensor: spell(path),
                message: error.to_string(),
            },
        });
    }
    let tied = model.lm_head.is_none();
    let unused: Vec<String> = result
        .unused
        .iter()
        .filter(|key| !(tied && key.as_str() == "lm_head.weight"))
        .filter(|key| !key.ends_with("rotary_emb.inv_freq"))
        .map(|key| spell(key))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !unused.is_empty() {
        return Err(LoadError::UnusedTensors {
            file: file.to_path_buf(),
            model_type: model.config.model_type.clone(),
            tensors: unused,
        });
    }
    Ok(())
}

/// Whether `path` is the weight of a `Linear` module (only called on the error path: it
/// snapshots the model).
fn is_linear_weight<B: Backend>(model: &CausalLm<B>, path: &str) -> bool {
    model
        .collect(None, None, false)
        .iter()
        .any(|s| s.full_path() == path && s.module_type().as_deref() == Some("Struct:Linear"))
        && path.ends_with("weight")
}

fn read_to_string(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Fails when `num_layers` exceeds the layers that `hf_names` (Hugging Face tensor names)
/// cover, before a model of that depth is built.
///
/// # Errors
/// [`LoadError::LayerCount`] naming `file`.
pub fn check_layer_count<'a>(
    file: &Path,
    hf_names: impl Iterator<Item = &'a str>,
    num_layers: usize,
) -> Result<(), LoadError> {
    let found = hf_names
        .filter_map(|n| {
            n.strip_prefix("model.layers.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    if num_layers > found {
        return Err(LoadError::LayerCount {
            file: file.to_path_buf(),
            configured: num_layers,
            found,
        });
    }
    Ok(())
}

/// Fails when `config` needs more parameters than `available` values (what the weight files
/// hold), before a model of that size is built.
///
/// # Errors
/// [`LoadError::TooLarge`] naming `file`.
pub fn check_size(file: &Path, config: &ModelConfig, available: u128) -> Result<(), LoadError> {
    let needed = config.min_parameters();
    if needed > available {
        return Err(LoadError::TooLarge {
            file: file.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

#[cfg(test)]
mod bounded_error_tests {
    use super::*;

    #[test]
    fn long_name_lists_are_cut_and_layer_counts_checked() {
        let names: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        let e = LoadError::MissingTensors {
            file: "f".into(),
            tensors: names,
        };
        let text = e.to_string();
        assert!(text.ends_with("t11 and 988 more"), "{text}");
        let hf = [
            "model.layers.0.mlp.up_proj.weight",
            "model.layers.1.x",
            "lm_head.weight",
        ];
        assert!(check_layer_count(Path::new("f"), hf.iter().copied(), 2).is_ok());
        let err = check_layer_count(Path::new("f"), hf.iter().copied(), 1_000_000)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1000000 layers") && err.contains("tensors for 2"),
            "{err}"
        );
    }
}
