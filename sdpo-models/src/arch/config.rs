//! Model configuration: a serde mirror of Hugging Face `config.json` ([`HfConfig`]) and the
//! checked internal configuration the modules are built from ([`ModelConfig`]).
//!
//! [`ModelConfig::from_hf`] is the only place that knows how the families differ:
//!
//! | family (`model_type`) | q/k/v bias              | q/k RMSNorm | `head_dim`         | sliding window |
//! |-----------------------|-------------------------|-------------|--------------------|----------------|
//! | `llama`               | `attention_bias`        | no          | explicit or h / n  | no             |
//! | `mistral`             | no                      | no          | explicit or h / n  | `sliding_window` |
//! | `qwen2`               | yes                     | no          | h / n              | rejected when on |
//! | `qwen3`               | `attention_bias`        | yes         | explicit           | rejected when on |

use serde::Deserialize;

/// A plain serde mirror of the fields of a Hugging Face `config.json` that decoder-only
/// Llama / Mistral / Qwen2 / Qwen3 checkpoints use. Every field is optional here; which ones
/// are required is decided by [`ModelConfig::from_hf`]. Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HfConfig {
    /// Architecture family: `llama`, `mistral`, `qwen2` or `qwen3`.
    pub model_type: Option<String>,
    /// Class names, e.g. `["LlamaForCausalLM"]` (informative only).
    pub architectures: Option<Vec<String>>,
    /// Vocabulary size (rows of `embed_tokens`).
    pub vocab_size: Option<usize>,
    /// Model width.
    pub hidden_size: Option<usize>,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: Option<usize>,
    /// Number of decoder layers.
    pub num_hidden_layers: Option<usize>,
    /// Number of query heads.
    pub num_attention_heads: Option<usize>,
    /// Number of key/value heads (grouped-query attention); defaults to the query heads.
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: Option<f64>,
    /// RoPE base (transformers < 5 layout).
    pub rope_theta: Option<f64>,
    /// RoPE scaling (transformers < 5 layout).
    pub rope_scaling: Option<HfRopeParameters>,
    /// RoPE base and scaling (transformers >= 5 layout).
    pub rope_parameters: Option<HfRopeParameters>,
    /// Longest sequence the model was trained for.
    pub max_position_embeddings: Option<usize>,
    /// Whether `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: Option<bool>,
    /// Biases on q/k/v/o projections (Llama, Qwen3).
    pub attention_bias: Option<bool>,
    /// Biases on the MLP projections (Llama).
    pub mlp_bias: Option<bool>,
    /// MLP activation; only `silu` is supported.
    pub hidden_act: Option<String>,
    /// Sliding-window attention width (Mistral; Qwen when `use_sliding_window`).
    pub sliding_window: Option<usize>,
    /// Qwen2/Qwen3 switch for sliding-window attention.
    pub use_sliding_window: Option<bool>,
    /// Per-layer attention kinds (transformers >= 4.5x), e.g. `full_attention`.
    pub layer_types: Option<Vec<String>>,
    /// Llama tensor-parallel pretraining slices; only 1 is supported.
    pub pretraining_tp: Option<usize>,
}

/// RoPE parameters as written in `rope_scaling` (old) or `rope_parameters` (new).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HfRopeParameters {
    /// `default`, `llama3`, ... (older files use `type`).
    pub rope_type: Option<String>,
    /// Older spelling of `rope_type`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// RoPE base (only in `rope_parameters`).
    pub rope_theta: Option<f64>,
    /// Llama 3 scaling factor.
    pub factor: Option<f64>,
    /// Llama 3 low-frequency factor.
    pub low_freq_factor: Option<f64>,
    /// Llama 3 high-frequency factor.
    pub high_freq_factor: Option<f64>,
    /// Llama 3 pre-scaling context length.
    pub original_max_position_embeddings: Option<usize>,
}

/// How the RoPE inverse frequencies are rescaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Llama 3.x frequency-dependent scaling (`rope_type = "llama3"`).
    Llama3 {
        /// Divisor for low frequencies.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// Context length before scaling.
        original_max_position_embeddings: usize,
    },
}

/// The checked configuration the decoder is built from: no options, every family
/// difference is an explicit flag.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Family name as in `config.json` (`llama`, `mistral`, `qwen2`, `qwen3`).
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads; divides `num_heads`.
    pub num_kv_heads: usize,
    /// Per-head width (even, for RoPE).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Longest trained sequence (informative; RoPE is computed for any position).
    pub max_position_embeddings: usize,
    /// `lm_head` is the embedding matrix (one parameter used twice).
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Biases on the MLP projections.
    pub mlp_bias: bool,
    /// Per-head RMSNorm on queries and keys before RoPE (Qwen3).
    pub qk_norm: bool,
    /// Keys more than `sliding_window - 1` positions back are masked (Mistral).
    pub sliding_window: Option<usize>,
}

/// Why a `config.json` cannot be turned into a [`ModelConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `model_type` names an architecture this crate does not implement.
    #[error("unsupported model_type {found:?}; supported: llama, mistral, qwen2, qwen3")]
    UnknownModelType {
        /// The `model_type` found (`None` when absent).
        found: Option<String>,
    },
    /// A field the architecture needs is absent.
    #[error("config field `{field}` is required for model_type {model_type:?}")]
    Missing {
        /// Field name in `config.json`.
        field: &'static str,
        /// The architecture.
        model_type: String,
    },
    /// A field holds a value this crate does not support.
    #[error("unsupported config `{field}` = {value}: {reason}")]
    Unsupported {
        /// Field name in `config.json`.
        field: &'static str,
        /// The value found, as written.
        value: String,
        /// What is supported instead.
        reason: &'static str,
    },
}

impl ModelConfig {
    /// A lower bound on the model's parameter count (embeddings, attention and MLP weights;
    /// norms and biases left out), saturating: loaders compare it with what a weight file can
    /// hold before building a model, so a corrupt header cannot make them allocate terabytes.
    pub fn min_parameters(&self) -> u128 {
        let n = |v: usize| v as u128;
        let attention = n(self.hidden_size)
            .saturating_mul(n(self.num_heads).saturating_add(n(self.num_kv_heads)))
            .saturating_mul(n(self.head_dim))
            .saturating_mul(2);
        let mlp = n(self.hidden_size)
            .saturating_mul(n(self.intermediate_size))
            .saturating_mul(3);
        n(self.vocab_size)
            .saturating_mul(n(self.hidden_size))
            .saturating_add(n(self.num_layers).saturating_mul(attention.saturating_add(mlp)))
    }

    /// Checks a parsed `config.json` and resolves family defaults.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field: unknown `model_type`, a missing size, a non-`silu`
    /// activation, an unsupported RoPE type, inconsistent head counts, sliding-window
    /// attention on Qwen.
    pub fn from_hf(hf: &HfConfig) -> Result<Self, ConfigError> {
        let model_type = match hf.model_type.as_deref() {
            Some(t @ ("llama" | "mistral" | "qwen2" | "qwen3")) => t.to_string(),
            other => {
                return Err(ConfigError::UnknownModelType {
                    found: other.map(str::to_string),
                })
            }
        };
        let need = |field: &'static str, v: Option<usize>| {
            v.ok_or_else(|| ConfigError::Missing {
                field,
                model_type: model_type.clone(),
            })
        };
        let vocab_size = need("vocab_size", hf.vocab_size)?;
        let hidden_size = need("hidden_size", hf.hidden_size)?;
        let intermediate_size = need("intermediate_size", hf.intermediate_size)?;
        let num_layers = need("num_hidden_layers", hf.num_hidden_layers)?;
        let num_heads = need("num_attention_heads", hf.num_attention_heads)?;
        let num_kv_heads = hf.num_key_value_heads.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(ConfigError::Unsupported {
                field: "num_key_value_heads",
                value: format!("{num_kv_heads} (num_attention_heads = {num_heads})"),
                reason: "must be positive and divide num_attention_heads",
            });
        }
        let head_dim = match (model_type.as_str(), hf.head_dim) {
            ("qwen2", _) | (_, None) => hidden_size / num_heads,
            (_, Some(d)) => d,
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(ConfigError::Unsupported {
                field: "head_dim",
                value: head_dim.to_string(),
                reason: "RoPE needs a positive even head_dim",
            });
        }
        if let Some(act) = hf.hidden_act.as_deref() {
            if act != "silu" {
                return Err(ConfigError::Unsupported {
                    field: "hidden_act",
                    value: act.to_string(),
                    reason: "only `silu` (SwiGLU) is supported",
                });
            }
        }
        if let Some(tp) = hf.pretraining_tp {
            if tp != 1 {
                return Err(ConfigError::Unsupported {
                    field: "pretraining_tp",
                    value: tp.to_string(),
                    reason: "only 1 is supported",
                });
            }
        }
        let (rope_theta, rope_scaling) = resolve_rope(hf)?;

        let is_qwen = model_type.starts_with("qwen");
        let sliding_window = if is_qwen {
            if hf.use_sliding_window == Some(true) {
                return Err(ConfigError::Unsupported {
                    field: "use_sliding_window",
                    value: "true".into(),
                    reason: "sliding-window attention is only supported for mistral",
                });
            }
            None
        } else if model_type == "mistral" {
            hf.sliding_window
        } else {
            None
        };
        if let Some(types) = &hf.layer_types {
            let sliding_ok = sliding_window.is_some();
            if let Some(bad) = types.iter().find(|t| match t.as_str() {
                "full_attention" => false,
                "sliding_attention" => !sliding_ok,
                _ => true,
            }) {
                return Err(ConfigError::Unsupported {
                    field: "layer_types",
                    value: bad.clone(),
                    reason: "only full_attention layers (sliding_attention for mistral)",
                });
            }
        }

        let attention_bias = hf.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match model_type.as_str() {
            "qwen2" => (true, false),
            "mistral" => (false, false),
            _ => (attention_bias, attention_bias),
        };
        Ok(Self {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: model_type == "llama" && hf.mlp_bias.unwrap_or(false),
            qk_norm: model_type == "qwen3",
            sliding_window,
            model_type,
        })
    }

    /// Parses `config.json` text and resolves it.
    ///
    /// # Errors
    /// [`ConfigError`] as in [`ModelConfig::from_hf`]; JSON syntax errors are the caller's
    /// (see [`HfConfig`]).
    pub fn from_json(text: &str) -> Result<Self, ConfigJsonError> {
        let hf: HfConfig = serde_json::from_str(text)?;
        Ok(Self::from_hf(&hf)?)
    }
}

/// Error of [`ModelConfig::from_json`]: bad JSON or an unsupported configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigJsonError {
    /// The text is not valid JSON for [`HfConfig`].
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The configuration is not supported.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn resolve_rope(hf: &HfConfig) -> Result<(f64, RopeScaling), ConfigError> {
    let params = hf.rope_parameters.as_ref().or(hf.rope_scaling.as_ref());
    let theta = params
        .and_then(|p| p.rope_theta)
        .or(hf.rope_theta)
        .unwrap_or(10_000.0);
    if !(theta.is_finite() && theta > 0.0) {
        return Err(ConfigError::Unsupported {
            field: "rope_theta",
            value: theta.to_string(),
            reason: "must be a positive number",
        });
    }
    let Some(p) = params else {
        return Ok((theta, RopeScaling::None));
    };
    let kind = p
        .rope_type
        .as_deref()
        .or(p.type_.as_deref())
        .unwrap_or("default");
    let scaling = match kind {
        "default" => RopeScaling::None,
        "llama3" => {
            let missing = |field: &'static str| ConfigError::Missing {
                field,
                model_type: "llama3 rope scaling".into(),
            };
            let s = RopeScaling::Llama3 {
                factor: p.factor.ok_or_else(|| missing("factor"))?,
                low_freq_factor: p
                    .low_freq_factor
                    .ok_or_else(|| missing("low_freq_factor"))?,
                high_freq_factor: p
                    .high_freq_factor
                    .ok_or_else(|| missing("high_freq_factor"))?,
                original_max_position_embeddings: p
                    .original_max_position_embeddings
                    .ok_or_else(|| missing("original_max_position_embeddings"))?,
            };
            if let RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                ..
            } = s
            {
                if factor <= 0.0 || high_freq_factor <= low_freq_factor || low_freq_factor <= 0.0 {
                    return Err(ConfigError::Unsupported {
                        field: "rope_scaling",
                        value: format!(
                            "factor {factor}, low_freq_factor {low_freq_factor}, high_freq_factor {high_freq_factor}"
                        ),
                        reason: "llama3 scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0",
                    });
                }
            }
            s
        }
        other => {
            return Err(ConfigError::Unsupported {
                field: "rope_type",
                value: other.to_string(),
                reason: "supported RoPE types: default, llama3",
            })
        }
    };
    Ok((theta, scaling))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(model_type: &str) -> String {
        format!(
            r#"{{"model_type": "{model_type}", "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1}}"#
        )
    }

    #[test]
    fn family_flags_follow_model_type() {
        let qwen2 = ModelConfig::from_json(&base("qwen2")).unwrap();
        assert!(qwen2.qkv_bias && !qwen2.o_bias && !qwen2.qk_norm);
        let qwen3 = ModelConfig::from_json(&base("qwen3")).unwrap();
        assert!(!qwen3.qkv_bias && qwen3.qk_norm);
        let llama = ModelConfig::from_json(&base("llama")).unwrap();
        assert!(!llama.qkv_bias && !llama.qk_norm && !llama.tie_word_embeddings);
        assert_eq!(llama.head_dim, 4);
        assert_eq!(llama.rope_theta, 10_000.0);
    }

    #[test]
    fn unknown_model_type_is_rejected_by_name() {
        let err = ModelConfig::from_json(&base("gemma2")).unwrap_err();
        assert!(err.to_string().contains("gemma2"), "{err}");
    }

    #[test]
    fn old_and_new_rope_layouts_agree() {
        let old = base("llama").replace(
            "}",
            r#", "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#,
        );
        let new = base("llama").replace(
            "}",
            r#", "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#,
        );
        let a = ModelConfig::from_json(&old).unwrap();
        let b = ModelConfig::from_json(&new).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 500_000.0);
        assert!(matches!(a.rope_scaling, RopeScaling::Llama3 { .. }));
    }

    #[test]
    fn unsupported_rope_type_and_activation_are_named() {
        let yarn =
            base("qwen2").replace("}", r#", "rope_scaling": {"type": "yarn", "factor": 4.0}}"#);
        let err = ModelConfig::from_json(&yarn).unwrap_err().to_string();
        assert!(err.contains("rope_type") && err.contains("yarn"), "{err}");
        let gelu = base("llama").replace("}", r#", "hidden_act": "gelu"}"#);
        let err = ModelConfig::from_json(&gelu).unwrap_err().to_string();
        assert!(err.contains("hidden_act") && err.contains("gelu"), "{err}");
    }

    #[test]
    fn qwen_sliding_window_is_rejected() {
        let cfg =
            base("qwen2").replace("}", r#", "use_sliding_window": true, "sliding_window": 4}"#);
        let err = ModelConfig::from_json(&cfg).unwrap_err().to_string();
        assert!(err.contains("use_sliding_window"), "{err}");
    }

    #[test]
    fn bad_head_counts_are_rejected() {
        let cfg =
            base("llama").replace(r#""num_key_value_heads": 1"#, r#""num_key_value_heads": 3"#);
        let err = ModelConfig::from_json(&cfg).unwrap_err().to_string();
        assert!(err.contains("num_key_value_heads"), "{err}");
    }
}
