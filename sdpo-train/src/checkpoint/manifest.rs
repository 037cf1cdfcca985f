//! `manifest.json` of a checkpoint folder: every file's size and SHA-256, written last (inside
//! the temporary folder, before the rename) and checked before anything is decoded, so a
//! truncated or corrupted file is named instead of failing deep inside a decoder.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{io, CheckpointError};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";

/// Version of the manifest format.
const FORMAT: u32 = 1;

/// The size and hash of each file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub format: u32,
    /// File name → size and SHA-256.
    pub files: BTreeMap<String, FileDigest>,
}

/// One file's size and SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

impl FileDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(bytes)),
        }
    }

    /// The digest of the file at `path`, read in blocks.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] naming the file.
    pub fn of_file(path: &Path) -> Result<Self, CheckpointError> {
        let f = fs::File::open(path).map_err(io(path))?;
        let mut digest = DigestWriter::new(std::io::sink());
        std::io::copy(&mut BufReader::with_capacity(1 << 20, f), &mut digest).map_err(io(path))?;
        Ok(digest.finish().1)
    }
}

/// A writer that passes everything to `inner` and takes the size and SHA-256 of what it
/// wrote, so a file's digest needs no second read.
pub(crate) struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer and the digest of every byte written through this one.
    pub(crate) fn finish(self) -> (W, FileDigest) {
        let digest = FileDigest {
            bytes: self.bytes,
            sha256: hex(&self.hasher.finalize()),
        };
        (self.inner, digest)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// The manifest of files already digested (name → digest).
    pub fn new(files: BTreeMap<String, FileDigest>) -> Self {
        Self {
            format: FORMAT,
            files,
        }
    }

    /// The manifest as pretty JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain strings and numbers: serializing cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// Checks every file of checkpoint folder `dir` against its manifest. A folder without a
/// manifest (written before manifests existed) passes unchecked.
///
/// # Errors
/// [`CheckpointError::Corrupt`] naming the file that is missing, of the wrong size or with
/// another hash, or a manifest that does not parse.
pub fn verify(dir: &Path) -> Result<(), CheckpointError> {
    let path = dir.join(MANIFEST);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| CheckpointError::Corrupt {
            path: path.clone(),
            reason: format!("the manifest does not parse: {e}"),
        })?;
    if manifest.format != FORMAT {
        return Err(CheckpointError::Corrupt {
            path,
            reason: format!(
                "manifest format {} is not {FORMAT} (written by another version of sdpo)",
                manifest.format
            ),
        });
    }
    for (name, expected) in &manifest.files {
        let file = dir.join(name);
        if !file.is_file() {
            return Err(CheckpointError::Corrupt {
                path: file,
                reason: "is listed in the manifest but missing".into(),
            });
        }
        let size = fs::metadata(&file).map_err(io(&file))?.len();
        if size != expected.bytes {
            return Err(CheckpointError::Corrupt {
                path: file,
                reason: format!(
                    "has {size} bytes, the manifest says {} (truncated or overwritten)",
                    expected.bytes
                ),
            });
        }
        let found = FileDigest::of_file(&file)?;
        if found.sha256 != expected.sha256 {
            return Err(CheckpointError::Corrupt {
                path: file,
                reason:
                    "its SHA-256 differs from the manifest's (the file was modified or damaged)"
                        .into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_input() {
        assert_eq!(
            FileDigest::of(b"abc").sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
