//! The one error type of the GGUF reader.

use std::path::PathBuf;

use super::GgmlType;

/// Everything that can go wrong while reading a GGUF file.
///
/// Each variant names the file and, where there is one, the metadata key or
/// tensor, with what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("cannot read GGUF file {}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("{} is not a GGUF file: expected magic bytes \"GGUF\" (47 47 55 46), found {found:02x?}", file.display())]
    BadMagic {
        /// The file.
        file: PathBuf,
        /// The bytes found where the magic should be.
        found: Vec<u8>,
    },
    /// A GGUF version this reader does not handle (only 2 and 3 are).
    #[error("{}: unsupported GGUF version {found} (expected 2 or 3)", file.display())]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version number in the header.
        found: u32,
    },
    /// The file ends before a structure it announces.
    #[error("{}: file truncated while reading {what} at byte {offset}: needed {needed} bytes, {available} left", file.display())]
    Truncated {
        /// The file.
        file: PathBuf,
        /// What was being read (e.g. `value of key "general.name"`).
        what: String,
        /// Byte offset of the read.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A string (key, tensor name or value) is not UTF-8.
    #[error("{}: {what} at byte {offset} is not valid UTF-8", file.display())]
    InvalidUtf8 {
        /// The file.
        file: PathBuf,
        /// Which string.
        what: String,
        /// Byte offset of the string.
        offset: u64,
    },
    /// A metadata value has a type number outside the GGUF specification.
    #[error("{}: metadata key {key:?} has unknown value type {found} (expected 0..=12)", file.display())]
    UnknownValueType {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// The type number found.
        found: u32,
    },
    /// A metadata value is malformed (nesting too deep, bad alignment, ...).
    #[error("{}: metadata key {key:?}: {reason}", file.display())]
    InvalidMetadata {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A required metadata key is absent.
    #[error("{}: missing metadata key {key:?}", file.display())]
    MissingKey {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value has another type than the one needed.
    #[error("{}: metadata key {key:?} should be {expected}, found {found}", file.display())]
    WrongType {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// The type needed.
        expected: &'static str,
        /// The type (or value) found.
        found: String,
    },
    /// A tensor's ggml type number is not one ggml defines.
    #[error("{}: tensor {tensor:?} has unknown ggml type {found}", file.display())]
    UnknownGgmlType {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// The type number found.
        found: u32,
    },
    /// A known ggml type that this reader cannot dequantize.
    #[error("{}: tensor {tensor:?} has ggml type {ggml_type:?}, which this reader cannot dequantize (supported: {})", file.display(), GgmlType::SUPPORTED_NAMES)]
    UnsupportedGgmlType {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its type.
        ggml_type: GgmlType,
    },
    /// A tensor's dimensions, type or offset are inconsistent.
    #[error("{}: tensor {tensor:?}: {reason}", file.display())]
    InvalidTensor {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's data lies (partly) past the end of the file.
    #[error("{}: tensor {tensor:?} occupies bytes {start}..{end} but the file has {file_len} bytes", file.display())]
    TensorOutOfBounds {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Absolute start offset.
        start: u64,
        /// Absolute end offset (exclusive).
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// No tensor of that name.
    #[error("{}: no tensor named {tensor:?}", file.display())]
    MissingTensor {
        /// The file.
        file: PathBuf,
        /// The tensor name asked for.
        tensor: String,
    },
    /// Two metadata keys or two tensors share a name.
    #[error("{}: duplicate {what} {name:?}", file.display())]
    Duplicate {
        /// The file.
        file: PathBuf,
        /// `"metadata key"` or `"tensor"`.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// The file describes an architecture or tokenizer this crate does not handle.
    #[error("{}: unsupported {what} {found:?} (supported: {supported})", file.display())]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// What is unsupported (`"architecture"`, `"tokenizer model"`).
        what: &'static str,
        /// The value found.
        found: String,
        /// The values this crate handles.
        supported: &'static str,
    },
}
