//! Parsing a GGUF file: header, metadata, tensor infos, tensor data.
//!
//! Layout (GGUF v2/v3, little-endian):
//!
//! ```text
//! "GGUF" u32 version  u64 n_tensors  u64 n_kv
//! n_kv      × { string key, u32 value_type, value }
//! n_tensors × { string name, u32 n_dims, u64 dims[n_dims] (innermost first), u32 ggml_type, u64 offset }
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset
//! ```
//!
//! A string is `u64 len` + UTF-8 bytes; an array is `u32 elem_type, u64 count, values`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use super::dequant::{dequantize, GgmlType};
use super::error::GgufError;

/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most this many dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are rejected (keeps recursion bounded).
const MAX_ARRAY_NESTING: usize = 4;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7.
    Bool(bool),
    /// Type 8.
    String(String),
    /// Type 9: elements all of one type.
    Array(Vec<MetadataValue>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl MetadataValue {
    /// The GGUF name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::F32(_) => "f32",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F64(_) => "f64",
        }
    }

    /// Any integer type as `i128` (lossless), else `None`.
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => v.into(),
            Self::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// A float or integer as `f64`, else `None`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    /// The string, else `None`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, else `None`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array elements, else `None`.
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's entry in the header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// GGUF name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions as stored: innermost (contiguous) first, like ggml's `ne`.
    pub ggml_dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Row-major shape as PyTorch / Hugging Face see it (the GGUF dims reversed).
    pub fn shape(&self) -> Vec<usize> {
        self.ggml_dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.ggml_dims.iter().product()
    }
}

/// A dequantized tensor: row-major `f32` data and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    /// Row-major shape (PyTorch order).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

/// The bytes of a file: memory-mapped, or owned (tests, in-memory files).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An open GGUF file: parsed header and metadata, tensor data left in place
/// (memory-mapped) until a tensor is asked for.
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    version: u32,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens and memory-maps `path`, parsing the header, all metadata and tensor infos.
    ///
    /// # Errors
    /// I/O failures and every malformation the format allows; see [`GgufError`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            file: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only. As with every memory-mapped reader, a
        // file truncated by another process while mapped can fault; model files
        // are not expected to change under a running trainer.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Bytes::Mapped(map))
    }

    /// Parses a GGUF file held in memory; `name` is used in error messages.
    ///
    /// # Errors
    /// As [`GgufFile::open`], minus I/O.
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<Self, GgufError> {
        Self::parse(name.into(), Bytes::Owned(bytes))
    }

    fn parse(path: PathBuf, bytes: Bytes) -> Result<Self, GgufError> {
        let mut c = Cursor {
            file: &path,
            bytes: &bytes,
            pos: 0,
        };
        let magic = c.take(4, || "magic".into())?;
        if magic != b"GGUF" {
            return Err(GgufError::BadMagic {
                file: path.clone(),
                found: magic.to_vec(),
            });
        }
        let version = c.u32(|| "version".into())?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion {
                file: path.clone(),
                found: version,
            });
        }
        let n_tensors = c.u64(|| "tensor count".into())?;
        let n_kv = c.u64(|| "metadata count".into())?;

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(|| format!("key of metadata entry {i}"))?;
            let ty = c.u32(|| format!("value type of key {key:?}"))?;
            let value = c.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Duplicate {
                    file: path.clone(),
                    what: "metadata key",
                    name: key,
                });
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(MetadataValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(other) => {
                return Err(GgufError::InvalidMetadata {
                    file: path.clone(),
                    key: "general.alignment".into(),
                    reason: format!("expected a power of two as u32, found {other:?}"),
                })
            }
        };

        let mut tensors = Vec::new();
        let mut by_name = HashMap::new();
        for i in 0..n_tensors {
            let info = c.tensor_info(i, alignment)?;
            if by_name.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::Duplicate {
                    file: path.clone(),
                    what: "tensor",
                    name: info.name,
                });
            }
            tensors.push(info);
        }

        let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
        let file_len = bytes.len() as u64;
        for t in &tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(_), Some(end)) if end <= file_len => {}
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        file: path.clone(),
                        tensor: t.name.clone(),
                        start: data_offset.saturating_add(t.offset),
                        end: data_offset
                            .saturating_add(t.offset)
                            .saturating_add(t.n_bytes),
                        file_len,
                    })
                }
            }
        }

        Ok(Self {
            path,
            bytes,
            version,
            metadata,
            tensors,
            by_name,
            alignment,
            data_offset,
        })
    }

    /// The path (or in-memory name) of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset where the tensor data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] when absent.
    pub fn require(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            file: self.path.clone(),
            key: key.into(),
        })
    }

    /// `key` converted by `convert`, `None` when absent; a present value that
    /// does not convert is [`GgufError::WrongType`] naming `expected`.
    fn get_as<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&'a MetadataValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        convert(v)
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, expected, v))
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &MetadataValue) -> GgufError {
        let found = match found {
            MetadataValue::Array(a) => format!("array of {}", a.len()),
            MetadataValue::String(_) => "string".into(),
            other => format!("{} {other:?}", other.type_name()),
        };
        GgufError::WrongType {
            file: self.path.clone(),
            key: key.into(),
            expected,
            found,
        }
    }

    /// `key` as a non-negative integer of any integer type, `None` when absent.
    ///
    /// # Errors
    /// [`GgufError::WrongType`] when present but not a non-negative integer.
    pub fn get_usize(&self, key: &str) -> Result<Option<usize>, GgufError> {
        self.get_as(key, "a non-negative integer", |v| {
            v.as_int().and_then(|i| usize::try_from(i).ok())
        })
    }

    /// `key` as a number (float or integer), `None` when absent.
    ///
    /// # Errors
    /// [`GgufError::WrongType`] when present but not a number.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.get_as(key, "a number", |v| v.as_f64())
    }

    /// `key` as a string, `None` when absent.
    ///
    /// # Errors
    /// [`GgufError::WrongType`] when present but not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.get_as(key, "a string", |v| v.as_str())
    }

    /// `key` as a boolean, `None` when absent.
    ///
    /// # Errors
    /// [`GgufError::WrongType`] when present but not a boolean.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get_as(key, "a boolean", |v| v.as_bool())
    }

    /// `key` as an array of strings, `None` when absent.
    ///
    /// # Errors
    /// [`GgufError::WrongType`] when present but not an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        self.get_as(key, "an array of strings", |v| {
            v.as_array()
                .and_then(|a| a.iter().map(MetadataValue::as_str).collect())
        })
    }

    /// `key` as an array of integers, `None` when absent.
    ///
    /// # Errors
    /// [`GgufError::WrongType`] when present but not an array of integers that fit `i64`.
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>, GgufError> {
        self.get_as(key, "an array of integers", |v| {
            v.as_array().and_then(|a| {
                a.iter()
                    .map(|x| x.as_int().and_then(|i| i64::try_from(i).ok()))
                    .collect()
            })
        })
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of tensor `name` (bounds were checked when the file was opened).
    ///
    /// # Errors
    /// [`GgufError::MissingTensor`] when there is no such tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                file: self.path.clone(),
                tensor: name.into(),
            })?;
        // In bounds and representable as usize: checked against the file length in `parse`.
        let start = (self.data_offset + info.offset) as usize;
        Ok(&self.bytes[start..start + info.n_bytes as usize])
    }

    /// Tensor `name` dequantized to `f32`, with its row-major (PyTorch) shape.
    ///
    /// # Errors
    /// [`GgufError::MissingTensor`], or [`GgufError::UnsupportedGgmlType`] for
    /// types [`super::dequant::dequantize`] does not handle.
    pub fn dequantize(&self, name: &str) -> Result<TensorData, GgufError> {
        let bytes = self.tensor_bytes(name)?;
        let info = &self.tensors[self.by_name[name]];
        let mut data = Vec::new();
        if !dequantize(info.ggml_type, bytes, &mut data) {
            return Err(GgufError::UnsupportedGgmlType {
                file: self.path.clone(),
                tensor: name.into(),
                ggml_type: info.ggml_type,
            });
        }
        Ok(TensorData {
            shape: info.shape(),
            data,
        })
    }
}

/// A bounds-checked reader over the file bytes.
struct Cursor<'a> {
    file: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        let available = (self.bytes.len() - self.pos) as u64;
        if n > available {
            return Err(GgufError::Truncated {
                file: self.file.to_path_buf(),
                what: what(),
                offset: self.pos as u64,
                needed: n,
                available,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(|| format!("length of {}", what()))?;
        let offset = self.pos as u64;
        let raw = self.take(len, &what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            file: self.file.to_path_buf(),
            what: what(),
            offset,
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetadataValue, GgufError> {
        use MetadataValue as V;
        let what = || format!("value of key {key:?}");
        Ok(match ty {
            0 => V::U8(self.array::<1>(what)?[0]),
            1 => V::I8(self.array::<1>(what)?[0] as i8),
            2 => V::U16(u16::from_le_bytes(self.array(what)?)),
            3 => V::I16(i16::from_le_bytes(self.array(what)?)),
            4 => V::U32(u32::from_le_bytes(self.array(what)?)),
            5 => V::I32(i32::from_le_bytes(self.array(what)?)),
            6 => V::F32(f32::from_le_bytes(self.array(what)?)),
            7 => V::Bool(self.array::<1>(what)?[0] != 0),
            8 => V::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(GgufError::InvalidMetadata {
                        file: self.file.to_path_buf(),
                        key: key.into(),
                        reason: format!("arrays nested deeper than {MAX_ARRAY_NESTING}"),
                    });
                }
                let elem = self.u32(|| format!("array element type of key {key:?}"))?;
                let count = self.u64(|| format!("array length of key {key:?}"))?;
                // Every element takes at least one byte: a count beyond the bytes
                // left is a truncated file, caught before allocating for it.
                let available = (self.bytes.len() - self.pos) as u64;
                if count > available {
                    return Err(GgufError::Truncated {
                        file: self.file.to_path_buf(),
                        what: format!("{count} array elements of key {key:?}"),
                        offset: self.pos as u64,
                        needed: count,
                        available,
                    });
                }
                // Capped: a corrupt count in a large file must not reserve gigabytes up front.
                let mut items = Vec::with_capacity((count as usize).min(1 << 16));
                for _ in 0..count {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                V::Array(items)
            }
            10 => V::U64(u64::from_le_bytes(self.array(what)?)),
            11 => V::I64(i64::from_le_bytes(self.array(what)?)),
            12 => V::F64(f64::from_le_bytes(self.array(what)?)),
            found => {
                return Err(GgufError::UnknownValueType {
                    file: self.file.to_path_buf(),
                    key: key.into(),
                    found,
                })
            }
        })
    }

    fn tensor_info(&mut self, index: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
        let name = self.string(|| format!("name of tensor {index}"))?;
        let file = self.file;
        let invalid = |reason: String| GgufError::InvalidTensor {
            file: file.to_path_buf(),
            tensor: name.clone(),
            reason,
        };
        let n_dims = self.u32(|| format!("dimension count of tensor {name:?}"))?;
        if n_dims > MAX_DIMS {
            return Err(invalid(format!(
                "{n_dims} dimensions, at most {MAX_DIMS} allowed"
            )));
        }
        let mut ggml_dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ggml_dims.push(self.u64(|| format!("dimensions of tensor {name:?}"))?);
        }
        let type_id = self.u32(|| format!("ggml type of tensor {name:?}"))?;
        let offset = self.u64(|| format!("data offset of tensor {name:?}"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownGgmlType {
            file: self.file.to_path_buf(),
            tensor: name.clone(),
            found: type_id,
        })?;

        let n_elements = ggml_dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| usize::try_from(n).is_ok())
            .ok_or_else(|| invalid(format!("element count of dims {ggml_dims:?} overflows")))?;
        let (block, size) = ggml_type.block_layout();
        let inner = ggml_dims.first().copied().unwrap_or(1);
        if inner % block as u64 != 0 {
            return Err(invalid(format!(
                "innermost dimension {inner} is not a multiple of the {ggml_type:?} block size {block}"
            )));
        }
        if offset % alignment != 0 {
            return Err(invalid(format!(
                "data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        let n_bytes = (n_elements / block as u64)
            .checked_mul(size as u64)
            .ok_or_else(|| invalid(format!("byte size of dims {ggml_dims:?} overflows")))?;
        Ok(TensorInfo {
            name,
            ggml_dims,
            ggml_type,
            offset,
            n_bytes,
        })
    }
}
