//! A Hugging Face `config.json` rebuilt from GGUF metadata.

use serde::{Deserialize, Serialize};

use super::error::GgufError;
use super::reader::GgufFile;

/// Architectures whose metadata [`GgufModelConfig::from_gguf`] understands.
const SUPPORTED_ARCHITECTURES: &str = "llama, qwen2, qwen3";

/// The model hyper-parameters of a GGUF file, with Hugging Face `config.json`
/// field names. A plain data mirror: the model's own config code checks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GgufModelConfig {
    /// `llama`, `qwen2` or `qwen3` (from `general.architecture`).
    pub model_type: String,
    /// `{arch}.embedding_length`.
    pub hidden_size: usize,
    /// `{arch}.feed_forward_length`.
    pub intermediate_size: usize,
    /// `{arch}.block_count`.
    pub num_hidden_layers: usize,
    /// `{arch}.attention.head_count`.
    pub num_attention_heads: usize,
    /// `{arch}.attention.head_count_kv`, defaulting to `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// `{arch}.attention.key_length` when present (Qwen3 sets it), else `None`
    /// (`hidden_size / num_attention_heads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub rms_norm_eps: f64,
    /// `{arch}.rope.freq_base`, defaulting to 10000 as llama.cpp does.
    pub rope_theta: f64,
    /// `{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`, else
    /// the rows of `token_embd.weight`.
    pub vocab_size: usize,
    /// `{arch}.context_length`.
    pub max_position_embeddings: usize,
    /// True when the file has no `output.weight` (the LM head reuses the embeddings).
    pub tie_word_embeddings: bool,
    /// True when `blk.0.attn_q.bias` exists (Qwen2 has q/k/v biases).
    pub attention_bias: bool,
    /// `tokenizer.ggml.bos_token_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
}

impl GgufModelConfig {
    /// Reads the config from `file`'s metadata.
    ///
    /// # Errors
    /// [`GgufError::Unsupported`] for architectures other than llama / qwen2 /
    /// qwen3, [`GgufError::MissingKey`] or [`GgufError::WrongType`] for absent
    /// or mistyped hyper-parameters.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, GgufError> {
        let arch = file.require_str("general.architecture")?;
        if !matches!(arch, "llama" | "qwen2" | "qwen3") {
            return Err(GgufError::Unsupported {
                file: file.path().to_path_buf(),
                what: "architecture",
                found: arch.into(),
                supported: SUPPORTED_ARCHITECTURES,
            });
        }
        let key = |k: &str| format!("{arch}.{k}");
        let usize_at = |k: &str| file.require_usize(&key(k));
        let f64_at = |k: &str| {
            file.get_f64(&key(k))?.ok_or_else(|| GgufError::MissingKey {
                file: file.path().to_path_buf(),
                key: key(k),
            })
        };
        let token_id = |k: &str| -> Result<Option<u32>, GgufError> {
            let Some(v) = file.get_usize(k)? else {
                return Ok(None);
            };
            u32::try_from(v)
                .map(Some)
                .map_err(|_| GgufError::WrongType {
                    file: file.path().to_path_buf(),
                    key: k.into(),
                    expected: "a token id (u32)",
                    found: v.to_string(),
                })
        };

        let num_attention_heads = usize_at("attention.head_count")?;
        let vocab_size = match file.get_usize(&key("vocab_size"))? {
            Some(v) => v,
            None => match file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
                Some(tokens) => tokens.len(),
                None => file
                    .tensor_info("token_embd.weight")
                    .and_then(|t| t.ggml_dims.get(1).copied())
                    .map(|rows| rows as usize)
                    .ok_or_else(|| GgufError::MissingKey {
                        file: file.path().to_path_buf(),
                        key: key("vocab_size"),
                    })?,
            },
        };
        Ok(Self {
            model_type: arch.into(),
            hidden_size: usize_at("embedding_length")?,
            intermediate_size: usize_at("feed_forward_length")?,
            num_hidden_layers: usize_at("block_count")?,
            num_attention_heads,
            num_key_value_heads: file
                .get_usize(&key("attention.head_count_kv"))?
                .unwrap_or(num_attention_heads),
            head_dim: file.get_usize(&key("attention.key_length"))?,
            rms_norm_eps: f64_at("attention.layer_norm_rms_epsilon")?,
            rope_theta: file.get_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            vocab_size,
            max_position_embeddings: usize_at("context_length")?,
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            attention_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
            bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: token_id("tokenizer.ggml.eos_token_id")?,
            pad_token_id: token_id("tokenizer.ggml.padding_token_id")?,
        })
    }

    /// The config as a Hugging Face `config.json` document, with
    /// `architectures` (`LlamaForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`).
    pub fn to_hf_config_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let architecture = match self.model_type.as_str() {
            "llama" => "LlamaForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            "qwen3" => "Qwen3ForCausalLM",
            _ => "",
        };
        if let Some(obj) = json.as_object_mut() {
            if !architecture.is_empty() {
                obj.insert("architectures".into(), serde_json::json!([architecture]));
            }
            obj.insert("hidden_act".into(), "silu".into());
        }
        json
    }
}
