//! `sdpo export MODEL OUT_DIR`: a model (a run's latest checkpoint with its LoRA adapters
//! merged, or any other MODEL) as a Hugging Face folder.

use std::path::PathBuf;

use burn::tensor::Device;
use sdpo_train::TrainBackend;

use sdpo_models::export::export_hf_dir;

use crate::backend::Dispatch;
use crate::error::CliError;
use crate::models::{load_model, ModelRef};

/// The `export` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// A run folder (its latest checkpoint), a checkpoint folder, `builtin`, a Hugging Face
    /// folder, a .gguf file or a Hub id ORG/NAME[:FILE][@REVISION].
    pub model: String,
    /// The Hugging Face folder to write (must not exist, or be empty).
    pub out_dir: PathBuf,
}

/// `export` with a parsed model reference.
pub struct Export {
    /// The model.
    pub model: ModelRef,
    /// Where to write it.
    pub out_dir: PathBuf,
}

impl Dispatch for Export {
    type Output = String;

    fn run<B: TrainBackend>(self, device: Device<B>) -> Result<String, CliError> {
        let loaded = load_model::<B::InnerBackend>(&self.model, &device)?;
        export_hf_dir(&loaded.model, &loaded.tokenizer, &self.out_dir)?;
        Ok(format!(
            "exported {} to {} (config.json, model.safetensors, tokenizer files)",
            loaded.origin,
            self.out_dir.display()
        ))
    }
}
