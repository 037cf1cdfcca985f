//! The backend bound of training: autodiff plus the loss's backend extension.

use burn::tensor::backend::AutodiffBackend;
use sdpo_core::loss::LossBackend;

/// A Burn backend SDPO can train on: an autodiff backend that also
/// implements [`LossBackend`] (fused loss kernels where the backend has them,
/// the composite loss otherwise). Every `Autodiff<B>` over a Burn backend
/// sdpo-core knows (NdArray, Flex, Wgpu, Cuda with the matching features) is
/// one; implemented automatically.
pub trait TrainBackend: AutodiffBackend + LossBackend {}

impl<B: AutodiffBackend + LossBackend> TrainBackend for B {}
