//! Adapter sets as PEFT folders: `adapter_model.safetensors` + `adapter_config.json`.
//!
//! Key names are PEFT's for a `*ForCausalLM` wrapped in a `PeftModel`; linear weights are
//! stored in PyTorch's `[out, in]` layout:
//!
//! | ours (Burn module path, `[in, out]`)        | PEFT key (`[out, in]`)                                       |
//! |----------------------------------------------|--------------------------------------------------------------|
//! | `layers.N.self_attn.q_proj.lora_a.weight` `[in, r]`  | `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` `[r, in]` |
//! | `layers.N.mlp.down_proj.lora_b.weight` `[r, out]`    | `base_model.model.model.layers.N.mlp.down_proj.lora_B.weight` `[out, r]`   |
//!
//! `adapter_config.json` fields used: `r`, `lora_alpha`, `lora_dropout`, `target_modules` (a
//! list, or `"all-linear"`). Features that change the math (`use_rslora`, `use_dora`,
//! `rank_pattern`, `alpha_pattern`, `bias` other than `"none"`, `fan_in_fan_out`,
//! `layers_to_transform`, `modules_to_save`, ...) are rejected by name; other fields are
//! ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{backend::Backend, DType, Device, Tensor};
use burn_store::{
    ApplyError, BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot,
    PyTorchToBurnAdapter, SafetensorsStore,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::adapter::LoraSet;
use super::config::{LoraConfig, TARGET_MODULES};
use super::error::LoraError;
use crate::arch::ModelConfig;
use crate::hf::CastFloat;

/// File name of the adapter weights in a PEFT folder.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// File name of the adapter configuration in a PEFT folder.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// Prefix PEFT puts before the base model's own module path.
const PEFT_PREFIX: &str = "base_model.model.model.";

/// Our module path → PEFT key.
pub fn peft_key(path: &str) -> String {
    let path = path
        .replace(".lora_a.weight", ".lora_A.weight")
        .replace(".lora_b.weight", ".lora_B.weight");
    format!("{PEFT_PREFIX}{path}")
}

fn remapper(patterns: [(&str, &str); 2]) -> KeyRemapper {
    // Constant, tested patterns: compiling them cannot fail.
    KeyRemapper::from_patterns(patterns.to_vec()).expect("constant key patterns compile")
}

fn peft_to_burn() -> KeyRemapper {
    remapper([
        (
            r"^base_model\.model\.model\.(layers\.\d+\..+)\.lora_A\.weight$",
            "$1.lora_a.weight",
        ),
        (
            r"^base_model\.model\.model\.(layers\.\d+\..+)\.lora_B\.weight$",
            "$1.lora_b.weight",
        ),
    ])
}

fn burn_to_peft() -> KeyRemapper {
    remapper([
        (
            r"^(layers\.\d+\..+)\.lora_a\.weight$",
            "base_model.model.model.$1.lora_A.weight",
        ),
        (
            r"^(layers\.\d+\..+)\.lora_b\.weight$",
            "base_model.model.model.$1.lora_B.weight",
        ),
    ])
}

/// `adapter_config.json` as written by [`LoraSet::save_peft`] (a valid PEFT `LoraConfig`).
#[derive(Serialize)]
struct PeftConfigOut<'a> {
    peft_type: &'static str,
    task_type: &'static str,
    r: usize,
    lora_alpha: f64,
    lora_dropout: f64,
    target_modules: &'a [String],
    bias: &'static str,
    fan_in_fan_out: bool,
    use_rslora: bool,
    use_dora: bool,
    init_lora_weights: bool,
    inference_mode: bool,
    base_model_name_or_path: Option<String>,
    modules_to_save: Option<Vec<String>>,
    layers_to_transform: Option<Vec<usize>>,
    rank_pattern: serde_json::Map<String, Json>,
    alpha_pattern: serde_json::Map<String, Json>,
}

/// The fields of a PEFT `adapter_config.json` this crate reads or must reject.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PeftConfigIn {
    peft_type: Option<String>,
    r: Option<usize>,
    lora_alpha: Option<f64>,
    lora_dropout: Option<f64>,
    target_modules: Option<Json>,
    bias: Option<String>,
    fan_in_fan_out: Option<bool>,
    use_rslora: Option<bool>,
    use_dora: Option<bool>,
    lora_bias: Option<bool>,
    rank_pattern: Option<Json>,
    alpha_pattern: Option<Json>,
    layers_to_transform: Option<Json>,
    layer_replication: Option<Json>,
    modules_to_save: Option<Json>,
    exclude_modules: Option<Json>,
}

impl PeftConfigIn {
    /// Resolves to a [`LoraConfig`], rejecting what would change the math.
    fn resolve(self, path: &Path) -> Result<LoraConfig, LoraError> {
        let unsupported = |field: &'static str, value: String, reason: &str| {
            Err(LoraError::UnsupportedPeft {
                path: path.to_path_buf(),
                field,
                value,
                reason: reason.to_string(),
            })
        };
        if let Some(t) = &self.peft_type {
            if t != "LORA" {
                return unsupported("peft_type", format!("{t:?}"), "only LORA adapters");
            }
        }
        for (field, on) in [
            ("use_rslora", self.use_rslora),
            ("use_dora", self.use_dora),
            ("fan_in_fan_out", self.fan_in_fan_out),
            ("lora_bias", self.lora_bias),
        ] {
            if on == Some(true) {
                return unsupported(field, "true".into(), "only plain LoRA (false)");
            }
        }
        if let Some(b) = &self.bias {
            if b != "none" {
                return unsupported("bias", format!("{b:?}"), "only \"none\"");
            }
        }
        let empty = |v: &Option<Json>| match v {
            None | Some(Json::Null) => true,
            Some(Json::Object(m)) => m.is_empty(),
            Some(Json::Array(a)) => a.is_empty(),
            _ => false,
        };
        for (field, value) in [
            ("rank_pattern", &self.rank_pattern),
            ("alpha_pattern", &self.alpha_pattern),
            ("layers_to_transform", &self.layers_to_transform),
            ("layer_replication", &self.layer_replication),
            ("modules_to_save", &self.modules_to_save),
            ("exclude_modules", &self.exclude_modules),
        ] {
            if !empty(value) {
                let shown = value.as_ref().map(Json::to_string).unwrap_or_default();
                return unsupported(field, shown, "must be empty or null");
            }
        }
        let target_modules = match self.target_modules {
            Some(Json::Array(items)) => {
                let mut names = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Json::String(s) => names.push(s),
                        other => {
                            return unsupported(
                                "target_modules",
                                other.to_string(),
                                "expected a list of module names",
                            )
                        }
                    }
                }
                names
            }
            Some(Json::String(s)) if s == "all-linear" => {
                TARGET_MODULES.iter().map(|s| s.to_string()).collect()
            }
            other => {
                let shown = other.map(|v| v.to_string()).unwrap_or("null".into());
                return unsupported(
                    "target_modules",
                    shown,
                    "expected a list of module names or \"all-linear\"",
                );
            }
        };
        // PEFT's own defaults for absent fields.
        let config = LoraConfig {
            rank: self.r.unwrap_or(8),
            alpha: self.lora_alpha.unwrap_or(8.0),
            dropout: self.lora_dropout.unwrap_or(0.0),
            target_modules,
        };
        config.validate().map_err(|e| match e {
            LoraError::InvalidConfig {
                field,
                value,
                reason,
            } => LoraError::UnsupportedPeft {
                path: path.to_path_buf(),
                field: match field {
                    "rank" => "r",
                    "alpha" => "lora_alpha",
                    "dropout" => "lora_dropout",
                    other => other,
                },
                value,
                reason,
            },
            other => other,
        })?;
        Ok(config)
    }
}

/// A unique temporary name beside `target` (same folder, so the final rename is atomic).
pub(crate) fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LoraError + '_ {
    move |source| LoraError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `target` through a temporary file and a rename.
fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), LoraError> {
    let tmp = temp_path(target);
    let result = std::fs::write(&tmp, bytes)
        .map_err(io_error(&tmp))
        .and_then(|()| std::fs::rename(&tmp, target).map_err(io_error(target)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn read_config(path: &Path) -> Result<LoraConfig, LoraError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let parsed: PeftConfigIn = serde_json::from_str(&text).map_err(|source| LoraError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    parsed.resolve(path)
}

impl<B: Backend> LoraSet<B> {
    /// Writes the set as a PEFT adapter folder: `adapter_model.safetensors` (f32, PEFT keys,
    /// `[out, in]` layout) and `adapter_config.json`, each through a temporary file renamed
    /// into place, so a crash never leaves a half-written file under the final name. The
    /// folder is created if needed; existing files are replaced.
    ///
    /// # Errors
    /// [`LoraError::Io`] or [`LoraError::Safetensors`] naming the file.
    pub fn save_peft(&self, dir: impl AsRef<Path>) -> Result<(), LoraError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;

        let weights = dir.join(ADAPTER_WEIGHTS);
        let tmp = temp_path(&weights);
        let mut store = SafetensorsStore::from_file(tmp.clone())
            .with_to_adapter(BurnToPyTorchAdapter.chain(CastFloat(DType::F32)))
            .remap(burn_to_peft())
            .metadata("format", "pt")
            .overwrite(true);
        let written = self
            .save_into(&mut store)
            .map_err(|source| LoraError::Safetensors {
                path: weights.clone(),
                source,
            })
            .and_then(|()| std::fs::rename(&tmp, &weights).map_err(io_error(&weights)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;

        let c = &self.config;
        let config = PeftConfigOut {
            peft_type: "LORA",
            task_type: "CAUSAL_LM",
            r: c.rank,
            lora_alpha: c.alpha,
            lora_dropout: c.dropout,
            target_modules: &c.target_modules,
            bias: "none",
            fan_in_fan_out: false,
            use_rslora: false,
            use_dora: false,
            init_lora_weights: true,
            inference_mode: true,
            base_model_name_or_path: None,
            modules_to_save: None,
            layers_to_transform: None,
            rank_pattern: Default::default(),
            alpha_pattern: Default::default(),
        };
        let mut text = serde_json::to_string_pretty(&config).map_err(|source| LoraError::Json {
            path: dir.join(ADAPTER_CONFIG),
            source,
        })?;
        text.push('\n');
        write_atomic(&dir.join(ADAPTER_CONFIG), text.as_bytes())
    }

    /// Reads a PEFT adapter folder for a model of architecture `model`. Tensors stored as f32,
    /// f16 or bf16 are cast to the backend's float dtype.
    ///
    /// # Errors
    /// [`LoraError`] naming the file: unreadable or invalid `adapter_config.json`, an
    /// unsupported PEFT feature, and for `adapter_model.safetensors` every missing, unexpected
    /// or misshapen adapter tensor by its PEFT key (shapes in PEFT's layout).
    pub fn load_peft(
        dir: impl AsRef<Path>,
        model: &ModelConfig,
        device: &Device<B>,
    ) -> Result<Self, LoraError> {
        let dir = dir.as_ref();
        let config = read_config(&dir.join(ADAPTER_CONFIG))?;
        let mut set = Self::new(&config, model, device)?;
        let path = dir.join(ADAPTER_WEIGHTS);
        if !path.is_file() {
            return Err(LoraError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "a PEFT adapter folder needs this file",
                ),
            });
        }
        let float_dtype = Tensor::<B, 1>::zeros([1], device).dtype();
        let mut store = SafetensorsStore::from_file(path.clone())
            .with_from_adapter(PyTorchToBurnAdapter.chain(CastFloat(float_dtype)))
            .remap(peft_to_burn())
            .allow_partial(true)
            .validate(false);
        let result = set
            .load_from(&mut store)
            .map_err(|source| LoraError::Safetensors {
                path: path.clone(),
                source,
            })?;
        if let Some(error) = result.errors.first() {
            return Err(match error {
                ApplyError::ShapeMismatch {
                    path: tensor,
                    expected,
                    found,
                } => {
                    // Every adapter weight is a Linear weight: report PEFT's [out, in] layout.
                    let (mut expected, mut found) = (expected.to_vec(), found.to_vec());
                    expected.reverse();
                    found.reverse();
                    LoraError::ShapeMismatch {
                        path,
                        tensor: peft_key(tensor),
                        expected,
                        found,
                    }
                }
                ApplyError::DTypeMismatch { path: tensor, .. }
                | ApplyError::AdapterError { path: tensor, .. }
                | ApplyError::LoadError { path: tensor, .. } => LoraError::Tensor {
                    path,
                    tensor: peft_key(tensor),
                    message: error.to_string(),
                },
            });
        }
        let unused: BTreeSet<String> = result
            .unused
            .iter()
            .map(|key| {
                if key.starts_with("layers.") {
                    peft_key(key)
                } else {
                    key.clone()
                }
            })
            .collect();
        if !unused.is_empty() {
            return Err(LoraError::UnusedTensors {
                path,
                tensors: unused.into_iter().collect(),
            });
        }
        let missing: BTreeSet<String> = result
            .missing
            .iter()
            .map(|(key, _)| peft_key(key))
            .collect();
        if !missing.is_empty() {
            return Err(LoraError::MissingTensors {
                path,
                tensors: missing.into_iter().collect(),
            });
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies the remapper's patterns in order, as burn-store does.
    fn apply(remapper: &KeyRemapper, key: &str) -> String {
        let mut key = key.to_string();
        for (pattern, replacement) in remapper.to_regex_pairs() {
            key = pattern.replace(&key, replacement.as_str()).into_owned();
        }
        key
    }

    #[test]
    fn key_patterns_map_both_ways() {
        let ours = "layers.11.mlp.down_proj.lora_b.weight";
        let peft = "base_model.model.model.layers.11.mlp.down_proj.lora_B.weight";
        assert_eq!(peft_key(ours), peft);
        let (to_peft, to_burn) = (burn_to_peft(), peft_to_burn());
        assert_eq!(apply(&to_peft, ours), peft);
        assert_eq!(apply(&to_burn, peft), ours);
        let a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
        assert_eq!(
            apply(&to_burn, a),
            "layers.0.self_attn.q_proj.lora_a.weight"
        );
        // Foreign keys pass through unchanged (and are reported as unexpected).
        assert_eq!(apply(&to_burn, "lm_head.weight"), "lm_head.weight");
    }

    fn resolve(json: &str) -> Result<LoraConfig, LoraError> {
        serde_json::from_str::<PeftConfigIn>(json)
            .unwrap()
            .resolve(Path::new("adapter_config.json"))
    }

    #[test]
    fn peft_config_fields_map_to_lora_config() {
        let c = resolve(
            r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 32, "lora_dropout": 0.05,
            "target_modules": ["v_proj", "q_proj"], "bias": "none", "use_rslora": false,
            "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": null,
            "task_type": "CAUSAL_LM", "megatron_core": "megatron.core"}"#,
        )
        .unwrap();
        assert_eq!((c.rank, c.alpha, c.dropout), (4, 32.0, 0.05));
        assert_eq!(c.target_modules, vec!["v_proj", "q_proj"]);
        let all = resolve(r#"{"target_modules": "all-linear"}"#).unwrap();
        assert_eq!(all.target_modules, TARGET_MODULES);
        assert_eq!((all.rank, all.alpha), (8, 8.0));
    }

    #[test]
    fn peft_features_that_change_the_math_are_rejected_by_name() {
        for (json, field) in [
            (
                r#"{"target_modules": ["q_proj"], "use_dora": true}"#,
                "use_dora",
            ),
            (
                r#"{"target_modules": ["q_proj"], "use_rslora": true}"#,
                "use_rslora",
            ),
            (r#"{"target_modules": ["q_proj"], "bias": "all"}"#, "bias"),
            (
                r#"{"target_modules": ["q_proj"], "rank_pattern": {"q_proj": 4}}"#,
                "rank_pattern",
            ),
            (r#"{"target_modules": ".*proj"}"#, "target_modules"),
            (r#"{"target_modules": ["lm_head"]}"#, "target_modules"),
            (r#"{"target_modules": ["q_proj"], "r": 0}"#, "r"),
            (r#"{}"#, "target_modules"),
            (
                r#"{"target_modules": ["q_proj"], "peft_type": "IA3"}"#,
                "peft_type",
            ),
        ] {
            let err = resolve(json).unwrap_err();
            assert!(
                matches!(&err, LoraError::UnsupportedPeft { field: f, .. } if *f == field),
                "{json}: {err}"
            );
            assert!(err.to_string().contains("adapter_config.json"), "{err}");
        }
    }
}
