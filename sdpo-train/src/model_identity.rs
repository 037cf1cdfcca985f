//! What a checkpoint was trained on: the model's architecture and shapes and a hash of the
//! tokenizer's vocabulary, recorded as `identity.json` in every checkpoint and compared on
//! resume, so weights are never loaded into another model (Burn's record loader panics on a
//! shape mismatch, or silently accepts other values of the same shape).

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sdpo_models::{CausalLm, Tokenizer};

/// The file inside a checkpoint folder.
pub const IDENTITY_FILE: &str = "identity.json";

/// A model and tokenizer's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Family (`llama`, `qwen2`, …).
    pub architecture: String,
    /// Decoder layers.
    pub num_layers: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Rows of the embedding matrix.
    pub vocab_size: usize,
    /// Whether `lm_head` is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Parameters of the base model.
    pub parameters: usize,
    /// Tokens in the tokenizer's vocabulary (added tokens included).
    pub tokenizer_vocab_size: usize,
    /// SHA-256 of the tokenizer's vocabulary (every token by id).
    pub tokenizer_sha256: String,
}

impl ModelIdentity {
    /// The identity of `lm` with `tokenizer`.
    pub fn of<B: Backend>(lm: &CausalLm<B>, tokenizer: &Tokenizer) -> Self {
        let c = &lm.config;
        let n = tokenizer.vocab_size();
        let mut hasher = Sha256::new();
        for id in 0..n as u32 {
            hasher.update(tokenizer.id_to_token(id).unwrap_or_default().as_bytes());
            hasher.update([0u8]);
        }
        Self {
            architecture: c.model_type.clone(),
            num_layers: c.num_layers,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            vocab_size: c.vocab_size,
            tie_word_embeddings: c.tie_word_embeddings,
            parameters: lm.num_params(),
            tokenizer_vocab_size: n,
            tokenizer_sha256: hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }

    /// What differs, one `field: recorded X, this run Y` per field (empty when identical).
    pub fn differences(&self, now: &Self) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |field: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{field}: checkpoint {a}, this run {b}"));
            }
        };
        cmp(
            "architecture",
            self.architecture.clone(),
            now.architecture.clone(),
        );
        let sizes = [
            ("num_layers", self.num_layers, now.num_layers),
            ("hidden_size", self.hidden_size, now.hidden_size),
            (
                "intermediate_size",
                self.intermediate_size,
                now.intermediate_size,
            ),
            ("num_heads", self.num_heads, now.num_heads),
            ("num_kv_heads", self.num_kv_heads, now.num_kv_heads),
            ("head_dim", self.head_dim, now.head_dim),
            ("vocab_size", self.vocab_size, now.vocab_size),
            ("parameters", self.parameters, now.parameters),
            (
                "tokenizer vocabulary size",
                self.tokenizer_vocab_size,
                now.tokenizer_vocab_size,
            ),
        ];
        for (field, a, b) in sizes {
            cmp(field, a.to_string(), b.to_string());
        }
        cmp(
            "tie_word_embeddings",
            self.tie_word_embeddings.to_string(),
            now.tie_word_embeddings.to_string(),
        );
        cmp(
            "tokenizer vocabulary (SHA-256)",
            self.tokenizer_sha256.chars().take(12).collect(),
            now.tokenizer_sha256.chars().take(12).collect(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::{char_tokenizer, init_model, tiny_model_config};

    type B = burn::backend::NdArray<f32>;

    #[test]
    fn another_shape_or_vocabulary_is_a_difference() {
        let device = Default::default();
        let tok = char_tokenizer().unwrap();
        let lm = init_model::<B>(&tiny_model_config(tok.vocab_size()), &device);
        let a = ModelIdentity::of(&lm, &tok);
        assert!(a.differences(&a.clone()).is_empty());
        let mut cfg = tiny_model_config(tok.vocab_size());
        cfg.num_layers += 1;
        let deeper = ModelIdentity::of(&init_model::<B>(&cfg, &device), &tok);
        let diff = a.differences(&deeper);
        assert!(
            diff.iter().any(|d| d.starts_with("num_layers:")),
            "{diff:?}"
        );
        assert!(
            diff.iter().any(|d| d.starts_with("parameters:")),
            "{diff:?}"
        );
        let mut other_vocab = a.clone();
        other_vocab.tokenizer_sha256 = "0".repeat(64);
        assert_eq!(a.differences(&other_vocab).len(), 1);
    }
}
