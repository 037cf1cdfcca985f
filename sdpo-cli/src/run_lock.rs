//! Run-folder ownership: one `sdpo train` at a time per run folder.
//!
//! A run holds an exclusive OS lock on `RUN/.lock` for its whole life (the OS releases it when
//! the process ends, also by `kill -9`), and the file names the holder (pid, start time,
//! command line) so a second run can say who has the folder. New folders are created with
//! `create_dir`, which is atomic: two runs starting together in one directory get
//! `runs/run-1` and `runs/run-2`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::CliError;

/// The lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive hold on a run folder, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    created: bool,
    _file: File,
}

impl RunLock {
    /// Takes the run folder `dir` (which must exist), or says who holds it.
    ///
    /// # Errors
    /// [`CliError::RunFolder`] naming the holder when another process has the folder;
    /// [`CliError::Io`] naming the lock file when it cannot be opened or written.
    pub fn acquire(dir: &Path) -> Result<Self, CliError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(CliError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the holder wrote it right after locking.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CliError::RunFolder {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "is in use by another `sdpo train` ({}); wait for it to finish, stop it, or pick another --out",
                        if holder.is_empty() { "holder unknown" } else { holder }
                    ),
                });
            }
            Err(TryLockError::Error(e)) => return Err(CliError::io(&path)(e)),
        }
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let command: Vec<String> = std::env::args().collect();
        let text = format!(
            "pid {}, started at unix time {started}, command `{}`\n",
            std::process::id(),
            command.join(" ")
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(CliError::io(&path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            created: false,
            _file: file,
        })
    }

    /// The folder held.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Releases the folder and removes it when this run created it and left nothing in it
    /// but the lock file (a run that failed before writing anything).
    pub fn release_removing_if_unused(self) {
        let (dir, created) = (self.dir.clone(), self.created);
        drop(self);
        if created && matches!(holds_files(&dir), Ok(false)) {
            let _ = std::fs::remove_file(dir.join(LOCK_FILE));
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Whether `dir` holds anything besides the lock file and the temporary files of a killed
/// run (`NAME.tmp-PID`, which are removed here).
///
/// # Errors
/// [`CliError::Io`] when the folder cannot be listed or a temporary file removed.
pub fn holds_files(dir: &Path) -> Result<bool, CliError> {
    for entry in std::fs::read_dir(dir).map_err(CliError::io(dir))? {
        let entry = entry.map_err(CliError::io(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name == LOCK_FILE {
            continue;
        }
        if name.contains(".tmp-") && entry.path().is_file() {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(CliError::io(&path))?;
            continue;
        }
        return Ok(true);
    }
    Ok(false)
}

/// Creates and takes the folder of a new run: `explicit` (created if missing; an existing one
/// must hold nothing but a lock file), or the first `runs/run-N` that this call creates.
///
/// # Errors
/// [`CliError::RunFolder`] when `explicit` holds files, is a file, or is in use;
/// [`CliError::Io`] when a folder cannot be created.
pub fn create_run_dir(explicit: Option<&Path>) -> Result<RunLock, CliError> {
    match explicit {
        Some(dir) => {
            if dir.exists() && !dir.is_dir() {
                return Err(CliError::RunFolder {
                    path: dir.to_path_buf(),
                    reason: "exists and is not a folder".into(),
                });
            }
            let created = !dir.exists();
            std::fs::create_dir_all(dir).map_err(CliError::io(dir))?;
            let mut lock = RunLock::acquire(dir)?;
            lock.created = created;
            if holds_files(dir)? {
                return Err(CliError::RunFolder {
                    path: dir.to_path_buf(),
                    reason: "already holds files; pick another --out, or continue it with --resume"
                        .into(),
                });
            }
            Ok(lock)
        }
        None => {
            let runs = Path::new("runs");
            std::fs::create_dir_all(runs).map_err(CliError::io(runs))?;
            for n in 1.. {
                let dir = runs.join(format!("run-{n}"));
                match std::fs::create_dir(&dir) {
                    Ok(()) => {
                        let mut lock = RunLock::acquire(&dir)?;
                        lock.created = true;
                        return Ok(lock);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(CliError::io(&dir)(e)),
                }
            }
            unreachable!("an unbounded range always yields")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn an_explicit_run_dir_must_be_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("a");
        std::fs::create_dir(&empty).unwrap();
        let lock = create_run_dir(Some(&empty)).unwrap();
        assert_eq!(lock.dir(), empty);
        drop(lock);
        // Only the lock file: still empty for a new run.
        drop(create_run_dir(Some(&empty)).unwrap());
        std::fs::write(empty.join("x"), "1").unwrap();
        let err = create_run_dir(Some(&empty)).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
        let fresh = dir.path().join("b/c");
        let lock = create_run_dir(Some(&fresh)).unwrap();
        assert_eq!(lock.dir(), fresh);
        lock.release_removing_if_unused();
        assert!(
            !fresh.exists(),
            "a folder created and left unused is removed"
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "1").unwrap();
        assert!(create_run_dir(Some(&file)).is_err());
    }
}
