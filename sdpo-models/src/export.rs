//! Saving a model as a Hugging Face folder (safetensors, config.json, tokenizer files).
//!
//! [`export_hf_dir`] writes what `transformers.AutoModelForCausalLM.from_pretrained` and
//! `AutoTokenizer.from_pretrained` need to rebuild the same model, and what
//! [`load_hf_dir`](crate::load_hf_dir) reads back bit for bit:
//!
//! | file                     | content                                                              |
//! |--------------------------|----------------------------------------------------------------------|
//! | `model.safetensors`      | every parameter in f32 under its HF key, linear weights `[out, in]`; no `lm_head.weight` with tied embeddings |
//! | `config.json`            | [`hf_config_json`]: family, sizes, RoPE, biases, head_dim, window    |
//! | `tokenizer.json`         | the `tokenizers` pipeline                                            |
//! | `tokenizer_config.json`  | special tokens and chat template(s)                                  |
//! | `generation_config.json` | bos / eos (all stop ids) / pad ids                                   |
//!
//! To export a LoRA-trained model, merge first: `export_hf_dir(&merge(&base, &lora)?, ..)`.
//!
//! The folder is written under a temporary name beside the target and renamed at the end, so
//! the target either does not exist or is complete.

use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, DType};
use burn_store::{BurnToPyTorchAdapter, ModuleAdapter, ModuleSnapshot, SafetensorsStore};
use serde_json::{json, Value as Json};

use crate::arch::{CausalLm, HfConfig, ModelConfig, RopeScaling};
use crate::hf::{CastFloat, SINGLE_FILE};
use crate::lora::temp_path;
use crate::tokenizer::{Tokenizer, TokenizerError};

/// Why a model could not be exported. Variants about files name the file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The target exists and is not an empty folder (nothing is overwritten).
    #[error("{}: already exists and is not an empty folder; remove it or pick another path", path.display())]
    TargetExists {
        /// The target folder.
        path: PathBuf,
    },
    /// A file or folder could not be created, written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The weights could not be written.
    #[error("{}: {source}", path.display())]
    Safetensors {
        /// `model.safetensors` in the target folder.
        path: PathBuf,
        /// The burn-store error.
        source: burn_store::SafetensorsStoreError,
    },
    /// The tokenizer files could not be written.
    #[error("{}: tokenizer files: {source}", dir.display())]
    Tokenizer {
        /// The target folder.
        dir: PathBuf,
        /// What went wrong (naming the file).
        source: TokenizerError,
    },
    /// The tokenizer can produce ids past the model's embedding matrix.
    #[error("the tokenizer has {tokenizer_vocab} tokens but the model only {model_vocab} (vocab_size): the exported folder would not run")]
    VocabMismatch {
        /// `len(tokenizer)`.
        tokenizer_vocab: usize,
        /// The model's `vocab_size`.
        model_vocab: usize,
    },
    /// No Hugging Face `model_type` reproduces this configuration.
    #[error("config.json: no Hugging Face model_type (llama, mistral, qwen2, qwen3) describes this model; as {model_type:?} these fields would change: {fields}")]
    Unrepresentable {
        /// The configuration's own family.
        model_type: String,
        /// The fields that family cannot express, with wanted and written values.
        fields: String,
    },
}

/// The `transformers` class of each family.
fn architecture(model_type: &str) -> &'static str {
    match model_type {
        "mistral" => "MistralForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "qwen3" => "Qwen3ForCausalLM",
        _ => "LlamaForCausalLM",
    }
}

/// `config.json` for `config` written as family `model_type` (not checked here).
fn config_as(config: &ModelConfig, model_type: &str, tokenizer: Option<&Tokenizer>) -> Json {
    let rope_scaling = match config.rope_scaling {
        RopeScaling::None => Json::Null,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        }),
    };
    let mut c = json!({
        "architectures": [architecture(model_type)],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": config.tie_word_embeddings,
        "torch_dtype": "float32",
        "use_cache": true,
    });
    let fields = c.as_object_mut().expect("a JSON object literal");
    match model_type {
        "llama" => {
            fields.insert("attention_bias".into(), config.qkv_bias.into());
            fields.insert("mlp_bias".into(), config.mlp_bias.into());
        }
        "mistral" => {
            fields.insert("sliding_window".into(), config.sliding_window.into());
        }
        "qwen3" => {
            fields.insert("attention_bias".into(), config.qkv_bias.into());
            fields.insert("use_sliding_window".into(), false.into());
            fields.insert("sliding_window".into(), Json::Null);
        }
        _ => {
            // qwen2: q/k/v biases are implied by the family.
            fields.insert("use_sliding_window".into(), false.into());
            fields.insert("sliding_window".into(), Json::Null);
        }
    }
    if let Some(tok) = tokenizer {
        let ids = special_ids(tok);
        for (key, value) in ids {
            fields.insert(key.into(), value);
        }
    }
    c
}

/// `bos_token_id`, `eos_token_id` (one id, or the list of stop ids) and `pad_token_id`.
fn special_ids(tokenizer: &Tokenizer) -> Vec<(&'static str, Json)> {
    let mut out = Vec::new();
    if let Some(id) = tokenizer.bos_token_id() {
        out.push(("bos_token_id", json!(id)));
    }
    match tokenizer.eos_token_ids() {
        [] => {}
        [one] => out.push(("eos_token_id", json!(one))),
        many => out.push(("eos_token_id", json!(many))),
    }
    if let Some(id) = tokenizer.pad_token_id() {
        out.push(("pad_token_id", json!(id)));
    }
    out
}

/// Fields of two configurations that differ, as `field: wanted → written`.
fn differences(want: &ModelConfig, got: &ModelConfig) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! cmp {
        ($($field:ident),*) => {$(
            if want.$field != got.$field {
                out.push(format!(
                    "{}: {:?} → {:?}",
                    stringify!($field),
                    want.$field,
                    got.$field
                ));
            }
        )*};
    }
    cmp!(
        vocab_size,
        hidden_size,
        intermediate_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps,
        rope_theta,
        rope_scaling,
        max_position_embeddings,
        tie_word_embeddings,
        qkv_bias,
        o_bias,
        mlp_bias,
        qk_norm,
        sliding_window
    );
    out
}

/// What [`ModelConfig::from_hf`] makes of a written `config.json`, compared with `config`
/// (the family name aside): the differing fields, or an error message.
fn round_trip(config: &ModelConfig, written: &Json) -> Result<(), Vec<String>> {
    let hf: HfConfig = serde_json::from_value(written.clone()).map_err(|e| vec![e.to_string()])?;
    let back = ModelConfig::from_hf(&hf).map_err(|e| vec![e.to_string()])?;
    let diffs = differences(config, &back);
    if diffs.is_empty() && back.model_type == written["model_type"] {
        Ok(())
    } else {
        Err(diffs)
    }
}

/// The `config.json` of a Hugging Face folder for a model of configuration `config`, with the
/// tokenizer's special-token ids when given.
///
/// The family is the configuration's own `model_type` when it can express every flag, else
/// the first of `llama`, `mistral`, `qwen2`, `qwen3` that can (q/k norms exist only in
/// `qwen3`, q/k/v biases without an o bias only in `qwen2`, a sliding window only in
/// `mistral`). The result is checked by parsing it back: [`ModelConfig::from_hf`] gives
/// `config` again.
///
/// # Errors
/// [`ExportError::Unrepresentable`] naming the fields no family can express (e.g. an MLP bias
/// together with q/k norms).
pub fn hf_config_json(
    config: &ModelConfig,
    tokenizer: Option<&Tokenizer>,
) -> Result<Json, ExportError> {
    let own = config.model_type.as_str();
    let mut first_failure = None;
    for family in std::iter::once(own).chain(["llama", "mistral", "qwen2", "qwen3"]) {
        let written = config_as(config, family, tokenizer);
        match round_trip(config, &written) {
            Ok(()) => return Ok(written),
            Err(fields) => {
                if first_failure.is_none() {
                    first_failure = Some(fields);
                }
            }
        }
    }
    Err(ExportError::Unrepresentable {
        model_type: own.to_string(),
        fields: first_failure.unwrap_or_default().join("; "),
    })
}

/// `generation_config.json`: the tokenizer's bos, stop and pad ids.
pub fn generation_config_json(tokenizer: &Tokenizer) -> Json {
    let mut c = serde_json::Map::new();
    for (key, value) in special_ids(tokenizer) {
        c.insert(key.into(), value);
    }
    Json::Object(c)
}

/// Writes `model` and `tokenizer` as a Hugging Face model folder at `dir` (see the module
/// docs for the files). `dir` must not exist or be an empty folder; its parent is created if
/// needed. Everything is written into a temporary folder beside `dir`, renamed into place
/// at the end; on failure the temporary folder is removed.
///
/// # Errors
/// [`ExportError`]: an existing non-empty target, a tokenizer larger than the model's
/// vocabulary, a configuration no HF family expresses, or an I/O failure naming the file.
pub fn export_hf_dir<B: Backend>(
    model: &CausalLm<B>,
    tokenizer: &Tokenizer,
    dir: impl AsRef<Path>,
) -> Result<(), ExportError> {
    let dir = dir.as_ref();
    if tokenizer.vocab_size() > model.config.vocab_size {
        return Err(ExportError::VocabMismatch {
            tokenizer_vocab: tokenizer.vocab_size(),
            model_vocab: model.config.vocab_size,
        });
    }
    let config = hf_config_json(&model.config, Some(tokenizer))?;
    let target_is_empty_dir = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ExportError::TargetExists {
                    path: dir.to_path_buf(),
                });
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) if dir.exists() => {
            return Err(if dir.is_dir() {
                ExportError::Io {
                    path: dir.to_path_buf(),
                    source,
                }
            } else {
                ExportError::TargetExists {
                    path: dir.to_path_buf(),
                }
            })
        }
        Err(source) => {
            return Err(ExportError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let tmp = temp_path(dir);
    std::fs::create_dir(&tmp).map_err(io_error(&tmp))?;
    let written = write_files(model, tokenizer, &config, &tmp, dir).and_then(|()| {
        if target_is_empty_dir {
            std::fs::remove_dir(dir).map_err(io_error(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io_error(dir))
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes every file into `tmp`; errors name the file as it will be called in `target`.
fn write_files<B: Backend>(
    model: &CausalLm<B>,
    tokenizer: &Tokenizer,
    config: &Json,
    tmp: &Path,
    target: &Path,
) -> Result<(), ExportError> {
    let mut store = SafetensorsStore::from_file(tmp.join(SINGLE_FILE))
        .with_to_adapter(BurnToPyTorchAdapter.chain(CastFloat(DType::F32)))
        .metadata("format", "pt")
        .overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|source| ExportError::Safetensors {
            path: target.join(SINGLE_FILE),
            source,
        })?;
    write_json(
        &tmp.join("config.json"),
        &target.join("config.json"),
        config,
    )?;
    write_json(
        &tmp.join("generation_config.json"),
        &target.join("generation_config.json"),
        &generation_config_json(tokenizer),
    )?;
    tokenizer
        .save_hf_files(tmp)
        .map_err(|source| ExportError::Tokenizer {
            dir: target.to_path_buf(),
            source,
        })
}

fn write_json(path: &Path, named: &Path, value: &Json) -> Result<(), ExportError> {
    // Serializing a `Value` cannot fail (its map keys are strings).
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    std::fs::write(path, text).map_err(io_error(named))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(model_type: &str, extra: &str) -> ModelConfig {
        ModelConfig::from_json(&format!(
            r#"{{"model_type": "{model_type}", "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1 {extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn each_family_round_trips_under_its_own_name() {
        for (family, extra) in [
            (
                "llama",
                r#", "attention_bias": true, "mlp_bias": true, "head_dim": 6"#,
            ),
            (
                "llama",
                r#", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, "rope_theta": 5e5"#,
            ),
            (
                "mistral",
                r#", "sliding_window": 7, "tie_word_embeddings": true"#,
            ),
            ("qwen2", r#", "rope_theta": 1e6, "rms_norm_eps": 1e-5"#),
            ("qwen3", r#", "head_dim": 6, "attention_bias": true"#),
        ] {
            let c = config(family, extra);
            let json = hf_config_json(&c, None).unwrap();
            assert_eq!(json["model_type"], family, "{extra}");
            let back = ModelConfig::from_json(&json.to_string()).unwrap();
            assert_eq!(back, c, "{family} {extra}");
        }
    }

    #[test]
    fn flags_pick_the_family_that_expresses_them() {
        // q/k norms are Qwen3's.
        let mut c = config("llama", "");
        c.qk_norm = true;
        assert_eq!(hf_config_json(&c, None).unwrap()["model_type"], "qwen3");
        // A sliding window is Mistral's.
        let mut c = config("llama", "");
        c.sliding_window = Some(4);
        assert_eq!(hf_config_json(&c, None).unwrap()["model_type"], "mistral");
        // q/k/v biases without an o bias are Qwen2's.
        let mut c = config("llama", "");
        c.qkv_bias = true;
        assert_eq!(hf_config_json(&c, None).unwrap()["model_type"], "qwen2");
    }

    #[test]
    fn inexpressible_flags_are_named() {
        let mut c = config("qwen3", "");
        c.mlp_bias = true;
        let err = hf_config_json(&c, None).unwrap_err().to_string();
        assert!(err.contains("mlp_bias"), "{err}");
    }
}
