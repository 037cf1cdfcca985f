//! The backend bound of training: autodiff plus the loss's and the decoder's backend
//! extensions.

use burn::tensor::backend::AutodiffBackend;
use sdpo_core::loss::LossBackend;
use sdpo_models::kernels::DecoderBackend;

/// A Burn backend SDPO can train on: an autodiff backend that also implements
/// [`LossBackend`] (fused loss kernels where the backend has them, the composite loss
/// otherwise) and [`DecoderBackend`], as does its inner backend, on which rollouts, the
/// teacher's forward and scoring run (fused decoder kernels where it has them). Every
/// `Autodiff<B>` over a Burn backend sdpo-core and sdpo-models know (NdArray, Flex, Wgpu,
/// Cuda with the matching features) is one; implemented automatically.
pub trait TrainBackend:
    AutodiffBackend<InnerBackend: DecoderBackend> + LossBackend + DecoderBackend
{
}

impl<B> TrainBackend for B where
    B: AutodiffBackend<InnerBackend: DecoderBackend> + LossBackend + DecoderBackend
{
}
