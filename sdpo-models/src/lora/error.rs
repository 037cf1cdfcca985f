//! Errors of LoRA configuration, adapter/model pairing and PEFT files.

use std::path::PathBuf;

use burn_store::SafetensorsStoreError;

/// What can go wrong building, pairing, saving or loading a LoRA adapter set. Variants about
/// files name the file; variants about tensors name the tensor (PEFT key in files, module
/// path otherwise) with the expected and found shapes.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// A [`LoraConfig`](super::LoraConfig) field has a value that cannot be used.
    #[error("LoRA config `{field}` = {value}: {reason}")]
    InvalidConfig {
        /// The field (`rank`, `alpha`, `dropout`, `target_modules`).
        field: &'static str,
        /// The value found, as written.
        value: String,
        /// What is expected instead.
        reason: String,
    },
    /// An adapter set does not fit the model it is paired with.
    #[error("LoRA adapter `{tensor}` has shape {found:?}, the model needs {expected:?}")]
    Incompatible {
        /// Module path of the adapter weight (`layers.0.self_attn.q_proj.lora_a.weight`), or
        /// `layers` for a layer-count mismatch (shapes are then `[count]`).
        tensor: String,
        /// What the model implies.
        expected: Vec<usize>,
        /// What the adapter set holds.
        found: Vec<usize>,
    },
    /// A file could not be read, written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `adapter_config.json` is not valid JSON of the expected form.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser error (with line and column).
        source: serde_json::Error,
    },
    /// `adapter_config.json` asks for a PEFT feature this crate does not implement.
    #[error("{}: unsupported `{field}` = {value}: {reason}", path.display())]
    UnsupportedPeft {
        /// The file.
        path: PathBuf,
        /// The PEFT field.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is supported.
        reason: String,
    },
    /// The safetensors file could not be written, opened or parsed.
    #[error("{}: {source}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The burn-store error.
        source: SafetensorsStoreError,
    },
    /// Adapter tensors the configuration implies are not in the file.
    #[error("{}: missing adapter tensors: {}", path.display(), tensors.join(", "))]
    MissingTensors {
        /// The safetensors file.
        path: PathBuf,
        /// PEFT keys, sorted.
        tensors: Vec<String>,
    },
    /// The file holds tensors that belong to no adapter of the configuration.
    #[error("{}: unexpected tensors (not adapters of the configured targets): {}", path.display(), tensors.join(", "))]
    UnusedTensors {
        /// The safetensors file.
        path: PathBuf,
        /// Keys as found in the file, sorted.
        tensors: Vec<String>,
    },
    /// An adapter tensor in the file has the wrong shape.
    #[error("{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        /// The safetensors file.
        path: PathBuf,
        /// PEFT key.
        tensor: String,
        /// Shape the configuration and model imply (PEFT layout, `[r, in]` / `[out, r]`).
        expected: Vec<usize>,
        /// Shape found in the file.
        found: Vec<usize>,
    },
    /// An adapter tensor in the file could not be decoded.
    #[error("{}: tensor `{tensor}`: {message}", path.display())]
    Tensor {
        /// The safetensors file.
        path: PathBuf,
        /// PEFT key.
        tensor: String,
        /// What went wrong.
        message: String,
    },
}
