//! Row-wise and elementwise decoder operations: RMSNorm, RoPE and the SwiGLU gate, each one
//! pass over its input with SIMD through pulp and rows in parallel through rayon.
//!
//! Each computes what the composite tensor code in [`crate::arch`] computes, in the same
//! order of operations per element; only sums (the RMSNorm mean square) are added in another
//! order, and the SwiGLU's `exp` is a polynomial (≈ 1 ulp).

use pulp::{Simd, WithSimd};
use rayon::prelude::*;
use sdpo_core::loss::fused::vmath::exp_nonpos;

/// Rows processed by one rayon task at least (below it, splitting costs more than it saves).
const ROWS_PER_TASK: usize = 16;

/// RMSNorm of each row of `x` (`rows × dim`, contiguous): `x / sqrt(mean(x²) + eps) · weight`,
/// the mean square in f32 like the composite code.
///
/// # Panics
/// If `x.len()` is not a multiple of `weight.len()`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f64) -> Vec<f32> {
    let dim = weight.len();
    assert!(
        dim > 0 && x.len().is_multiple_of(dim),
        "rms_norm: rows of {dim}"
    );
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(dim * ROWS_PER_TASK)
        .zip(x.par_chunks(dim * ROWS_PER_TASK))
        .for_each(|(out, x)| {
            for (out, x) in out.chunks_mut(dim).zip(x.chunks(dim)) {
                let sum = pulp::Arch::new().dispatch(SumSquares(x));
                let rms = (sum / dim as f32 + eps as f32).sqrt();
                for ((o, x), w) in out.iter_mut().zip(x).zip(weight) {
                    *o = x / rms * w;
                }
            }
        });
    out
}

/// `Σ x²` of a row in f32 lanes.
struct SumSquares<'a>(&'a [f32]);

impl WithSimd for SumSquares<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        let (head, tail) = S::as_simd_f32s(self.0);
        let mut acc = simd.splat_f32s(0.0);
        for &x in head {
            acc = simd.mul_add_f32s(x, x, acc);
        }
        simd.reduce_sum_f32s(acc) + tail.iter().map(|x| x * x).sum::<f32>()
    }
}

/// Rotary position embedding in the `rotate_half` layout on `x` laid out `[rows, heads,
/// head_dim]` (contiguous), one `(cos, sin)` row of `head_dim / 2` values per `x` row: for
/// `i < head_dim / 2`, `y₁ = x₁·cos − x₂·sin` and `y₂ = x₂·cos + x₁·sin` with `x₁ = x[i]`,
/// `x₂ = x[i + head_dim / 2]`.
///
/// # Panics
/// If `head_dim` is odd or the lengths do not fit `rows × heads × head_dim` with `cos` and
/// `sin` of `rows × head_dim / 2`.
pub fn rotary(x: &[f32], cos: &[f32], sin: &[f32], heads: usize, head_dim: usize) -> Vec<f32> {
    assert!(
        head_dim.is_multiple_of(2) && heads > 0,
        "rotary: head width {head_dim}"
    );
    let half = head_dim / 2;
    let row = heads * head_dim;
    let rows = x.len() / row.max(1);
    assert!(x.len() == rows * row, "rotary: rows of {row}");
    assert!(
        cos.len() == rows * half && sin.len() == rows * half,
        "rotary: angles"
    );
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(row * ROWS_PER_TASK)
        .zip(x.par_chunks(row * ROWS_PER_TASK))
        .enumerate()
        .for_each(|(task, (out, x))| {
            for (r, (out, x)) in out.chunks_mut(row).zip(x.chunks(row)).enumerate() {
                let at = (task * ROWS_PER_TASK + r) * half;
                let (c, s) = (&cos[at..at + half], &sin[at..at + half]);
                for (out, x) in out.chunks_mut(head_dim).zip(x.chunks(head_dim)) {
                    let (x1, x2) = x.split_at(half);
                    let (o1, o2) = out.split_at_mut(half);
                    for i in 0..half {
                        // The composite code's order: x·cos + rotate_half(x)·sin.
                        o1[i] = x1[i] * c[i] + (-x2[i]) * s[i];
                        o2[i] = x2[i] * c[i] + x1[i] * s[i];
                    }
                }
            }
        });
    out
}

/// `silu(gate) · up` elementwise, `silu(g) = g · sigmoid(g)`.
///
/// # Panics
/// If the lengths differ.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "swiglu: lengths");
    let mut out = vec![0f32; gate.len()];
    const CHUNK: usize = 1 << 14;
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(out, (gate, up))| pulp::Arch::new().dispatch(Swiglu { gate, up, out }));
    out
}

struct Swiglu<'a> {
    gate: &'a [f32],
    up: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for Swiglu<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (g, gt) = S::as_simd_f32s(self.gate);
        let (u, ut) = S::as_simd_f32s(self.up);
        let (o, ot) = S::as_mut_simd_f32s(self.out);
        for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
            *o = simd.mul_f32s(simd.mul_f32s(*g, sigmoid(simd, *g)), *u);
        }
        for ((o, g), u) in ot.iter_mut().zip(gt).zip(ut) {
            *o = g * sigmoid(pulp::Scalar::new(), *g) * u;
        }
    }
}

/// `1 / (1 + e^{−g})`, from `e = exp(−|g|) ≤ 1`: `1 / (1 + e)` for `g ≥ 0`, `e / (1 + e)`
/// below (no overflow either way).
#[inline(always)]
fn sigmoid<S: Simd>(simd: S, g: S::f32s) -> S::f32s {
    let zero = simd.splat_f32s(0.0);
    let e = exp_nonpos(simd, simd.neg_f32s(simd.abs_f32s(g)));
    let denominator = simd.add_f32s(simd.splat_f32s(1.0), e);
    let numerator = simd.select_f32s(
        simd.greater_than_or_equal_f32s(g, zero),
        simd.splat_f32s(1.0),
        e,
    );
    simd.div_f32s(numerator, denominator)
}
