//! Rotary position embedding in the Hugging Face `rotate_half` layout.
//!
//! The head dimension is split in two halves `[x1, x2]`; frequency `i` rotates the pair
//! `(x1[i], x2[i])`. (Burn's `RotaryEncoding` rotates interleaved pairs instead, which does
//! not match HF weights.) Angles come from a `[batch, seq]` positions tensor, so left-padded
//! rows and KV-cache continuation need no special case.

use std::cell::OnceCell;

use burn::module::Module;
use burn::tensor::{backend::Backend, DType, Device, FloatDType, Int, Tensor, TensorData};

use super::config::{ModelConfig, RopeScaling};
use crate::kernels::{self, DecoderBackend};

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

    /// Cosines and sines for each position and frequency, in `dtype`. Angles are computed in
    /// f32 like Hugging Face.
    ///
    /// # Shapes
    /// - `positions`: `[batch, seq]`
    /// - returns the angles' cosines and sines, each `[batch, seq, head_dim / 2]`
    pub fn cos_sin(&self, positions: Tensor<B, 2, Int>, dtype: DType) -> RotaryAngles<B> {
        let [batch, seq] = positions.dims();
        let half = self.inv_freq.dims()[0];
        let pos = positions
            .float()
            .cast(FloatDType::F32)
            .reshape([batch, seq, 1]);
        let angles = pos.mul(self.inv_freq.clone().reshape([1, 1, half]));
        let cos = angles.clone().cos();
        let sin = angles.sin();
        if dtype == DType::F32 {
            RotaryAngles::new(cos, sin)
        } else {
            RotaryAngles::new(cos.cast(dtype), sin.cast(dtype))
        }
    }
}

/// The rotation angles of one forward pass, shared by its layers: cosines and sines per
/// frequency, and (built on first use, once per pass) both over the whole head width in the
/// layout the composite code multiplies with.
#[derive(Debug, Clone)]
pub struct RotaryAngles<B: Backend> {
    /// `[batch, seq, head_dim / 2]`.
    pub cos: Tensor<B, 3>,
    /// `[batch, seq, head_dim / 2]`.
    pub sin: Tensor<B, 3>,
    full: OnceCell<(Tensor<B, 4>, Tensor<B, 4>)>,
}

impl<B: Backend> RotaryAngles<B> {
    /// Angles from their cosines and sines, each `[batch, seq, head_dim / 2]`.
    pub fn new(cos: Tensor<B, 3>, sin: Tensor<B, 3>) -> Self {
        Self {
            cos,
            sin,
            full: OnceCell::new(),
        }
    }

    /// Cosines and sines over the whole head width (each half repeated), `[batch, seq, 1,
    /// head_dim]`; computed once per pass, so each layer's composite rotation is elementwise
    /// work only (on fusing backends, one fused kernel).
    fn full(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        self.full
            .get_or_init(|| {
                let both = |t: &Tensor<B, 3>| {
                    let [b, s, half] = t.dims();
                    Tensor::cat(vec![t.clone(), t.clone()], 2).reshape([b, s, 1, 2 * half])
                };
                (both(&self.cos), both(&self.sin))
            })
            .clone()
    }
}

/// `[x1, x2] → [−x2, x1]` over the last dimension.
///
/// # Shapes
/// - `x`: any 4-D shape → same
pub fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d - d / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

/// Rotates queries or keys: `x · cos + rotate_half(x) · sin`, with the fused kernel
/// ([`kernels::rotary`](crate::kernels::rotary)) where the backend has one, else
/// [`apply_rotary_composite`].
///
/// # Shapes
/// - `x`: `[batch, seq, heads, head_dim]`
/// - `angles`: `[batch, seq, head_dim / 2]` (see [`RotaryEmbedding::cos_sin`])
/// - returns `[batch, seq, heads, head_dim]`
pub fn apply_rotary<B: DecoderBackend>(x: Tensor<B, 4>, angles: &RotaryAngles<B>) -> Tensor<B, 4> {
    kernels::rotary(&x, &angles.cos, &angles.sin)
        .unwrap_or_else(|| apply_rotary_composite(x, angles))
}

/// [`apply_rotary`] as tensor operations: the reference the kernels are tested against.
///
/// # Shapes
/// As in [`apply_rotary`].
pub fn apply_rotary_composite<B: Backend>(
    x: Tensor<B, 4>,
    angles: &RotaryAngles<B>,
) -> Tensor<B, 4> {
    let shape = x.dims();
    let (cos, sin) = angles.full();
    x.clone()
        .mul(cos.expand(shape))
        .add(rotate_half(x).mul(sin.expand(shape)))
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
        let (b, s, h, d) = (2, 3, 2, 4);
        let inv = default_inv_freq(d, 10_000.0);
        let rope = RotaryEmbedding::<B>::new(&inv, &device);
        let xs: Vec<f32> = (0..b * h * s * d)
            .map(|i| ((i * 7 % 11) as f32) - 5.0)
            .collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(xs.clone(), [b, s, h, d]), &device);
        let positions = [[0i64, 1, 2], [0, 0, 5]];
        let pos = Tensor::<B, 2, Int>::from_data(TensorData::from(positions), &device);
        let angles = rope.cos_sin(pos, DType::F32);
        let got = apply_rotary_composite(x.clone(), &angles)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let fused = apply_rotary(x, &angles)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (g, f) in got.iter().zip(&fused) {
            assert!((g - f).abs() < 1e-6, "fused {f} vs composite {g}");
        }
        for (bi, row) in positions.iter().enumerate() {
            for hi in 0..h {
                for (si, &p) in row.iter().enumerate() {
                    let p = p as f64;
                    let base = ((bi * s + si) * h + hi) * d;
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
