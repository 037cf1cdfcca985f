//! Compute backends: which are compiled in, and the dispatch from a [`BackendKind`] to a
//! generic `run::<B: TrainBackend>` (see [`Dispatch`]).

use burn::tensor::Device;
use sdpo_train::TrainBackend;
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// A Burn backend the CLI can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// CPU (burn-flex: SIMD kernels, multi-threaded); the default, in the default build.
    #[default]
    Flex,
    /// CPU (burn-ndarray); in the default build; the backend the test suite runs on.
    Ndarray,
    /// Any GPU through WebGPU (Vulkan, Metal, DX12); cargo feature `wgpu`.
    Wgpu,
    /// NVIDIA GPUs through CUDA; cargo feature `cuda`.
    Cuda,
}

impl BackendKind {
    /// The name on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// The cargo feature of `sdpo-cli` that compiles it in.
    pub fn feature(self) -> &'static str {
        self.name()
    }

    fn not_compiled(self) -> CliError {
        CliError::BackendNotCompiled {
            backend: self.name(),
            feature: self.feature(),
        }
    }
}

/// A command generic over the backend; [`dispatch`] picks the concrete one.
pub trait Dispatch {
    /// What the command returns.
    type Output;

    /// Runs the command on backend `B` (training on `B`, inference on `B::InnerBackend`).
    ///
    /// # Errors
    /// The command's.
    fn run<B: TrainBackend>(self, device: Device<B>) -> Result<Self::Output, CliError>;
}

/// Runs `command` on the backend `kind`, on its default device.
///
/// # Errors
/// [`CliError::BackendNotCompiled`] naming the cargo feature when `kind` is not compiled in;
/// otherwise the command's error.
pub fn dispatch<D: Dispatch>(kind: BackendKind, command: D) -> Result<D::Output, CliError> {
    match kind {
        BackendKind::Flex => {
            #[cfg(feature = "flex")]
            {
                type B = burn::backend::Autodiff<burn::backend::Flex>;
                command.run::<B>(Default::default())
            }
            #[cfg(not(feature = "flex"))]
            {
                let _ = command;
                Err(kind.not_compiled())
            }
        }
        BackendKind::Ndarray => {
            #[cfg(feature = "ndarray")]
            {
                type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
                command.run::<B>(Default::default())
            }
            #[cfg(not(feature = "ndarray"))]
            {
                let _ = command;
                Err(kind.not_compiled())
            }
        }
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                type B = burn::backend::Autodiff<burn::backend::Wgpu>;
                command.run::<B>(Default::default())
            }
            #[cfg(not(feature = "wgpu"))]
            {
                let _ = command;
                Err(kind.not_compiled())
            }
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                type B = burn::backend::Autodiff<burn::backend::Cuda>;
                command.run::<B>(Default::default())
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = command;
                Err(kind.not_compiled())
            }
        }
    }
}

/// Checks that `kind` is compiled in, before anything is loaded.
///
/// # Errors
/// [`CliError::BackendNotCompiled`].
pub fn ensure_compiled(kind: BackendKind) -> Result<(), CliError> {
    let compiled = match kind {
        BackendKind::Flex => cfg!(feature = "flex"),
        BackendKind::Ndarray => cfg!(feature = "ndarray"),
        BackendKind::Wgpu => cfg!(feature = "wgpu"),
        BackendKind::Cuda => cfg!(feature = "cuda"),
    };
    if compiled {
        Ok(())
    } else {
        Err(kind.not_compiled())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_backend_names_its_feature() {
        #[cfg(not(feature = "cuda"))]
        {
            let msg = ensure_compiled(BackendKind::Cuda).unwrap_err().to_string();
            assert_eq!(
                msg,
                "backend `cuda` is not compiled in: rebuild with `cargo build --release -p sdpo-cli --features cuda`"
            );
        }
        #[cfg(feature = "ndarray")]
        ensure_compiled(BackendKind::Ndarray).unwrap();
        #[cfg(feature = "flex")]
        ensure_compiled(BackendKind::Flex).unwrap();
    }
}
