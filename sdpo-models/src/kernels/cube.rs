//! The attention kernel of [`DecoderBackend`](super::DecoderBackend) for Burn's CubeCL
//! backends (Wgpu, Cuda): one cube per (row, query, head), keys in blocks of the cube's
//! width with an online softmax, so nothing `[keys]`-sized is written to device memory and
//! key/value heads are read where they are, never repeated.
//!
//! Per block: each thread scores one key (its dot product with the query, or "not visible"),
//! the cube takes the block's maximum and the sum of the rescaled weights by tree reductions
//! in shared memory, and each thread accumulates one output dimension over the block's
//! values. Visibility is that of [`crate::arch::attention_mask`]: a query sees itself and the
//! real keys before it within the window.

// The `#[cube]` language: a comptime condition cannot merge with a runtime one, and it has
// neither every compound assignment nor `div_ceil`.
#![allow(clippy::assign_op_pattern, clippy::manual_div_ceil)]

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
    CubeRuntime,
};
use cubecl::prelude::*;

use super::AttentionLayout;

/// The largest cube width used (and the largest head width the kernel takes).
const MAX_THREADS: u32 = 256;

/// The shapes of one launch.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct AttentionDims {
    /// Cubes launched: batch · queries · heads.
    pub cubes: u32,
    /// Query heads.
    pub heads: u32,
    /// New tokens per row.
    pub queries: u32,
    /// Query heads per key/value head.
    pub group: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// Width of a head.
    pub head_dim: u32,
    /// Filled key positions.
    pub keys: u32,
    /// Positions allocated per row in the key/value buffers.
    pub capacity: u32,
    /// Sliding window (0: none).
    pub window: u32,
    /// Factor on the scores.
    pub scale: f32,
}

/// The largest finite `f32`, negated (WGSL has no `-inf` literal).
#[cube]
fn lowest() -> f32 {
    f32::reinterpret(0xff7f_ffffu32)
}

/// The sum (or, with `max`, the maximum) of `value` over the cube: a tree in `shared`
/// (`CUBE_DIM_X` a power of two), the result read by every thread.
#[cube]
fn cube_reduce(shared: &mut SharedMemory<f32>, value: f32, #[comptime] max: bool) -> f32 {
    let tid = UNIT_POS_X as usize;
    shared[tid] = value;
    sync_cube();
    let mut stride = (CUBE_DIM_X / 2) as usize;
    while stride > 0 {
        if tid < stride {
            let (a, b) = (shared[tid], shared[tid + stride]);
            if comptime![max] {
                shared[tid] = if a > b { a } else { b };
            } else {
                shared[tid] = a + b;
            }
        }
        sync_cube();
        stride = stride / 2;
    }
    let out = shared[0];
    sync_cube();
    out
}

/// One cube per (row, query, head): causal grouped-query attention over the key/value
/// buffers (see the module docs).
#[cube(launch)]
pub fn attention_kernel<I: Int>(
    q: &Tensor<f32>,
    keys: &Tensor<f32>,
    values: &Tensor<f32>,
    mask: &Tensor<I>,
    out: &mut Tensor<f32>,
    dims: &AttentionDims,
    #[comptime] block: u32,
    #[define(I)] _dtype: StorageType,
) {
    let cube = CUBE_POS;
    if cube >= dims.cubes as usize {
        terminate!();
    }
    let tid = UNIT_POS_X as usize;
    let heads = dims.heads as usize;
    let queries = dims.queries as usize;
    let d = dims.head_dim as usize;
    let h = cube % heads;
    let i = (cube / heads) % queries;
    let b = cube / (heads * queries);
    let kv_head = h / (dims.group as usize);
    let n_keys = dims.keys as usize;
    let at = n_keys - queries + i;
    let mut oldest = 0usize;
    if dims.window > 0 && at + 1 > dims.window as usize {
        oldest = at + 1 - dims.window as usize;
    }
    let q_base = ((b * queries + i) * heads + h) * d;
    let row_stride = (dims.kv_heads as usize) * d;
    let kv_base = b * (dims.capacity as usize) * row_stride + kv_head * d;

    let mut weights = SharedMemory::<f32>::new(block as usize);
    let mut reduce = SharedMemory::<f32>::new(block as usize);
    let mut running_max = lowest();
    let mut total = f32::new(0.0);
    let mut acc = f32::new(0.0);
    let mut start = 0usize;
    while start <= at {
        let j = start + tid;
        let mut score = lowest();
        if j <= at {
            let real = mask[b * n_keys + j] != I::new(0);
            if j == at || (j >= oldest && real) {
                let key = kv_base + j * row_stride;
                let mut dot = f32::new(0.0);
                for x in 0..d {
                    dot += q[q_base + x] * keys[key + x];
                }
                score = dot * dims.scale;
            }
        }
        let block_max = cube_reduce(&mut reduce, score, true);
        let new_max = if block_max > running_max {
            block_max
        } else {
            running_max
        };
        let mut weight = f32::new(0.0);
        if score > lowest() {
            weight = (score - new_max).exp();
        }
        weights[tid] = weight;
        let block_sum = cube_reduce(&mut reduce, weight, false);
        let rescale = (running_max - new_max).exp();
        total = total * rescale + block_sum;
        acc = acc * rescale;
        if tid < d {
            for t in 0..block as usize {
                let jj = start + t;
                if jj <= at {
                    acc += weights[t] * values[kv_base + jj * row_stride + tid];
                }
            }
        }
        sync_cube();
        running_max = new_max;
        start += block as usize;
    }
    if tid < d {
        out[q_base + tid] = acc / total;
    }
}

/// Whether the kernel takes these tensors (decided from metadata, so Burn's lazy fusion can
/// ask before anything runs): `f32` queries, keys and values of fitting shapes, heads no
/// wider than [`MAX_THREADS`].
pub(crate) fn accepts(
    q: &Shape,
    keys: &Shape,
    values: &Shape,
    floats: [DType; 3],
    layout: AttentionLayout,
) -> bool {
    if q.num_dims() != 4 || keys.num_dims() != 4 {
        return false;
    }
    let [b, s, heads, d] = q.dims::<4>();
    let [kb, capacity, kv_heads, kd] = keys.dims::<4>();
    let fits = |x: usize| u32::try_from(x).is_ok();
    floats == [DType::F32; 3]
        && keys == values
        && kb == b
        && kd == d
        && d > 0
        && d <= MAX_THREADS as usize
        && kv_heads > 0
        && heads % kv_heads == 0
        && layout.keys >= s
        && layout.keys <= capacity
        && fits(b * s * heads)
        && fits(b * capacity * kv_heads * d)
}

/// Launches the kernel (`None` where [`accepts`] refuses: the composite code runs then).
/// `mask` is the key mask as an int tensor, `[batch, keys]`.
pub(crate) fn launch<R: CubeRuntime>(
    q: CubeTensor<R>,
    keys: CubeTensor<R>,
    values: CubeTensor<R>,
    mask: CubeTensor<R>,
    layout: AttentionLayout,
) -> Option<CubeTensor<R>> {
    if !accepts(
        &q.shape(),
        &keys.shape(),
        &values.shape(),
        [q.dtype, keys.dtype, values.dtype],
        layout,
    ) {
        return None;
    }
    let [b, s, heads, d] = q.shape().dims::<4>();
    let [_, capacity, kv_heads, _] = keys.shape().dims::<4>();
    let [q, keys, values, mask] = [q, keys, values, mask].map(into_contiguous);
    let client = q.client.clone();
    let out =
        empty_device_contiguous_dtype::<R>(client.clone(), q.device.clone(), q.shape(), DType::F32);
    let hardware = client.properties().hardware.max_cube_dim.0.max(1);
    // A power of two covering the head width (one thread per output dimension).
    let threads = (d.next_power_of_two() as u32)
        .clamp(32, MAX_THREADS)
        .min(1 << (31 - hardware.leading_zeros()));
    if (threads as usize) < d {
        return None;
    }
    let cubes = (b * s * heads) as u32;
    let x = cubes.min(65_535);
    let dims = AttentionDimsLaunch::new(
        cubes,
        heads as u32,
        s as u32,
        (heads / kv_heads) as u32,
        kv_heads as u32,
        d as u32,
        layout.keys as u32,
        capacity as u32,
        layout.window.map_or(0, |w| w as u32),
        layout.scale as f32,
    );
    let int: StorageType = mask.dtype.into();
    attention_kernel::launch::<R>(
        &client,
        CubeCount::Static(x, cubes.div_ceil(x), 1),
        CubeDim::new_1d(threads),
        q.into_tensor_arg(),
        keys.into_tensor_arg(),
        values.into_tensor_arg(),
        mask.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        dims,
        threads,
        int,
    );
    Some(out)
}
