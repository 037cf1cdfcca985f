//! Atomic checkpoint folders: every file is written into `NAME.tmp-PID/`, synced, and the
//! folder is renamed to `NAME` at the end, so a run killed at any moment leaves the previous
//! checkpoint intact. A `latest` file (itself replaced by rename) names the newest one.
//!
//! Records (model, optimizer, teacher) are encoded with Burn's named MessagePack recorder at
//! full precision, so a resumed run continues bit for bit.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::Device;

/// File naming the newest checkpoint folder inside a checkpoints directory.
pub const LATEST: &str = "latest";

/// Why a checkpoint could not be written or read. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file or folder could not be written, read, renamed or removed.
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be encoded or decoded (corrupt or from another model).
    #[error("checkpoint {}: cannot {action} record: {message}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// `encode` or `decode`.
        action: &'static str,
        /// The recorder's message.
        message: String,
    },
    /// A file holds something other than what this run expects.
    #[error("checkpoint {}: {reason}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Encodes a Burn record (model, optimizer, scheduler) to bytes at full precision.
///
/// # Errors
/// [`CheckpointError::Record`] naming `name`.
pub fn encode_record<B: Backend, R: Record<B>>(
    record: R,
    name: &Path,
) -> Result<Vec<u8>, CheckpointError> {
    Recorder::<B>::record(
        &NamedMpkBytesRecorder::<FullPrecisionSettings>::default(),
        record,
        (),
    )
    .map_err(|e| CheckpointError::Record {
        path: name.to_path_buf(),
        action: "encode",
        message: e.to_string(),
    })
}

/// Reads and decodes a record written by [`encode_record`].
///
/// # Errors
/// [`CheckpointError`] naming the file when it is missing or does not decode.
pub fn read_record<B: Backend, R: Record<B>>(
    path: &Path,
    device: &Device<B>,
) -> Result<R, CheckpointError> {
    let bytes = fs::read(path).map_err(io(path))?;
    Recorder::<B>::load(
        &NamedMpkBytesRecorder::<FullPrecisionSettings>::default(),
        bytes,
        device,
    )
    .map_err(|e| CheckpointError::Record {
        path: path.to_path_buf(),
        action: "decode",
        message: e.to_string(),
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut f = fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Writes `files` (name, bytes) as the folder `dir/name`, atomically, replacing an older folder
/// of that name, and points `dir/latest` at it.
///
/// # Errors
/// [`CheckpointError::Io`] naming the path that failed; the previous checkpoint is untouched.
pub fn write_checkpoint(
    dir: &Path,
    name: &str,
    files: &[(&str, Vec<u8>)],
) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let final_dir = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    for (file, bytes) in files {
        write_synced(&tmp.join(file), bytes)?;
    }
    if final_dir.exists() {
        let old = dir.join(format!("{name}.old-{}", std::process::id()));
        fs::rename(&final_dir, &old).map_err(io(&final_dir))?;
        fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    }
    let latest_tmp = dir.join(format!("{LATEST}.tmp-{}", std::process::id()));
    write_synced(&latest_tmp, name.as_bytes())?;
    let latest = dir.join(LATEST);
    fs::rename(&latest_tmp, &latest).map_err(io(&latest))?;
    Ok(final_dir)
}

/// The newest checkpoint folder under `dir` (named by `dir/latest`), if any.
///
/// # Errors
/// [`CheckpointError`] when `latest` names a folder that does not exist.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let latest = dir.join(LATEST);
    if !latest.exists() {
        return Ok(None);
    }
    let name = fs::read_to_string(&latest).map_err(io(&latest))?;
    let path = dir.join(name.trim());
    if !path.is_dir() {
        return Err(CheckpointError::Mismatch {
            path: latest,
            reason: format!("names `{}`, which is not a checkpoint folder", name.trim()),
        });
    }
    Ok(Some(path))
}

/// Deletes all but the `keep` newest `step-N` folders under `dir`.
///
/// # Errors
/// [`CheckpointError::Io`] naming the folder that could not be listed or removed.
pub fn prune_checkpoints(dir: &Path, keep: usize) -> Result<(), CheckpointError> {
    let mut steps: Vec<(usize, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name
            .strip_prefix("step-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            steps.push((n, entry.path()));
        }
    }
    steps.sort();
    let excess = steps.len().saturating_sub(keep.max(1));
    for (_, path) in steps.into_iter().take(excess) {
        fs::remove_dir_all(&path).map_err(io(&path))?;
    }
    Ok(())
}

/// The folder name of the checkpoint after `step` steps.
pub fn step_dir_name(step: usize) -> String {
    format!("step-{step}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_is_atomic_and_latest_follows() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_checkpoint(dir.path(), "step-1", &[("a", b"one".to_vec())]).unwrap();
        assert_eq!(fs::read(p.join("a")).unwrap(), b"one");
        write_checkpoint(dir.path(), "step-2", &[("a", b"two".to_vec())]).unwrap();
        assert_eq!(
            latest_checkpoint(dir.path()).unwrap().unwrap(),
            dir.path().join("step-2")
        );
        // Rewriting a folder of the same name replaces its contents.
        write_checkpoint(dir.path(), "step-2", &[("b", b"x".to_vec())]).unwrap();
        assert!(!dir.path().join("step-2/a").exists());
        write_checkpoint(dir.path(), "step-3", &[]).unwrap();
        prune_checkpoints(dir.path(), 2).unwrap();
        assert!(!dir.path().join("step-1").exists());
        assert!(dir.path().join("step-2").exists() && dir.path().join("step-3").exists());
        // No temporary folders are left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn corrupt_record_is_an_error_naming_the_file() {
        type B = burn::backend::NdArray<f32>;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("optimizer.mpk");
        fs::write(&f, b"not a record").unwrap();
        let err = read_record::<B, usize>(&f, &Default::default()).unwrap_err();
        assert!(err.to_string().contains("optimizer.mpk"), "{err}");
        let missing =
            read_record::<B, usize>(&dir.path().join("nope.mpk"), &Default::default()).unwrap_err();
        assert!(missing.to_string().contains("nope.mpk"));
    }
}
