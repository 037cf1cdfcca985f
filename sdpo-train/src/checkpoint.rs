//! Atomic checkpoint folders: every file is written into `NAME.tmp-PID/`, synced, and the
//! folder is renamed to `NAME` at the end, so a run killed at any moment leaves the previous
//! checkpoint intact. A `latest` file (itself replaced by rename) names the newest one.
//!
//! Records (model, optimizer, teacher) are encoded with Burn's named MessagePack recorder at
//! full precision, so a resumed run continues bit for bit. Every folder has a
//! [`manifest`](manifest::Manifest) with each file's size and SHA-256; [`newest_intact`] picks
//! the newest checkpoint whose files match it, saying which newer ones it skipped and why.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{BurnRecord, FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::Device;

pub mod manifest;

pub use manifest::{verify, Manifest, MANIFEST};
use manifest::{DigestWriter, FileDigest};

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
    /// A file is missing, truncated or damaged (it does not match the folder's manifest).
    #[error("checkpoint {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
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
    let mut bytes = Vec::new();
    write_record::<B, R>(record, &mut bytes, name)?;
    Ok(bytes)
}

/// Writes a Burn record to `out` as [`encode_record`]'s bytes, without holding them: a
/// checkpoint's records go straight into their files, so saving needs no second copy of the
/// model and optimizer in memory (Burn's own file recorder ignores errors of its last write).
///
/// # Errors
/// [`CheckpointError::Record`] naming `name` when encoding or writing fails.
pub fn write_record<B: Backend, R: Record<B>>(
    record: R,
    out: &mut dyn Write,
    name: &Path,
) -> Result<(), CheckpointError> {
    type Format = NamedMpkBytesRecorder<FullPrecisionSettings>;
    let item = BurnRecord::<_, B>::new::<Format>(record.into_item::<FullPrecisionSettings>());
    rmp_serde::encode::write_named(out, &item).map_err(|e| CheckpointError::Record {
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

/// `module` with `record` loaded. Burn's loader panics when the record's shapes differ from
/// the module's; the panic is caught and returned as an error naming `file`.
///
/// # Errors
/// [`CheckpointError::Mismatch`] naming `file` and Burn's message.
pub fn load_into<B: Backend, M: Module<B>>(
    module: M,
    record: M::Record,
    file: &Path,
) -> Result<M, CheckpointError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| module.load_record(record))).map_err(
        |payload| {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            CheckpointError::Mismatch {
                path: file.to_path_buf(),
                reason: format!("does not fit this model: {message}"),
            }
        },
    )
}

/// Writes a file of a checkpoint into `out`; the path is the file's, for errors.
pub type WriteFile<'a> = Box<dyn FnOnce(&mut dyn Write, &Path) -> Result<(), CheckpointError> + 'a>;

/// One file of a checkpoint folder: its name and what writes it ([`write_record`] for a
/// record, so its bytes are never held whole).
pub struct CheckpointFile<'a> {
    /// The file's name inside the folder.
    pub name: &'a str,
    /// Writes the file's contents.
    pub write: WriteFile<'a>,
}

impl<'a> CheckpointFile<'a> {
    /// A file of `bytes` already in memory (owned or borrowed).
    pub fn bytes(name: &'a str, bytes: impl AsRef<[u8]> + 'a) -> Self {
        Self {
            name,
            write: Box::new(move |out, path| out.write_all(bytes.as_ref()).map_err(io(path))),
        }
    }

    /// A file holding `record`, encoded as it is written (see [`write_record`]).
    pub fn record<B: Backend, R: Record<B> + 'a>(name: &'a str, record: R) -> Self {
        Self {
            name,
            write: Box::new(move |out, path| write_record::<B, R>(record, out, path)),
        }
    }
}

/// Creates `path`, lets `write` fill it through a buffer, syncs it to disk and gives its
/// digest.
fn write_synced_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write, &Path) -> Result<(), CheckpointError>,
) -> Result<FileDigest, CheckpointError> {
    let file = fs::File::create(path).map_err(io(path))?;
    let mut out = DigestWriter::new(BufWriter::with_capacity(1 << 20, file));
    write(&mut out, path)?;
    let (buffered, digest) = out.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| io(path)(e.into_error()))?;
    file.sync_all().map_err(io(path))?;
    Ok(digest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_synced_with(path, |out, path| out.write_all(bytes).map_err(io(path))).map(|_| ())
}

/// Writes `files` (name, bytes) and their [`Manifest`] as the folder `dir/name`, atomically,
/// replacing an older folder of that name, and points `dir/latest` at it.
///
/// # Errors
/// [`CheckpointError::Io`] naming the path that failed; the previous checkpoint is untouched.
pub fn write_checkpoint(
    dir: &Path,
    name: &str,
    files: &[(&str, Vec<u8>)],
) -> Result<PathBuf, CheckpointError> {
    let files = files
        .iter()
        .map(|(file, bytes)| CheckpointFile::bytes(file, bytes.as_slice()))
        .collect();
    write_checkpoint_files(dir, name, files)
}

/// [`write_checkpoint`] for files written one after the other straight to disk: only one
/// file's writer runs at a time, and a record's encoded bytes are never held whole.
///
/// # Errors
/// As [`write_checkpoint`], and the errors of the files' writers.
pub fn write_checkpoint_files(
    dir: &Path,
    name: &str,
    files: Vec<CheckpointFile<'_>>,
) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let final_dir = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    let mut digests = BTreeMap::new();
    for file in files {
        let digest = write_synced_with(&tmp.join(file.name), file.write)?;
        digests.insert(file.name.to_string(), digest);
    }
    write_synced(&tmp.join(MANIFEST), &Manifest::new(digests).to_bytes())?;
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
/// [`CheckpointError`] when `latest` is empty or names a folder that does not exist.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let latest = dir.join(LATEST);
    if !latest.exists() {
        return Ok(None);
    }
    let name = fs::read_to_string(&latest).map_err(io(&latest))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(CheckpointError::Corrupt {
            path: latest,
            reason: "is empty (it should name the newest checkpoint folder, e.g. `step-20`)".into(),
        });
    }
    let path = dir.join(name);
    if !is_step_name(name) || !path.is_dir() {
        return Err(CheckpointError::Mismatch {
            path: latest,
            reason: format!("names `{name}`, which is not a checkpoint folder"),
        });
    }
    Ok(Some(path))
}

fn is_step_name(name: &str) -> bool {
    name.strip_prefix("step-")
        .is_some_and(|n| n.parse::<usize>().is_ok())
}

/// The `step-N` folders under `dir`, newest (largest N) first.
///
/// # Errors
/// [`CheckpointError::Io`] when `dir` cannot be listed (a missing `dir` has none).
pub fn step_folders(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut steps: Vec<(usize, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name
            .strip_prefix("step-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            if entry.path().is_dir() {
                steps.push((n, entry.path()));
            }
        }
    }
    steps.sort();
    Ok(steps.into_iter().rev().map(|(_, p)| p).collect())
}

/// The checkpoint to resume from: the one `latest` names if its files match its manifest,
/// else the newest `step-N` folder that does. Returns it (or `None` when there is no
/// checkpoint at all) with one line per checkpoint passed over and why.
///
/// # Errors
/// [`CheckpointError::Corrupt`] when checkpoints exist but none is intact (naming each).
pub fn newest_intact(dir: &Path) -> Result<(Option<PathBuf>, Vec<String>), CheckpointError> {
    let mut skipped = Vec::new();
    let mut candidates = Vec::new();
    match latest_checkpoint(dir) {
        Ok(Some(p)) => candidates.push(p),
        Ok(None) => {}
        Err(e) => skipped.push(e.to_string()),
    }
    for p in step_folders(dir)? {
        if !candidates.contains(&p) {
            candidates.push(p);
        }
    }
    let any = !candidates.is_empty();
    for path in candidates {
        match verify(&path) {
            Ok(()) => {
                if !skipped.is_empty() {
                    skipped.push(format!("resuming from {} instead", path.display()));
                }
                return Ok((Some(path), skipped));
            }
            Err(e) => skipped.push(e.to_string()),
        }
    }
    if any {
        return Err(CheckpointError::Corrupt {
            path: dir.to_path_buf(),
            reason: format!("no intact checkpoint: {}", skipped.join("; ")),
        });
    }
    Ok((None, skipped))
}

/// Removes what a killed process leaves in a checkpoints folder: `NAME.tmp-PID` and
/// `NAME.old-PID` folders and `latest.tmp-PID` files. Call it only while holding the run
/// (another live run could be writing them). Returns the paths removed.
///
/// # Errors
/// [`CheckpointError::Io`] naming what could not be removed.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !(name.contains(".tmp-") || name.contains(".old-")) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            fs::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            fs::remove_file(&path).map_err(io(&path))?;
        }
        removed.push(path);
    }
    Ok(removed)
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
    fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(newest_intact(d).unwrap(), (None, vec![]));
        write_checkpoint(d, "step-1", &[("a", b"one".to_vec())]).unwrap();
        write_checkpoint(d, "step-2", &[("a", b"two".to_vec())]).unwrap();
        assert_eq!(newest_intact(d).unwrap().0.unwrap(), d.join("step-2"));
        // Same size, other bytes: caught by the hash.
        fs::write(d.join("step-2/a"), b"tw0").unwrap();
        let (found, notes) = newest_intact(d).unwrap();
        assert_eq!(found.unwrap(), d.join("step-1"));
        assert!(
            notes[0].contains("step-2/a") && notes[0].contains("SHA-256"),
            "{notes:?}"
        );
        assert!(notes[1].contains("resuming from"), "{notes:?}");
        // Truncated: caught by the size.
        fs::write(d.join("step-1/a"), b"on").unwrap();
        let err = newest_intact(d).unwrap_err().to_string();
        assert!(err.contains("has 2 bytes, the manifest says 3"), "{err}");
        // An empty `latest` is named, and the step folders are still tried.
        write_checkpoint(d, "step-3", &[("a", b"3".to_vec())]).unwrap();
        fs::write(d.join(LATEST), "").unwrap();
        let (found, notes) = newest_intact(d).unwrap();
        assert_eq!(found.unwrap(), d.join("step-3"));
        assert!(notes[0].contains("is empty"), "{notes:?}");
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_checkpoint(d, "step-1", &[("a", b"one".to_vec())]).unwrap();
        fs::create_dir(d.join("step-2.tmp-99999")).unwrap();
        fs::write(d.join("latest.tmp-99999"), "step-2").unwrap();
        let removed = remove_stale_temporaries(d).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(d.join("step-1").is_dir() && d.join(LATEST).is_file());
        assert!(!d.join("step-2.tmp-99999").exists());
    }

    #[test]
    fn records_written_into_their_files_equal_the_encoded_bytes_and_the_manifest() {
        use burn::nn::LinearConfig;
        use burn::tensor::backend::Backend as _;
        type B = burn::backend::NdArray<f32>;
        let device = Default::default();
        B::seed(&device, 3);
        let layer = LinearConfig::new(7, 5).init::<B>(&device);
        // Parameters initialize lazily, each clone on its own: initialize them once first.
        let _ = (layer.weight.val(), layer.bias.as_ref().map(|b| b.val()));
        let bytes = encode_record::<B, _>(layer.clone().into_record(), Path::new("m")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            CheckpointFile::record::<B, _>("model.mpk", layer.clone().into_record()),
            CheckpointFile::bytes("state.json", b"{}"),
        ];
        let folder = write_checkpoint_files(dir.path(), "step-1", files).unwrap();
        assert_eq!(fs::read(folder.join("model.mpk")).unwrap(), bytes);
        verify(&folder).unwrap();
        let manifest: Manifest =
            serde_json::from_slice(&fs::read(folder.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest.files["model.mpk"], FileDigest::of(&bytes));
        assert_eq!(manifest.files["state.json"], FileDigest::of(b"{}"));
        let back: <burn::nn::Linear<B> as Module<B>>::Record =
            read_record::<B, _>(&folder.join("model.mpk"), &device).unwrap();
        let back = layer.clone().load_record(back);
        let diff = back
            .weight
            .val()
            .sub(layer.weight.val())
            .abs()
            .max()
            .into_scalar();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn a_failing_file_writer_leaves_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_checkpoint(d, "step-1", &[("a", b"one".to_vec())]).unwrap();
        let failing = CheckpointFile {
            name: "model.mpk",
            write: Box::new(|_, path| {
                Err(CheckpointError::Record {
                    path: path.to_path_buf(),
                    action: "encode",
                    message: "refused".into(),
                })
            }),
        };
        let err = write_checkpoint_files(d, "step-2", vec![failing]).unwrap_err();
        assert!(err.to_string().contains("model.mpk"), "{err}");
        assert_eq!(latest_checkpoint(d).unwrap(), Some(d.join("step-1")));
        assert!(!d.join("step-2").exists());
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
