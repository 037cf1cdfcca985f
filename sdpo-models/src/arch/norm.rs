//! Root-mean-square layer normalization, computed in f32 like Hugging Face.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{backend::Backend, DType, Device, FloatDType, Tensor};

use crate::kernels::{self, DecoderBackend};

/// RMSNorm with a learned scale named `weight` (the Hugging Face key).
///
/// `y = weight * (x / sqrt(mean(x^2) + eps))`, the normalization done in f32 and cast back to
/// the input dtype before the scale, as in `LlamaRMSNorm`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale, `[dim]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// A norm over the last dimension of width `dim`, scale initialized to ones.
    pub fn new(dim: usize, eps: f64, device: &Device<B>) -> Self {
        Self {
            weight: Initializer::Ones.init([dim], device),
            eps,
        }
    }

    /// Normalizes over the last dimension, with the fused kernel
    /// ([`kernels::rms_norm`](crate::kernels::rms_norm)) where the backend has one.
    ///
    /// # Shapes
    /// - `x`: `[..., dim]` → `[..., dim]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D>
    where
        B: DecoderBackend,
    {
        let weight = self.weight.val();
        kernels::rms_norm(&x, &weight, self.eps).unwrap_or_else(|| self.forward_composite(x))
    }

    /// [`RmsNorm::forward`] as tensor operations: the reference the kernels are tested
    /// against.
    ///
    /// # Shapes
    /// - `x`: `[..., dim]` → `[..., dim]`
    pub fn forward_composite<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype: DType = x.dtype();
        let x32 = if dtype == DType::F32 {
            x
        } else {
            x.cast(FloatDType::F32)
        };
        let rms = x32
            .clone()
            .powi_scalar(2)
            .mean_dim(D - 1)
            .add_scalar(self.eps)
            .sqrt();
        let normed = x32.div(rms);
        let normed = if dtype == DType::F32 {
            normed
        } else {
            normed.cast(dtype)
        };
        normed.mul(self.weight.val().unsqueeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn normalizes_to_unit_rms_and_scales() {
        let device = Default::default();
        let mut norm = RmsNorm::<B>::new(2, 0.0, &device);
        norm.weight = Param::from_tensor(Tensor::from_floats([1.0, 2.0], &device));
        // rms([3, 4]) = sqrt(12.5)
        let y = norm.forward(Tensor::<B, 2>::from_floats([[3.0, 4.0]], &device));
        let r = 12.5f32.sqrt();
        let expected = [3.0 / r, 8.0 / r];
        let got = y.into_data().to_vec::<f32>().unwrap();
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{got:?}");
        }
    }
}
