//! The glue between a CPU backend's tensors and the kernels of [`cpu`]: read `f32` tensors
//! in place, run a kernel, wrap its output as the backend's tensor.

use burn::tensor::ops::{BoolTensor, FloatTensor, IntTensor};
use burn::tensor::{backend::Backend, Bool, DType, Tensor, TensorData, TensorMetadata};

use super::cpu::attention::{attention, AttentionShape};
use super::cpu::elementwise::{rms_norm, rotary, swiglu};
use super::cpu::matmul::{matmul, Rows, Weight};
use super::cpu::select::select;
use super::AttentionLayout;

/// Rows of `x` up to which [`cpu::matmul`] beats the backends' general product (measured on
/// the development machine: ahead up to 32 rows, behind from 64).
pub(crate) const MATMUL_MAX_ROWS: usize = 32;

/// A CPU tensor's `f32` elements read in place: `data[0]` is the first element; strides in
/// elements.
pub(crate) struct Host<'a> {
    pub data: &'a [f32],
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

impl Host<'_> {
    /// The elements in row-major order, when the layout is exactly that.
    pub(crate) fn contiguous(&self) -> Option<&[f32]> {
        let mut expected = 1;
        for (&dim, &stride) in self.shape.iter().zip(&self.strides).rev() {
            if dim > 1 && stride != expected {
                return None;
            }
            expected *= dim;
        }
        self.data.get(..expected)
    }

    /// A 2-D tensor as `[rows, cols]` rows with contiguous columns.
    fn rows(&self) -> Option<Rows<'_>> {
        let [rows, cols] = self.shape[..] else {
            return None;
        };
        let [row_stride, col_stride] = self.strides[..] else {
            return None;
        };
        (col_stride == 1 || cols <= 1)
            .then(|| Rows::new(self.data, rows, cols, row_stride.max(cols)))
            .flatten()
    }

    /// A 2-D tensor `[k, n]` whose transpose has contiguous rows (`[n, k]` storage).
    fn transposed_rows(&self) -> Option<Rows<'_>> {
        let [k, n] = self.shape[..] else {
            return None;
        };
        let [row_stride, col_stride] = self.strides[..] else {
            return None;
        };
        (row_stride == 1 || k <= 1)
            .then(|| Rows::new(self.data, n, k, col_stride.max(k)))
            .flatten()
    }
}

/// A CPU backend whose `f32` tensors the kernels read in place.
pub(crate) trait HostBackend: Backend {
    /// Runs `f` on `tensor`'s elements, or gives `None` when it is not `f32` or its layout
    /// cannot be read in place (negative strides, broadcast views on NdArray, ...).
    fn with_host<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(Host<'_>) -> R) -> Option<R>;
}

fn output<B: Backend>(values: Vec<f32>, shape: Vec<usize>, device: &B::Device) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(values, shape), device)
}

fn is_f32<B: Backend>(tensors: &[&FloatTensor<B>]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// [`DecoderBackend::fused_matmul`](super::DecoderBackend::fused_matmul) on a CPU backend.
pub(crate) fn fused_matmul<B: HostBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
) -> Option<FloatTensor<B>> {
    let [m, k] = x.shape().dims::<2>();
    let [k2, n] = weight.shape().dims::<2>();
    if m > MATMUL_MAX_ROWS || k != k2 || !is_f32::<B>(&[&x, &weight]) {
        return None;
    }
    let device = B::float_device(&x);
    let bias = match bias {
        Some(b) if b.shape().dims::<1>() == [n] => {
            Some(B::with_host(&b, |b| b.contiguous().map(<[f32]>::to_vec))??)
        }
        Some(_) => return None,
        None => None,
    };
    let out = B::with_host(&x, |x| {
        let x = x.rows()?;
        B::with_host(&weight, |w| {
            let w = match w.rows() {
                Some(rows) => Weight::InOut(rows),
                None => Weight::OutIn(w.transposed_rows()?),
            };
            Some(matmul(x, w, bias.as_deref()))
        })?
    })??;
    Some(output::<B>(out, vec![m, n], &device))
}

/// Copies `src` (`[batch, new, row]`) into `dst` (`[batch, capacity, row]`) at positions
/// `start .. start + new` of each batch row.
pub(crate) fn write_positions(
    dst: &mut [f32],
    src: &[f32],
    [batch, capacity, row]: [usize; 3],
    start: usize,
) {
    let new = src.len() / (batch * row).max(1);
    for b in 0..batch {
        let to = (b * capacity + start) * row;
        dst[to..to + new * row].copy_from_slice(&src[b * new * row..(b + 1) * new * row]);
    }
}

/// [`DecoderBackend::fused_rms_norm`](super::DecoderBackend::fused_rms_norm) on a CPU backend.
pub(crate) fn fused_rms_norm<B: HostBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    eps: f64,
) -> Option<FloatTensor<B>> {
    let shape = x.shape().to_vec();
    if !is_f32::<B>(&[&x, &weight]) || weight.shape().to_vec() != [*shape.last()?] {
        return None;
    }
    let device = B::float_device(&x);
    let out = B::with_host(&x, |x| {
        let x = x.contiguous()?;
        B::with_host(&weight, |w| Some(rms_norm(x, w.contiguous()?, eps)))?
    })??;
    Some(output::<B>(out, shape, &device))
}

/// [`DecoderBackend::fused_rotary`](super::DecoderBackend::fused_rotary) on a CPU backend.
pub(crate) fn fused_rotary<B: HostBackend>(
    x: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> Option<FloatTensor<B>> {
    let [batch, seq, heads, dim] = x.shape().dims::<4>();
    let angles = [batch, seq, dim / 2];
    if !is_f32::<B>(&[&x, &cos, &sin])
        || dim % 2 != 0
        || cos.shape().dims::<3>() != angles
        || sin.shape().dims::<3>() != angles
    {
        return None;
    }
    let device = B::float_device(&x);
    let out = B::with_host(&x, |x| {
        let x = x.contiguous()?;
        B::with_host(&cos, |c| {
            let c = c.contiguous()?;
            B::with_host(&sin, |s| Some(rotary(x, c, s.contiguous()?, heads, dim)))?
        })?
    })??;
    Some(output::<B>(out, vec![batch, seq, heads, dim], &device))
}

/// [`DecoderBackend::fused_attention`](super::DecoderBackend::fused_attention) on a CPU
/// backend.
pub(crate) fn fused_attention<B: HostBackend>(
    q: FloatTensor<B>,
    keys: FloatTensor<B>,
    values: FloatTensor<B>,
    key_mask: BoolTensor<B>,
    layout: AttentionLayout,
) -> Option<FloatTensor<B>> {
    let [batch, queries, heads, head_dim] = q.shape().dims::<4>();
    let [kb, capacity, kv_heads, kd] = keys.shape().dims::<4>();
    if !is_f32::<B>(&[&q, &keys, &values])
        || kb != batch
        || kd != head_dim
        || values.shape().dims::<4>() != [kb, capacity, kv_heads, kd]
    {
        return None;
    }
    let shape = AttentionShape {
        batch,
        queries,
        heads,
        kv_heads,
        head_dim,
        keys: layout.keys,
        capacity,
        window: layout.window,
        scale: layout.scale as f32,
    };
    let mask: Vec<bool> = Tensor::<B, 2, Bool>::from_primitive(key_mask)
        .into_data()
        .iter::<bool>()
        .collect();
    let device = B::float_device(&q);
    let out = B::with_host(&q, |q| {
        let q = q.contiguous()?;
        B::with_host(&keys, |k| {
            let k = k.contiguous()?;
            B::with_host(&values, |v| {
                let v = v.contiguous()?;
                shape
                    .fits(q.len(), k.len(), v.len(), mask.len())
                    .then(|| attention(q, k, v, &mask, shape))
            })?
        })?
    })??;
    Some(output::<B>(
        out,
        vec![batch, queries, heads, head_dim],
        &device,
    ))
}

/// [`DecoderBackend::fused_swiglu`](super::DecoderBackend::fused_swiglu) on a CPU backend.
pub(crate) fn fused_swiglu<B: HostBackend>(
    gate: FloatTensor<B>,
    up: FloatTensor<B>,
) -> Option<FloatTensor<B>> {
    let shape = gate.shape().to_vec();
    if !is_f32::<B>(&[&gate, &up]) || up.shape().to_vec() != shape {
        return None;
    }
    let device = B::float_device(&gate);
    let out = B::with_host(&gate, |g| {
        let g = g.contiguous()?;
        B::with_host(&up, |u| Some(swiglu(g, u.contiguous()?)))?
    })??;
    Some(output::<B>(out, shape, &device))
}

/// [`DecoderBackend::fused_select`](super::DecoderBackend::fused_select) on a CPU backend.
pub(crate) fn fused_select<B: HostBackend>(
    logits: FloatTensor<B>,
    temperature: Option<f64>,
    uniforms: Option<&[f32]>,
) -> Option<(IntTensor<B>, FloatTensor<B>)> {
    let [batch, vocab] = logits.shape().dims::<2>();
    if !is_f32::<B>(&[&logits]) || vocab == 0 {
        return None;
    }
    let temperature = temperature.map(|t| t as f32);
    if temperature.is_some() && uniforms.map(<[f32]>::len) != Some(batch) {
        return None;
    }
    let device = B::float_device(&logits);
    let choices = B::with_host(&logits, |l| {
        Some(select(l.contiguous()?, vocab, temperature, uniforms))
    })??;
    let ids: Vec<i64> = choices.iter().map(|c| c.id).collect();
    let log_probs: Vec<f32> = choices.iter().map(|c| c.log_prob).collect();
    Some((
        B::int_from_data(
            TensorData::new(ids, [batch]).convert::<B::IntElem>(),
            &device,
        ),
        output::<B>(log_probs, vec![batch], &device),
    ))
}

/// The CPU kernels as the methods of a [`DecoderBackend`](super::DecoderBackend) impl.
macro_rules! host_decoder_kernels {
    () => {
        fn fused_matmul(
            x: burn::tensor::ops::FloatTensor<Self>,
            weight: burn::tensor::ops::FloatTensor<Self>,
            bias: Option<burn::tensor::ops::FloatTensor<Self>>,
        ) -> Option<burn::tensor::ops::FloatTensor<Self>> {
            $crate::kernels::host::fused_matmul::<Self>(x, weight, bias)
        }

        fn fused_rms_norm(
            x: burn::tensor::ops::FloatTensor<Self>,
            weight: burn::tensor::ops::FloatTensor<Self>,
            eps: f64,
        ) -> Option<burn::tensor::ops::FloatTensor<Self>> {
            $crate::kernels::host::fused_rms_norm::<Self>(x, weight, eps)
        }

        fn fused_rotary(
            x: burn::tensor::ops::FloatTensor<Self>,
            cos: burn::tensor::ops::FloatTensor<Self>,
            sin: burn::tensor::ops::FloatTensor<Self>,
        ) -> Option<burn::tensor::ops::FloatTensor<Self>> {
            $crate::kernels::host::fused_rotary::<Self>(x, cos, sin)
        }

        fn fused_attention(
            q: burn::tensor::ops::FloatTensor<Self>,
            keys: burn::tensor::ops::FloatTensor<Self>,
            values: burn::tensor::ops::FloatTensor<Self>,
            key_mask: burn::tensor::ops::BoolTensor<Self>,
            layout: $crate::kernels::AttentionLayout,
        ) -> Option<burn::tensor::ops::FloatTensor<Self>> {
            $crate::kernels::host::fused_attention::<Self>(q, keys, values, key_mask, layout)
        }

        fn fused_swiglu(
            gate: burn::tensor::ops::FloatTensor<Self>,
            up: burn::tensor::ops::FloatTensor<Self>,
        ) -> Option<burn::tensor::ops::FloatTensor<Self>> {
            $crate::kernels::host::fused_swiglu::<Self>(gate, up)
        }

        fn fused_select(
            logits: burn::tensor::ops::FloatTensor<Self>,
            temperature: Option<f64>,
            uniforms: Option<&[f32]>,
        ) -> Option<(
            burn::tensor::ops::IntTensor<Self>,
            burn::tensor::ops::FloatTensor<Self>,
        )> {
            $crate::kernels::host::fused_select::<Self>(logits, temperature, uniforms)
        }
    };
}

pub(crate) use host_decoder_kernels;
