//! Text in and out: a Hugging Face tokenizer (`tokenizer.json`) with its special
//! tokens, stop tokens and chat template.
//!
//! ```no_run
//! use sdpo_models::{ChatMessage, Tokenizer};
//!
//! # fn main() -> Result<(), sdpo_models::TokenizerError> {
//! let tok = Tokenizer::from_hf_dir("models/SmolLM2-135M-Instruct")?;
//! let prompt = tok.apply_chat_template(
//!     &[ChatMessage { role: "user".into(), content: "Hi!".into() }],
//!     true,
//! )?;
//! // The template already wrote the special tokens: do not add them again.
//! let ids = tok.encode(&prompt, false)?;
//! assert_eq!(tok.decode(&ids, false)?, prompt);
//! # Ok(())
//! # }
//! ```
//!
//! Loading follows transformers: `tokenizer.json` holds the vocabulary and the
//! pipeline; `tokenizer_config.json` the special tokens (plain strings or
//! `AddedToken` objects) and the chat template (a string, or a list of named
//! templates of which `default` is used); a `chat_template.jinja` beside them wins
//! over both, as in transformers 5; `generation_config.json` adds stop ids.

mod chat_template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value as Json;

use crate::ChatMessage;
use chat_template::{ChatTemplate, SpecialTokenVars};

/// What can go wrong loading a tokenizer, encoding, decoding or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file the tokenizer needs does not exist.
    #[error("{path}: not found ({what})")]
    MissingFile {
        /// The path looked for.
        path: PathBuf,
        /// Why it is needed.
        what: &'static str,
    },
    /// A file exists but cannot be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file does not parse.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A field of a configuration file has a value this crate cannot use.
    #[error("{path}: field `{field}`: {reason}")]
    InvalidField {
        /// The file (or `<memory>` for values given in code).
        path: PathBuf,
        /// The field, as a JSON path (`chat_template[1].template`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `tokenizers` library rejected a `tokenizer.json`.
    #[error("{path}: not a tokenizer the `tokenizers` library can load: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// Encoding a text failed.
    #[error("cannot encode text ({len} bytes, starting {start:?}): {message}")]
    Encode {
        /// Length of the text in bytes.
        len: usize,
        /// Its first characters.
        start: String,
        /// The library's message.
        message: String,
    },
    /// Decoding ids failed.
    #[error("cannot decode {count} ids: {message}")]
    Decode {
        /// How many ids were given.
        count: usize,
        /// The library's message.
        message: String,
    },
    /// An id is outside the vocabulary.
    #[error("token id {id} at position {position} is outside the vocabulary (size {vocab_size})")]
    UnknownId {
        /// The id.
        id: u32,
        /// Where it is in the input.
        position: usize,
        /// The vocabulary size, added tokens included.
        vocab_size: usize,
    },
    /// A token string is not in the vocabulary.
    #[error("token {token:?} ({role}) is not in the vocabulary")]
    UnknownToken {
        /// The token text.
        token: String,
        /// What it was meant to be (`eos_token`, ...).
        role: String,
    },
    /// A chat template was asked for but the tokenizer has none.
    #[error("this tokenizer has no chat template{hint}")]
    NoChatTemplate {
        /// Where one was looked for.
        hint: String,
    },
    /// A named chat template does not exist.
    #[error("no chat template named {name:?} (known: {known:?})")]
    UnknownChatTemplate {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// A chat template does not parse.
    #[error("chat template {name:?} does not parse: {message}")]
    TemplateSyntax {
        /// The template's name (`default` unless named).
        name: String,
        /// The parser's message, with the line.
        message: String,
    },
    /// A chat template failed while rendering (including its own `raise_exception`).
    #[error("chat template {name:?} failed to render: {message}")]
    TemplateRender {
        /// The template's name.
        name: String,
        /// The template engine's message (for `raise_exception`, the template's text).
        message: String,
    },
    /// The extra template arguments are not a map of names to values.
    #[error("extra chat template arguments must be a map of names to values; got {found}")]
    InvalidTemplateArgs {
        /// What was given instead.
        found: String,
    },
    /// A file could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The `tokenizers` pipeline could not be serialized to `tokenizer.json`.
    #[error("{path}: cannot serialize the tokenizer: {message}")]
    Serialize {
        /// The file being written.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
}

/// A tokenizer: the `tokenizers` pipeline plus the special tokens, stop ids and
/// chat templates transformers keeps beside it.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The template used by [`Tokenizer::apply_chat_template`].
    chat_template: Option<ChatTemplate>,
    /// Named templates (`tool_use`, ...), the default one included under its name.
    named_templates: BTreeMap<String, ChatTemplate>,
    bos: Option<String>,
    eos: Option<String>,
    pad: Option<String>,
    unk: Option<String>,
    eos_ids: Vec<u32>,
    /// `inner.get_vocab_size(true)`, read once: the tokenizers library builds the whole
    /// vocabulary map to answer it (milliseconds for 49 152 tokens), and decoding checks every
    /// id against it.
    vocab_size: usize,
    /// Where it was loaded from, for messages.
    origin: String,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("origin", &self.origin)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("eos_token_ids", &self.eos_ids)
            .field("chat_template", &self.chat_template.is_some())
            .field(
                "named_templates",
                &self.named_templates.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The name of the default chat template.
const DEFAULT_TEMPLATE: &str = "default";

fn read_to_string(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TokenizerError> {
    std::fs::write(path, bytes).map_err(|source| TokenizerError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<Json, TokenizerError> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A special token as `tokenizer_config.json` writes it: `"<s>"`, `null`, or an
/// `AddedToken` object `{"content": "<s>", ...}`.
fn special_token(config: &Json, key: &str, path: &Path) -> Result<Option<String>, TokenizerError> {
    match config.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Object(obj)) => match obj.get("content") {
            Some(Json::String(s)) => Ok(Some(s.clone())),
            _ => Err(TokenizerError::InvalidField {
                path: path.to_path_buf(),
                field: key.to_string(),
                reason: "an AddedToken object needs a string `content`".to_string(),
            }),
        },
        Some(other) => Err(TokenizerError::InvalidField {
            path: path.to_path_buf(),
            field: key.to_string(),
            reason: format!("expected a string or an AddedToken object, found {other}"),
        }),
    }
}

/// `chat_template` in `tokenizer_config.json`: a string, or `[{"name", "template"}, ...]`.
fn chat_templates_field(
    value: &Json,
    path: &Path,
) -> Result<Vec<(String, String)>, TokenizerError> {
    match value {
        Json::Null => Ok(Vec::new()),
        Json::String(s) => Ok(vec![(DEFAULT_TEMPLATE.to_string(), s.clone())]),
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = |name: &str| format!("chat_template[{i}].{name}");
                let name = item.get("name").and_then(Json::as_str).ok_or_else(|| {
                    TokenizerError::InvalidField {
                        path: path.to_path_buf(),
                        field: field("name"),
                        reason: "expected a string".to_string(),
                    }
                })?;
                let template = item.get("template").and_then(Json::as_str).ok_or_else(|| {
                    TokenizerError::InvalidField {
                        path: path.to_path_buf(),
                        field: field("template"),
                        reason: "expected a string".to_string(),
                    }
                })?;
                out.push((name.to_string(), template.to_string()));
            }
            Ok(out)
        }
        Json::Object(map) => {
            // `{"name": "template", ...}`, as some processors write it.
            let mut out = Vec::with_capacity(map.len());
            for (name, template) in map {
                let template = template
                    .as_str()
                    .ok_or_else(|| TokenizerError::InvalidField {
                        path: path.to_path_buf(),
                        field: format!("chat_template.{name}"),
                        reason: "expected a string".to_string(),
                    })?;
                out.push((name.clone(), template.to_string()));
            }
            Ok(out)
        }
        other => Err(TokenizerError::InvalidField {
            path: path.to_path_buf(),
            field: "chat_template".to_string(),
            reason: format!(
                "expected a string or a list of {{\"name\", \"template\"}} objects, found {other}"
            ),
        }),
    }
}

/// Token ids from a `generation_config.json` field: an integer or a list of them.
fn id_list(value: Option<&Json>, field: &str, path: &Path) -> Result<Vec<u32>, TokenizerError> {
    let bad = |v: &Json| TokenizerError::InvalidField {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason: format!("expected a token id or a list of token ids, found {v}"),
    };
    let one = |v: &Json| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(v))
    };
    match value {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

fn push_unique(ids: &mut Vec<u32>, id: u32) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

/// Runs a call into the `tokenizers` crate with its error as text. That crate panics on some
/// malformed `tokenizer.json` files (e.g. a `decoder` of the wrong shape) instead of failing;
/// the panic becomes an error here (its message still goes through the panic hook).
pub(crate) fn guarded<T, E: std::fmt::Display>(
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .map_or_else(
                || "the tokenizers library panicked".to_string(),
                |m| format!("the tokenizers library panicked: {m}"),
            )),
    }
}

impl Tokenizer {
    /// Loads a Hugging Face tokenizer folder: `tokenizer.json` (required),
    /// `tokenizer_config.json`, `chat_template.jinja` / `chat_template.json` and
    /// `generation_config.json` (all optional).
    ///
    /// Stop ids are the `eos_token`'s id followed by `generation_config.json`'s
    /// `eos_token_id` (an id or a list), without repeats.
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(TokenizerError::MissingFile {
                path: tokenizer_path,
                what: "a Hugging Face tokenizer folder needs tokenizer.json",
            });
        }
        let inner = guarded(|| tokenizers::Tokenizer::from_file(&tokenizer_path)).map_err(|e| {
            // A JSON syntax error reads better as one.
            match read_json(&tokenizer_path) {
                Err(err @ (TokenizerError::Json { .. } | TokenizerError::Io { .. })) => err,
                _ => TokenizerError::Load {
                    path: tokenizer_path.clone(),
                    message: e,
                },
            }
        })?;

        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            Json::Object(Default::default())
        };
        if !config.is_object() {
            return Err(TokenizerError::InvalidField {
                path: config_path,
                field: "(root)".to_string(),
                reason: "expected a JSON object".to_string(),
            });
        }
        let bos = special_token(&config, "bos_token", &config_path)?;
        let eos = special_token(&config, "eos_token", &config_path)?;
        let pad = special_token(&config, "pad_token", &config_path)?;
        let unk = special_token(&config, "unk_token", &config_path)?;

        // Templates: tokenizer_config.json, then chat_template.json, then
        // chat_template.jinja and additional_chat_templates/*.jinja (transformers 5).
        let mut templates: Vec<(String, String)> = match config.get("chat_template") {
            Some(v) => chat_templates_field(v, &config_path)?,
            None => Vec::new(),
        };
        let mut set_template = |name: String, source: String| {
            templates.retain(|(n, _)| *n != name);
            templates.push((name, source));
        };
        let json_template_path = dir.join("chat_template.json");
        if json_template_path.is_file() {
            let value = read_json(&json_template_path)?;
            let field = value.get("chat_template").unwrap_or(&Json::Null);
            for (name, source) in chat_templates_field(field, &json_template_path)? {
                set_template(name, source);
            }
        }
        let jinja_path = dir.join("chat_template.jinja");
        if jinja_path.is_file() {
            set_template(DEFAULT_TEMPLATE.to_string(), read_to_string(&jinja_path)?);
        }
        let extra_dir = dir.join("additional_chat_templates");
        if extra_dir.is_dir() {
            let entries = std::fs::read_dir(&extra_dir).map_err(|source| TokenizerError::Io {
                path: extra_dir.clone(),
                source,
            })?;
            let mut files = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| TokenizerError::Io {
                    path: extra_dir.clone(),
                    source,
                })?;
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "jinja") {
                    files.push(path);
                }
            }
            files.sort();
            for path in files {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                set_template(name, read_to_string(&path)?);
            }
        }

        let mut tok = Self::build(
            inner,
            templates,
            bos,
            eos,
            pad,
            unk,
            dir.display().to_string(),
        )?;

        let gen_path = dir.join("generation_config.json");
        if gen_path.is_file() {
            let gen = read_json(&gen_path)?;
            for id in id_list(gen.get("eos_token_id"), "eos_token_id", &gen_path)? {
                tok.check_id(id, 0)?;
                push_unique(&mut tok.eos_ids, id);
            }
            if tok.eos.is_none() {
                tok.eos = tok
                    .eos_ids
                    .first()
                    .and_then(|&id| tok.inner.id_to_token(id));
            }
        }
        if tok.eos_ids.is_empty() {
            tracing::warn!(origin = %tok.origin, "tokenizer has no eos token: generation will only stop at the length limit");
        }
        Ok(tok)
    }

    /// Builds a tokenizer from a `tokenizers` pipeline and what transformers keeps
    /// beside it (used for GGUF files, whose metadata holds all of them).
    ///
    /// Fails if the chat template does not parse or a special token is not in the vocabulary.
    pub fn from_parts(
        inner: tokenizers::Tokenizer,
        chat_template: Option<String>,
        bos: Option<String>,
        eos: Option<String>,
    ) -> Result<Self, TokenizerError> {
        let templates = chat_template
            .map(|t| vec![(DEFAULT_TEMPLATE.to_string(), t)])
            .unwrap_or_default();
        Self::build(
            inner,
            templates,
            bos,
            eos,
            None,
            None,
            "<memory>".to_string(),
        )
    }

    fn build(
        inner: tokenizers::Tokenizer,
        templates: Vec<(String, String)>,
        bos: Option<String>,
        eos: Option<String>,
        pad: Option<String>,
        unk: Option<String>,
        origin: String,
    ) -> Result<Self, TokenizerError> {
        let mut named_templates = BTreeMap::new();
        for (name, source) in &templates {
            named_templates.insert(name.clone(), ChatTemplate::new(name, source)?);
        }
        // transformers: a single template is the default whatever its name; with
        // several, the one named "default" (none otherwise).
        let chat_template = match templates.as_slice() {
            [] => None,
            [(name, _)] => named_templates.get(name).cloned(),
            _ => named_templates.get(DEFAULT_TEMPLATE).cloned(),
        };
        let vocab_size = inner.get_vocab_size(true);
        let mut tok = Self {
            inner,
            vocab_size,
            chat_template,
            named_templates,
            bos: None,
            eos: None,
            pad: None,
            unk: None,
            eos_ids: Vec::new(),
            origin,
        };
        if let Some(b) = &bos {
            tok.require_token(b, "bos_token")?;
        }
        if let Some(e) = &eos {
            let id = tok.require_token(e, "eos_token")?;
            tok.eos_ids.push(id);
        }
        tok.bos = bos;
        tok.eos = eos;
        // pad/unk are informational: keep them even if missing from the vocabulary.
        tok.pad = pad;
        tok.unk = unk;
        Ok(tok)
    }

    fn require_token(&self, token: &str, role: &str) -> Result<u32, TokenizerError> {
        self.inner
            .token_to_id(token)
            .ok_or_else(|| TokenizerError::UnknownToken {
                token: token.to_string(),
                role: role.to_string(),
            })
    }

    fn check_id(&self, id: u32, position: usize) -> Result<(), TokenizerError> {
        let vocab_size = self.vocab_size();
        if (id as usize) < vocab_size {
            Ok(())
        } else {
            Err(TokenizerError::UnknownId {
                id,
                position,
                vocab_size,
            })
        }
    }

    /// Sets the padding token (it must be in the vocabulary).
    pub fn with_pad_token(mut self, pad: impl Into<String>) -> Result<Self, TokenizerError> {
        let pad = pad.into();
        self.require_token(&pad, "pad_token")?;
        self.pad = Some(pad);
        Ok(self)
    }

    /// Adds stop ids (beyond the eos token's), e.g. a chat model's end-of-turn token.
    pub fn with_extra_eos_ids(mut self, ids: &[u32]) -> Result<Self, TokenizerError> {
        for (position, &id) in ids.iter().enumerate() {
            self.check_id(id, position)?;
            push_unique(&mut self.eos_ids, id);
        }
        Ok(self)
    }

    /// Text to ids. Special tokens written in `text` (`"<|im_start|>"`) become
    /// their ids, as in Hugging Face; `add_special_tokens` applies the
    /// tokenizer's post-processor (e.g. a leading BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding =
            guarded(|| self.inner.encode_fast(text, add_special_tokens)).map_err(|e| {
                TokenizerError::Encode {
                    len: text.len(),
                    start: text.chars().take(40).collect(),
                    message: e,
                }
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Ids to text; an id outside the vocabulary is an error, not skipped.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        for (position, &id) in ids.iter().enumerate() {
            self.check_id(id, position)?;
        }
        guarded(|| self.inner.decode(ids, skip_special_tokens)).map_err(|e| {
            TokenizerError::Decode {
                count: ids.len(),
                message: e,
            }
        })
    }

    /// Renders `messages` with the chat template, as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        self.apply_chat_template_with(messages, add_generation_prompt, &())
    }

    /// [`Tokenizer::apply_chat_template`] with extra template variables, like
    /// transformers' keyword arguments: `extra` serializes to a map such as
    /// `{"enable_thinking": false}` or `{"tools": [...], "date_string": "..."}`.
    ///
    /// Values override the special-token variables of the same name. Maps keep
    /// the order they serialize in (`serde_json::Value` sorts its keys unless
    /// serde_json's `preserve_order` is on; a `minijinja::Value` or a struct keeps
    /// its own order), which matters for `tojson`.
    pub fn apply_chat_template_with<S: Serialize + ?Sized>(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &S,
    ) -> Result<String, TokenizerError> {
        let template = self
            .chat_template
            .as_ref()
            .ok_or_else(|| self.no_template())?;
        template.render(messages, add_generation_prompt, &self.special_vars(), extra)
    }

    /// [`Tokenizer::apply_chat_template_with`] with a named template (`tool_use`, ...).
    pub fn apply_named_chat_template<S: Serialize + ?Sized>(
        &self,
        name: &str,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &S,
    ) -> Result<String, TokenizerError> {
        let template =
            self.named_templates
                .get(name)
                .ok_or_else(|| TokenizerError::UnknownChatTemplate {
                    name: name.to_string(),
                    known: self.named_templates.keys().cloned().collect(),
                })?;
        template.render(messages, add_generation_prompt, &self.special_vars(), extra)
    }

    fn no_template(&self) -> TokenizerError {
        let hint = if self.named_templates.is_empty() {
            format!(" (loaded from {})", self.origin)
        } else {
            format!(
                " named \"default\" (named ones: {:?}; use apply_named_chat_template)",
                self.named_templates.keys().collect::<Vec<_>>()
            )
        };
        TokenizerError::NoChatTemplate { hint }
    }

    fn special_vars(&self) -> SpecialTokenVars {
        SpecialTokenVars {
            bos_token: self.bos.clone(),
            eos_token: self.eos.clone(),
            unk_token: self.unk.clone(),
            pad_token: self.pad.clone(),
        }
    }

    /// Replaces the default chat template (checked for syntax now).
    pub fn set_chat_template(&mut self, source: &str) -> Result<(), TokenizerError> {
        let template = ChatTemplate::new(DEFAULT_TEMPLATE, source)?;
        self.named_templates
            .insert(DEFAULT_TEMPLATE.to_string(), template.clone());
        self.chat_template = Some(template);
        Ok(())
    }

    /// The default chat template's text, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_ref().map(ChatTemplate::source)
    }

    /// Names of all chat templates (`default`, `tool_use`, ...).
    pub fn chat_template_names(&self) -> Vec<&str> {
        self.named_templates.keys().map(String::as_str).collect()
    }

    /// Ids that end generation: the eos token's, then `generation_config.json`'s, without repeats.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends generation.
    pub fn is_stop_id(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// The beginning-of-sequence token, if the tokenizer has one.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_deref()
    }

    /// The end-of-sequence token, if the tokenizer has one.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_deref()
    }

    /// The padding token, if the tokenizer has one.
    pub fn pad_token(&self) -> Option<&str> {
        self.pad.as_deref()
    }

    /// The unknown token, if the tokenizer has one.
    pub fn unk_token(&self) -> Option<&str> {
        self.unk.as_deref()
    }

    /// The beginning-of-sequence token's id.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// The end-of-sequence token's id (the first stop id when only
    /// `generation_config.json` names one).
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos
            .as_deref()
            .and_then(|t| self.token_to_id(t))
            .or_else(|| self.eos_ids.first().copied())
    }

    /// The padding token's id.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// Vocabulary size, added tokens included (transformers' `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token (a vocabulary entry, not a text to encode).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary entry of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The underlying `tokenizers` pipeline.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// `tokenizer_config.json` as transformers reads it: the special tokens, the chat
    /// template(s) (a string, or a list of `{"name", "template"}` when there are several) and
    /// `clean_up_tokenization_spaces: false` (this tokenizer's `decode` does no clean-up).
    pub fn hf_tokenizer_config(&self) -> Json {
        let mut config = serde_json::Map::new();
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        for (key, token) in [
            ("bos_token", &self.bos),
            ("eos_token", &self.eos),
            ("pad_token", &self.pad),
            ("unk_token", &self.unk),
        ] {
            if let Some(token) = token {
                config.insert(key.into(), token.clone().into());
            }
        }
        config.insert("clean_up_tokenization_spaces".into(), false.into());
        let named: Vec<(&String, &ChatTemplate)> = self.named_templates.iter().collect();
        match named.as_slice() {
            [] => {}
            [(_, only)] => {
                config.insert("chat_template".into(), only.source().into());
            }
            many => {
                let list = many
                    .iter()
                    .map(|(name, t)| serde_json::json!({"name": name, "template": t.source()}))
                    .collect();
                config.insert("chat_template".into(), Json::Array(list));
            }
        }
        Json::Object(config)
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (see
    /// [`Tokenizer::hf_tokenizer_config`]) into `dir`, which must exist, replacing files of
    /// those names. [`Tokenizer::from_hf_dir`] on the folder gives back the same ids, special
    /// tokens and chat templates (stop ids beyond the eos token live in
    /// `generation_config.json`, which the caller writes).
    ///
    /// # Errors
    /// [`TokenizerError::Serialize`] or [`TokenizerError::Write`] naming the file.
    pub fn save_hf_files(&self, dir: impl AsRef<Path>) -> Result<(), TokenizerError> {
        let dir = dir.as_ref();
        let tokenizer_path = dir.join("tokenizer.json");
        let text = self
            .inner
            .to_string(false)
            .map_err(|e| TokenizerError::Serialize {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        write_file(&tokenizer_path, text.as_bytes())?;
        let config_path = dir.join("tokenizer_config.json");
        let mut text = serde_json::to_string_pretty(&self.hf_tokenizer_config()).map_err(|e| {
            TokenizerError::Serialize {
                path: config_path.clone(),
                message: e.to_string(),
            }
        })?;
        text.push('\n');
        write_file(&config_path, text.as_bytes())
    }
}
