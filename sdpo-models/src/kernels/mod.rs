//! Fused decoder kernels: a Burn backend extension, [`DecoderBackend`].
//!
//! The decoder's forward ([`crate::arch`]) is composite tensor code: every norm, rotation,
//! attention and gate is a chain of Burn operations, each reading and writing its whole
//! input, and grouped-query attention repeats every key and value head for its query heads.
//! A backend that implements [`DecoderBackend`] with kernels runs each of these as one pass:
//!
//! | operation | what the kernel saves |
//! | --- | --- |
//! | [`DecoderBackend::fused_matmul`] | few-row products at the memory limit of reading the weight once (a decode step's projections and output head) |
//! | [`DecoderBackend::fused_rms_norm`] | one pass per row instead of five operations |
//! | [`DecoderBackend::fused_rotary`] | RoPE on the projections' own layout, no `rotate_half` copies |
//! | [`DecoderBackend::fused_attention`] | attention straight from the key/value cache: no repeated heads, no score tensor, no transposes |
//! | [`DecoderBackend::fused_swiglu`] | `silu(gate) · up` in one pass |
//! | [`DecoderBackend::fused_select`] | the argmax or the draw over a row of logits in two passes |
//!
//! Every method has a default that answers `None`: the caller then runs the composite code,
//! which stays the reference the kernels are tested against (the backend suite,
//! `tests/backends/kernels.rs`). Implemented: NdArray and Flex (features `ndarray` / `flex`:
//! the CPU kernels of [`cpu`] on the tensors' memory, SIMD through pulp, rows through rayon),
//! the CubeCL backends and Burn's fusion wrapper over them (features `cubecl` / `fusion`:
//! Wgpu, Cuda; the attention kernel, everything else composite, which Burn's fusion compiles
//! into fused kernels of its own), and `Autodiff<B>` (composite, so training differentiates
//! through it). Kernels run for `f32` tensors; other dtypes take the composite path.

pub mod cpu;

mod backends;
#[cfg(feature = "cubecl")]
mod cube;
#[cfg(feature = "fusion")]
mod fusion;
#[cfg(any(feature = "ndarray", feature = "flex"))]
mod host;

use burn::tensor::ops::{BoolTensor, FloatTensor, IntTensor};
use burn::tensor::{backend::Backend, Bool, DType, Int, Shape, Tensor, TensorPrimitive};

/// The grouped-query attention of one decoder layer as [`DecoderBackend::fused_attention`]
/// takes it: which key positions exist and which each query sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionLayout {
    /// Filled key positions (cached + new); the `queries` new tokens are the last of them.
    pub keys: usize,
    /// Keys `window` or more positions before a query are not visible to it (sliding-window
    /// attention).
    pub window: Option<usize>,
    /// Factor on the scores (`1 / √head_dim`).
    pub scale: f64,
}

/// A Burn backend as the decoder needs it: with fused kernels where it has them. The default
/// methods answer `None` ("no kernel for these tensors"), and the decoder runs its composite
/// tensor code; a backend with kernels overrides them.
///
/// Implemented for NdArray and Flex (CPU kernels), the CubeCL backends and their fusion
/// wrapper (Wgpu, Cuda: the attention kernel), and `Autodiff<B>` over any implementor (the
/// composite code, which autodiff differentiates). A backend of your own implements it with
/// an empty `impl` to use the composite code everywhere.
pub trait DecoderBackend: Backend {
    /// `x · weight (+ bias)` for `x` `[m, k]`, `weight` `[k, n]` (any 2-D layout; a
    /// transposed view of an `[n, k]` matrix is read as such), `bias` `[n]`, when `m` is small
    /// enough for the kernel to beat the backend's general matrix product.
    fn fused_matmul(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> Option<FloatTensor<Self>> {
        let _ = (x, weight, bias);
        None
    }

    /// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · weight`, `weight` `[d]`.
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> Option<FloatTensor<Self>> {
        let _ = (x, weight, eps);
        None
    }

    /// Rotary position embedding (`rotate_half` layout) of `x` `[batch, seq, heads,
    /// head_dim]` with `cos`, `sin` `[batch, seq, head_dim / 2]`.
    fn fused_rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>> {
        let _ = (x, cos, sin);
        None
    }

    /// Causal grouped-query attention of `q` `[batch, queries, heads, head_dim]` over the
    /// first `layout.keys` positions of `keys` and `values` `[batch, capacity, kv_heads,
    /// head_dim]`; `key_mask` `[batch, layout.keys]` is `true` on real keys. A query sees
    /// itself and the real keys before it (within the window); the output is `[batch,
    /// queries, heads, head_dim]`.
    fn fused_attention(
        q: FloatTensor<Self>,
        keys: FloatTensor<Self>,
        values: FloatTensor<Self>,
        key_mask: BoolTensor<Self>,
        layout: AttentionLayout,
    ) -> Option<FloatTensor<Self>> {
        let _ = (q, keys, values, key_mask, layout);
        None
    }

    /// Writes `values` `[batch, new, heads, head_dim]` into `buffer` `[batch, capacity,
    /// heads, head_dim]` at positions `start .. start + new` of dimension 1, in place
    /// (a key/value cache append). `Err` gives both tensors back when this backend has no
    /// in-place write for them (the buffer is shared, or not `f32`); the caller then uses
    /// Burn's `slice_assign`, which on most backends is in place too.
    #[allow(clippy::type_complexity)]
    fn fused_write_positions(
        buffer: FloatTensor<Self>,
        start: usize,
        values: FloatTensor<Self>,
    ) -> Result<FloatTensor<Self>, (FloatTensor<Self>, FloatTensor<Self>)> {
        let _ = start;
        Err((buffer, values))
    }

    /// Whether [`Self::fused_attention`] runs a kernel for tensors with these shapes and
    /// dtypes (`[q, keys, values]`), decided from metadata alone: a lazy wrapper (Burn's
    /// fusion) asks before anything runs, so an implementor answers exactly as its kernel
    /// will. `false` by default.
    fn fused_attention_accepts(
        q: &Shape,
        keys: &Shape,
        values: &Shape,
        floats: [DType; 3],
        layout: AttentionLayout,
    ) -> bool {
        let _ = (q, keys, values, floats, layout);
        false
    }

    /// `silu(gate) · up`, elementwise.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        let _ = (gate, up);
        None
    }

    /// One token per row of `logits` `[batch, vocab]` as [`crate::generate::select_tokens`]
    /// chooses it without top-k, top-p or min-p: the argmax when `temperature` is `None`, else
    /// the draw at that temperature over the whole vocabulary at `uniforms[row]`. Returns
    /// `(ids [batch], log_probs [batch])`, id `−1` for a row with a non-finite logit.
    fn fused_select(
        logits: FloatTensor<Self>,
        temperature: Option<f64>,
        uniforms: Option<&[f32]>,
    ) -> Option<(IntTensor<Self>, FloatTensor<Self>)> {
        let _ = (logits, temperature, uniforms);
        None
    }
}

thread_local! {
    static COMPOSITE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the fused kernels off on this thread: every operation of the decoder takes
/// its composite path, as on a backend without kernels. For comparing the two paths (tests,
/// benchmarks) and for ruling a kernel out when a result looks wrong.
pub fn composite_only<R>(f: impl FnOnce() -> R) -> R {
    let before = COMPOSITE_ONLY.with(|c| c.replace(true));
    let out = f();
    COMPOSITE_ONLY.with(|c| c.set(before));
    out
}

/// Whether the kernels may run on this thread (not inside [`composite_only`]).
fn enabled() -> bool {
    !COMPOSITE_ONLY.with(std::cell::Cell::get)
}

fn float<B: Backend, const D: usize>(t: &Tensor<B, D>) -> FloatTensor<B> {
    t.clone().into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// [`DecoderBackend::fused_matmul`] on tensors.
pub fn matmul<B: DecoderBackend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, 2>> {
    if !enabled() {
        return None;
    }
    B::fused_matmul(float(x), float(weight), bias.map(float)).map(tensor)
}

/// [`DecoderBackend::fused_rms_norm`] on tensors.
pub fn rms_norm<B: DecoderBackend, const D: usize>(
    x: &Tensor<B, D>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Option<Tensor<B, D>> {
    if !enabled() {
        return None;
    }
    B::fused_rms_norm(float(x), float(weight), eps).map(tensor)
}

/// [`DecoderBackend::fused_rotary`] on tensors.
pub fn rotary<B: DecoderBackend>(
    x: &Tensor<B, 4>,
    cos: &Tensor<B, 3>,
    sin: &Tensor<B, 3>,
) -> Option<Tensor<B, 4>> {
    if !enabled() {
        return None;
    }
    B::fused_rotary(float(x), float(cos), float(sin)).map(tensor)
}

/// [`DecoderBackend::fused_attention`] on tensors.
pub fn attention<B: DecoderBackend>(
    q: &Tensor<B, 4>,
    keys: &Tensor<B, 4>,
    values: &Tensor<B, 4>,
    key_mask: &Tensor<B, 2, Bool>,
    layout: AttentionLayout,
) -> Option<Tensor<B, 4>> {
    if !enabled() {
        return None;
    }
    B::fused_attention(
        float(q),
        float(keys),
        float(values),
        key_mask.clone().into_primitive(),
        layout,
    )
    .map(tensor)
}

/// [`DecoderBackend::fused_write_positions`] on tensors, with Burn's `slice_assign` where the
/// backend has no in-place write: `buffer` with `values` written at positions `start ..`.
///
/// # Shapes
/// - `buffer`: `[batch, capacity, heads, head_dim]`; `values`: `[batch, new, heads,
///   head_dim]` with `start + new ≤ capacity`
pub fn write_positions<B: DecoderBackend>(
    buffer: Tensor<B, 4>,
    start: usize,
    values: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [batch, new, heads, dim] = values.dims();
    if !enabled() {
        return buffer.slice_assign([0..batch, start..start + new, 0..heads, 0..dim], values);
    }
    match B::fused_write_positions(
        buffer.into_primitive().tensor(),
        start,
        values.into_primitive().tensor(),
    ) {
        Ok(written) => tensor(written),
        Err((buffer, values)) => tensor::<B, 4>(buffer).slice_assign(
            [0..batch, start..start + new, 0..heads, 0..dim],
            tensor(values),
        ),
    }
}

/// [`DecoderBackend::fused_swiglu`] on tensors.
pub fn swiglu<B: DecoderBackend, const D: usize>(
    gate: &Tensor<B, D>,
    up: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    if !enabled() {
        return None;
    }
    B::fused_swiglu(float(gate), float(up)).map(tensor)
}

/// [`DecoderBackend::fused_select`] on tensors: `(ids, log_probs)`, each `[batch]`.
pub fn select<B: DecoderBackend>(
    logits: &Tensor<B, 2>,
    temperature: Option<f64>,
    uniforms: Option<&[f32]>,
) -> Option<(Tensor<B, 1, Int>, Tensor<B, 1>)> {
    if !enabled() {
        return None;
    }
    B::fused_select(float(logits), temperature, uniforms)
        .map(|(ids, log_probs)| (Tensor::from_primitive(ids), tensor(log_probs)))
}
