//! Rotary position embedding in the Hugging Face `rotate_half` layout.
//!
//! The head dimension is split in two halves `[x1, x2]`; frequency `i` rotates the pair
//! `(x1[i], x2[i])`. (Burn's `RotaryEncoding` rotates interleaved pairs instead, which does
//! not match HF weights.) Angles come from a `[batch, seq]` positions tensor, so left-padded
//! rows and KV-cache continuation need no special case.

use burn::module::Module;
use burn::tensor::{backend::Backend, DType, Device, FloatDType, Int, Tensor, TensorData};

use super::config::{ModelConfig, RopeScaling};

/// The unscaled RoPE inverse frequencies `1 / theta^(2i / head_dim)`, `i < head_dim / 2`.
pub fn default_inv_freq(head_dim: usize, theta: f64) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
        .collect()
}

/// Llama 3.x frequency scaling, a pure function of the inverse frequencies.
///
/// Wavelengths `2π / f` longer than `original_max_position_embeddings / low_freq_factor` are
/// divided by `factor`; those shorter than `original_max_position_embeddings /
/// high_freq_factor` are kept; in between the frequency is interpolated with
/// `s = (original / wavelength − low) / (high − low)`: `(1 − s) · f / factor + s · f`.
pub fn llama3_scale_inv_freq(
    inv_freq: &[f64],
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_max_position_embeddings: usize,
) -> Vec<f64> {
    let original = original_max_position_embeddings as f64;
    let low_freq_wavelen = original / low_freq_factor;
    let high_freq_wavelen = original / high_freq_factor;
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            if wavelen < high_freq_wavelen {
                f
            } else if wavelen > low_freq_wavelen {
                f / factor
            } else {
                let smooth =
                    (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * f / factor + smooth * f
            }
        })
        .collect()
}

/// The inverse frequencies a model configuration asks for (scaling applied).
pub fn inv_freq(config: &ModelConfig) -> Vec<f64> {
    let base = default_inv_freq(config.head_dim, config.rope_theta);
    match config.rope_scaling {
        RopeScaling::None => base,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => llama3_scale_inv_freq(
            &base,
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        ),
    }
}

/// Precomputed inverse frequencies (an f32 constant, not a parameter).
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    /// `[head_dim / 2]`, f32.
    inv_freq: Tensor<B, 1>,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// Builds the table for the given inverse frequencies.
    pub fn new(inv_freq: &[f64], device: &Device<B>) -> Self {
        let data: Vec<f32> = inv_freq.iter().map(|&f| f as f32).collect();
        let len = data.len();
        Self {
            inv_freq: Tensor::from_data(TensorData::new(data, [len]), (device, DType::F32)),
        }
    }

    /// Cosines and sines for each position, duplicated over both halves, in `dtype`.
    /// Angles are computed in f32 like Hugging Face.
    ///
    /// # Shapes
    /// - `positions`: `[batch, seq]`
    /// - returns `(cos, sin)`, each `[batch, 1, seq, head_dim]` (broadcast over heads)
    pub fn cos_sin(
        &self,
        positions: Tensor<B, 2, Int>,
        dtype: DType,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, seq] = positions.dims();
        let half = self.inv_freq.dims()[0];
        let pos = positions
            .float()
            .cast(FloatDType::F32)
            .reshape([batch, seq, 1]);
        let freqs = pos.mul(self.inv_freq.clone().reshape([1, 1, half]));
        let angles = Tensor::cat(vec![freqs.clone(), freqs], 2).reshape([batch, 1, seq, 2 * half]);
        let cos = angles.clone().cos();
        let sin = angles.sin();
        if dtype == DType::F32 {
            (cos, sin)
        } else {
            (cos.cast(dtype), sin.cast(dtype))
        }
    }
}

/// `[x1, x2] → [−x2, x1]` over the last dimension.
///
/// # Shapes
/// - `x`: `[batch, heads, seq, head_dim]` → same
pub fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, s, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..s, 0..d / 2]);
    let x2 = x.slice([0..b, 0..h, 0..s, d / 2..d]);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

/// Rotates queries or keys: `x · cos + rotate_half(x) · sin`.
///
/// # Shapes
/// - `x`: `[batch, heads, seq, head_dim]`
/// - `cos`, `sin`: `[batch, 1, seq, head_dim]`
/// - returns `[batch, heads, seq, head_dim]`
pub fn apply_rotary<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [b, h, s, d] = x.dims();
    let cos = cos.clone().expand([b, h, s, d]);
    let sin = sin.clone().expand([b, h, s, d]);
    x.clone().mul(cos).add(rotate_half(x).mul(sin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    /// Slow reference: HF's `_compute_llama3_parameters`, written with masks over the whole
    /// vector the way transformers does (no early returns).
    fn llama3_reference(inv: &[f64], factor: f64, low: f64, high: f64, orig: f64) -> Vec<f64> {
        let low_wl = orig / low;
        let high_wl = orig / high;
        let wavelen: Vec<f64> = inv.iter().map(|f| 2.0 * std::f64::consts::PI / f).collect();
        let mut out: Vec<f64> = inv
            .iter()
            .zip(&wavelen)
            .map(|(f, wl)| if *wl > low_wl { f / factor } else { *f })
            .collect();
        for i in 0..inv.len() {
            let smooth = (orig / wavelen[i] - low) / (high - low);
            let smoothed = (1.0 - smooth) * out[i] / factor + smooth * out[i];
            let is_medium = (high_wl..=low_wl).contains(&wavelen[i]);
            if is_medium {
                out[i] = smoothed;
            }
        }
        out
    }

    #[test]
    fn llama3_scaling_matches_slow_reference_in_all_bands() {
        // Llama 3.1 8B settings: head_dim 128, theta 500000.
        let base = default_inv_freq(128, 500_000.0);
        let got = llama3_scale_inv_freq(&base, 8.0, 1.0, 4.0, 8192);
        let want = llama3_reference(&base, 8.0, 1.0, 4.0, 8192.0);
        let (mut kept, mut scaled, mut mixed) = (0, 0, 0);
        for ((g, w), b) in got.iter().zip(&want).zip(&base) {
            assert!((g - w).abs() <= 1e-15 * w.abs(), "{g} vs {w}");
            if g == b {
                kept += 1;
            } else if (g - b / 8.0).abs() < 1e-18 {
                scaled += 1;
            } else {
                mixed += 1;
            }
        }
        assert!(
            kept > 0 && scaled > 0 && mixed > 0,
            "{kept} {scaled} {mixed}"
        );
    }

    #[test]
    fn llama3_scaling_hand_values() {
        // wavelengths 2π/f: f = 1 → 6.28 (< 16: kept), f = 0.01 → 628 (> 64: / 8),
        // f = 2π/32 → wavelength 32: s = (64/32 − 1) / 3 = 1/3 → f (1/3 + 2/3 / 8).
        let mid = 2.0 * std::f64::consts::PI / 32.0;
        let got = llama3_scale_inv_freq(&[1.0, 0.01, mid], 8.0, 1.0, 4.0, 64);
        assert_eq!(got[0], 1.0);
        assert!((got[1] - 0.00125).abs() < 1e-15);
        let want = mid * (1.0 / 3.0 + (2.0 / 3.0) / 8.0);
        assert!((got[2] - want).abs() < 1e-15);
    }

    #[test]
    fn rotary_matches_scalar_reference_per_row_positions() {
        let device = Default::default();
        let (b, h, s, d) = (2, 2, 3, 4);
        let inv = default_inv_freq(d, 10_000.0);
        let rope = RotaryEmbedding::<B>::new(&inv, &device);
        let xs: Vec<f32> = (0..b * h * s * d)
            .map(|i| ((i * 7 % 11) as f32) - 5.0)
            .collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(xs.clone(), [b, h, s, d]), &device);
        let positions = [[0i64, 1, 2], [0, 0, 5]];
        let pos = Tensor::<B, 2, Int>::from_data(TensorData::from(positions), &device);
        let (cos, sin) = rope.cos_sin(pos, DType::F32);
        let got = apply_rotary(x, &cos, &sin)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (bi, row) in positions.iter().enumerate() {
            for hi in 0..h {
                for (si, &p) in row.iter().enumerate() {
                    let p = p as f64;
                    let base = ((bi * h + hi) * s + si) * d;
                    for (i, f) in inv.iter().enumerate() {
                        let (c, sn) = ((p * f).cos(), (p * f).sin());
                        let (x1, x2) = (xs[base + i] as f64, xs[base + i + d / 2] as f64);
                        let y1 = x1 * c - x2 * sn;
                        let y2 = x2 * c + x1 * sn;
                        assert!((got[base + i] as f64 - y1).abs() < 1e-5);
                        assert!((got[base + i + d / 2] as f64 - y2).abs() < 1e-5);
                    }
                }
            }
        }
    }
}
