//! The tokenizer a GGUF file describes, and a Hugging Face `tokenizer.json`
//! rebuilt from it.
//!
//! A GGUF has no `tokenizer.json`: llama.cpp stores the vocabulary, merges,
//! token types and special ids as `tokenizer.ggml.*` metadata. For byte-level
//! BPE vocabularies (`tokenizer.ggml.model = "gpt2"`: Llama 3, Qwen, SmolLM,
//! GPT-2) [`GgufTokenizerMeta::to_hf_tokenizer_json`] rebuilds a document the
//! `tokenizers` crate loads, the way transformers' GGUF loader does
//! (`integrations/gguf/gguf_tokenizer_mapping.py`).

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::error::GgufError;
use super::reader::GgufFile;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    /// An ordinary vocabulary entry.
    pub const NORMAL: i32 = 1;
    /// The unknown token.
    pub const UNKNOWN: i32 = 2;
    /// A special token such as `<|im_start|>`; matched whole, skipped when decoding.
    pub const CONTROL: i32 = 3;
    /// An added but not special token such as `<think>`; matched whole.
    pub const USER_DEFINED: i32 = 4;
    /// A placeholder.
    pub const UNUSED: i32 = 5;
    /// A raw byte (`<0x0A>`), for SentencePiece byte fallback.
    pub const BYTE: i32 = 6;
}

/// Pre-tokenizer split patterns by `tokenizer.ggml.pre`, as transformers maps them.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const PRE_SPLITS: &[(&str, &str)] = &[
    ("llama3", LLAMA3_SPLIT),
    ("llama-v3", LLAMA3_SPLIT),
    ("llama-bpe", LLAMA3_SPLIT),
    ("smaug-bpe", LLAMA3_SPLIT),
    ("falcon3", LLAMA3_SPLIT),
    ("dbrx", LLAMA3_SPLIT),
    ("qwen2", QWEN2_SPLIT),
    ("deepseek-r1-qwen", QWEN2_SPLIT),
    ("megrez", QWEN2_SPLIT),
];

/// The `tokenizer.*` metadata of a GGUF file.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTokenizerMeta {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), ...
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer llama.cpp uses (`smollm`, `qwen2`, `llama-bpe`, ...).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token (see [`token_type`]); empty when absent.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges` (`"a b"`, best first); empty when absent.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos_token: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos_token: Option<bool>,
    /// `tokenizer.chat_template` (a Jinja template).
    pub chat_template: Option<String>,
}

impl GgufTokenizerMeta {
    /// Reads the tokenizer metadata of `file`.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] without `tokenizer.ggml.model` or
    /// `tokenizer.ggml.tokens`; [`GgufError::WrongType`] for mistyped keys;
    /// [`GgufError::InvalidMetadata`] for a special id past the vocabulary or
    /// a token-type array of the wrong length.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, GgufError> {
        let missing = |key: &str| GgufError::MissingKey {
            file: file.path().to_path_buf(),
            key: key.into(),
        };
        let invalid = |key: &str, reason: String| GgufError::InvalidMetadata {
            file: file.path().to_path_buf(),
            key: key.into(),
            reason,
        };
        let model = file
            .get_str("tokenizer.ggml.model")?
            .ok_or_else(|| missing("tokenizer.ggml.model"))?
            .to_string();
        let tokens: Vec<String> = file
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or_else(|| missing("tokenizer.ggml.tokens"))?
            .into_iter()
            .map(String::from)
            .collect();
        let token_types = match file.get_int_array("tokenizer.ggml.token_type")? {
            None => Vec::new(),
            Some(types) if types.len() == tokens.len() => types
                .into_iter()
                .map(|t| t.clamp(i32::MIN.into(), i32::MAX.into()) as i32)
                .collect(),
            Some(types) => {
                return Err(invalid(
                    "tokenizer.ggml.token_type",
                    format!("{} types for {} tokens", types.len(), tokens.len()),
                ))
            }
        };
        let merges = file
            .get_str_array("tokenizer.ggml.merges")?
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect();
        let id = |key: &str| -> Result<Option<u32>, GgufError> {
            match file.get_usize(key)? {
                None => Ok(None),
                Some(id) if id < tokens.len() => Ok(Some(id as u32)),
                Some(id) => Err(invalid(
                    key,
                    format!(
                        "token id {id} is past the vocabulary of {} tokens",
                        tokens.len()
                    ),
                )),
            }
        };
        Ok(Self {
            pre: file.get_str("tokenizer.ggml.pre")?.map(String::from),
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: id("tokenizer.ggml.eos_token_id")?,
            pad_token_id: id("tokenizer.ggml.padding_token_id")?,
            unk_token_id: id("tokenizer.ggml.unknown_token_id")?,
            add_bos_token: file.get_bool("tokenizer.ggml.add_bos_token")?,
            add_eos_token: file.get_bool("tokenizer.ggml.add_eos_token")?,
            chat_template: file.get_str("tokenizer.chat_template")?.map(String::from),
            model,
            tokens,
            token_types,
            merges,
        })
    }

    /// The text of token `id`, if in the vocabulary.
    pub fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|id| self.tokens.get(id as usize))
            .map(String::as_str)
    }

    /// A Hugging Face `tokenizer.json` document for a byte-level BPE (`gpt2`)
    /// vocabulary, loadable with `tokenizers::Tokenizer::from_str`.
    ///
    /// Control tokens become special added tokens and user-defined tokens
    /// plain added tokens (both matched whole in text). The pre-tokenizer
    /// follows `tokenizer.ggml.pre`: the Llama 3 or Qwen2 split regex where
    /// transformers uses one; `smollm` splits digits one by one as SmolLM's own
    /// `tokenizer.json` and llama.cpp do; anything else gets GPT-2's
    /// byte-level regex. A BOS token is prepended when `add_bos_token` is set.
    ///
    /// # Errors
    /// [`GgufError::Unsupported`] for tokenizer models other than `gpt2`.
    pub fn to_hf_tokenizer_json(&self, file: &GgufFile) -> Result<Value, GgufError> {
        if self.model != "gpt2" {
            return Err(GgufError::Unsupported {
                file: file.path().to_path_buf(),
                what: "tokenizer model (tokenizer.ggml.model)",
                found: self.model.clone(),
                supported: "gpt2",
            });
        }
        let alphabet = byte_alphabet();
        let in_alphabet: HashSet<char> = alphabet.iter().copied().collect();
        let spelled = |t: &str| t.chars().all(|c| in_alphabet.contains(&c));

        let mut vocab = Map::new();
        for (id, token) in self.tokens.iter().enumerate() {
            let key = if spelled(token) {
                token.clone()
            } else {
                token.bytes().map(|b| alphabet[b as usize]).collect()
            };
            vocab.insert(key, json!(id));
        }

        let mut added = Vec::new();
        for (id, (token, &ty)) in self.tokens.iter().zip(&self.token_types).enumerate() {
            // A control token spelled outside the byte alphabet is a llama.cpp
            // mislabel; transformers skips it and so do we.
            let special = match ty {
                token_type::CONTROL if spelled(token) => true,
                token_type::USER_DEFINED => false,
                _ => continue,
            };
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special,
            }));
        }

        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let pre = self.pre.as_deref().unwrap_or("default");
        let pre_tokenizer = if let Some((_, split)) = PRE_SPLITS.iter().find(|(p, _)| *p == pre) {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]})
        } else if pre == "smollm" {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]})
        } else {
            byte_level(true)
        };

        let bos = self
            .token(self.bos_token_id)
            .filter(|_| self.add_bos_token == Some(true));
        let post_processor = match (bos, self.bos_token_id) {
            (Some(bos), Some(bos_id)) => {
                let mut special = Map::new();
                special.insert(
                    bos.into(),
                    json!({"id": bos, "ids": [bos_id], "tokens": [bos]}),
                );
                json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [
                    {"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}},
                ],
                "special_tokens": special,
                })
            }
            _ => byte_level(false),
        };

        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": self.token(self.unk_token_id),
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": self.merges,
            },
        }))
    }
}

/// GPT-2's byte-to-character table: printable bytes stand for themselves,
/// the others (controls, space, 127..=160, 173) map to U+0100 onwards in order.
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).unwrap_or('\u{FFFD}');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let a = byte_alphabet();
        assert_eq!(a[b'a' as usize], 'a');
        assert_eq!(a[b' ' as usize], 'Ġ');
        assert_eq!(a[b'\n' as usize], 'Ċ');
        assert_eq!(a[0], 'Ā');
        assert_eq!(a[173], 'Ń');
        let distinct: HashSet<char> = a.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }
}
