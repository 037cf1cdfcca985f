//! [`CliError`]: everything a command can fail with, each naming what and where.

use std::path::PathBuf;

use sdpo_core::config::ConfigError;
use sdpo_models::export::ExportError;
use sdpo_models::generate::GenerationError;
use sdpo_models::lora::LoraError;
use sdpo_models::{LoadError, TokenizerError};
use sdpo_train::checkpoint::CheckpointError;
use sdpo_train::dataset::DatasetError;
use sdpo_train::reward::RewardBuildError;
use sdpo_train::TrainError;

/// Exit status of a run stopped by a signal after writing its checkpoint ([`CliError::Interrupted`]).
pub const EXIT_INTERRUPTED: i32 = 3;
/// Exit status of a run ended by a signal without saving (before training, or a second signal).
pub const EXIT_ABORTED: i32 = 130;

/// Why a command failed. `main` prints it with its cause chain and exits with
/// [`CliError::exit_code`] (1, or 3 for a run interrupted by a signal after saving).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A run config could not be read, parsed (file, line, column) or validated.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `--set` (or `--smoke`) override could not be applied.
    #[error("{origin}: {reason}")]
    Override {
        /// The override as given (`--set train.steps=x`).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A config whose parts contradict each other.
    #[error("invalid run config: `{field}`: {reason}")]
    Invalid {
        /// The field, as a dotted path.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A backend that this binary was built without.
    #[error("backend `{backend}` is not compiled in: rebuild with `cargo build --release -p sdpo-cli --features {feature}`")]
    BackendNotCompiled {
        /// The backend asked for.
        backend: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A command-line argument that cannot be used.
    #[error("{arg}: {reason}")]
    Argument {
        /// The argument.
        arg: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A folder that is not (or not yet) a run folder of the kind needed.
    #[error("{}: {reason}", path.display())]
    RunFolder {
        /// The folder.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A model could not be loaded.
    #[error("cannot load model {}", path.display())]
    Load {
        /// The model path.
        path: PathBuf,
        /// The loader's error.
        source: Box<LoadError>,
    },
    /// A model named by Hub id could not be fetched (or found in the cache offline).
    #[error("Hub model {model}: {source}")]
    Hub {
        /// The model as given.
        model: String,
        /// What failed.
        source: sdpo_models::hub::HubError,
    },
    /// The built-in tokenizer or a model's tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(Box<TrainError>),
    /// A dataset could not be read or split.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The rewards could not be built.
    #[error("rewards: {0}")]
    Rewards(#[from] RewardBuildError),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// LoRA adapters do not fit the model.
    #[error("lora: {0}")]
    Lora(#[from] LoraError),
    /// The device cannot run the configured precision.
    #[error(transparent)]
    Precision(#[from] sdpo_models::PrecisionError),
    /// Generation failed.
    #[error("generation: {0}")]
    Generation(#[from] GenerationError),
    /// Export failed.
    #[error("export: {0}")]
    Export(#[from] ExportError),
    /// A signal stopped training after a step; its checkpoint and the summary were written.
    #[error("interrupted after step {step}: checkpoint and summary written; continue with `sdpo train --resume {}`", dir.display())]
    Interrupted {
        /// The run folder.
        dir: PathBuf,
        /// Steps done.
        step: usize,
    },
    /// The plot could not be drawn.
    #[error("plot {}: {message}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// The drawing backend's message.
        message: String,
    },
}

impl From<TrainError> for CliError {
    fn from(e: TrainError) -> Self {
        CliError::Train(Box::new(e))
    }
}

impl CliError {
    /// The process exit status for this error: [`EXIT_INTERRUPTED`] for
    /// [`CliError::Interrupted`], 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Interrupted { .. } => EXIT_INTERRUPTED,
            _ => 1,
        }
    }

    /// An [`CliError::Io`] maker for `map_err`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CliError {
        let path = path.into();
        move |source| CliError::Io { path, source }
    }
}

/// The error and its causes, one per line (`error: ...`, then `  caused by: ...`); a cause
/// whose text the line before already shows is skipped.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut out = format!("error: {error}");
    let mut shown = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !shown.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
        shown = text;
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_new_causes_once() {
        let e = CliError::Load {
            path: "m.gguf".into(),
            source: Box::new(LoadError::Io {
                path: "m.gguf".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
            }),
        };
        let text = report(&e);
        assert!(
            text.starts_with("error: cannot load model m.gguf"),
            "{text}"
        );
        assert!(text.contains("caused by:"), "{text}");
        assert!(text.contains("gone"), "{text}");
        let lines = text.lines().filter(|l| l.contains("gone")).count();
        assert_eq!(lines, 1, "{text}");
    }
}
