//! A linear layer applied as one 2-D matrix product: [`linear`].

use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::kernels::{self, DecoderBackend};

/// `x · W + b` as one 2-D matrix product: `[..., in]` is flattened to `[n, in]` and the result
/// reshaped back.
///
/// Burn's `Linear::forward` multiplies `[b, s, in]` by the weight broadcast to `[1, in, out]`;
/// on Burn 0.21's fused CubeCL backends (Wgpu, Cuda) that batched form gave wrong rows for
/// `s = 1` (the KV-cache decode step) inside a SwiGLU block, caught by the backend suite on
/// lavapipe. One 2-D product is also the faster form.
///
/// With few rows (a decode step) the backend's few-row kernel
/// ([`kernels::matmul`](crate::kernels::matmul)) computes the product and the bias in one
/// pass over the weight.
///
/// # Shapes
/// - `x`: `[..., in]` → `[..., out]`
pub fn linear<B: DecoderBackend, const D: usize>(
    base: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let input = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let weight = base.weight.val();
    let output = weight.dims()[1];
    let x = x.reshape([rows, input]);
    let bias = base.bias.as_ref().map(|b| b.val());
    let y = kernels::matmul(&x, &weight, bias.as_ref()).unwrap_or_else(|| {
        let y = x.matmul(weight);
        match bias {
            Some(bias) => y.add(bias.unsqueeze()),
            None => y,
        }
    });
    let mut out = dims;
    out[D - 1] = output;
    y.reshape(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::LinearConfig;
    use burn::tensor::backend::Backend;
    use burn::tensor::Distribution;

    #[test]
    fn equals_burns_linear_forward() {
        let device = Default::default();
        NdArray::<f32>::seed(&device, 1);
        let layer = LinearConfig::new(6, 5).init::<NdArray>(&device);
        let x = Tensor::<NdArray, 3>::random([2, 3, 6], Distribution::Default, &device);
        let want = layer.forward(x.clone());
        let got = linear(&layer, x);
        assert_eq!(got.dims(), [2, 3, 5]);
        let diff = got.sub(want).abs().max().into_scalar();
        assert!(diff < 1e-6, "{diff}");
    }
}
