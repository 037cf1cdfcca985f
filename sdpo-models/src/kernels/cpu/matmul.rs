//! Matrix products with few rows (`x · W` for a decode step's hidden states), at the memory
//! limit of reading `W` once.
//!
//! A general GEMM packs both operands and blocks for large `m`; with a handful of rows it
//! spends more time packing `W` than multiplying (Burn's Flex reached 27 GFLOP/s at 16 rows on
//! the development machine, a sixth of the FMA units' peak). Here each task owns a range of
//! output columns and walks `W` in blocks of rows that stay in the L1 cache while every group
//! of `x` rows is multiplied against them, accumulating in registers: `W` streams from memory
//! once, `x` and the output stay in cache.
//!
//! Two layouts of `W`: `[k, n]` with contiguous rows (a Burn `Linear` weight: `x · W`), and
//! `[n, k]` with contiguous rows (an embedding matrix used as the tied output head:
//! `x · Wᵀ`, dot products along `k` for a few rows, and `W · xᵀ` in the register tiles of
//! the first layout once the rows fill half a vector). Rows of `x` are contiguous; the output
//! is `[m, n]`. SIMD through pulp's run-time dispatch (AVX-512, AVX2+FMA, SSE, NEON, scalar),
//! tasks through rayon.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::{prefetch_lines, L2, NEAR};

/// A row-major matrix view: row `i` is `data[i * stride .. i * stride + cols]`.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// The elements, from the first row's start.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns (contiguous).
    pub cols: usize,
    /// Distance between the starts of two rows (`≥ cols`).
    pub stride: usize,
}

impl<'a> Rows<'a> {
    /// A view, or `None` when `data` is too short for the shape or `stride < cols`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Option<Self> {
        let needed = match rows {
            0 => 0,
            r => (r - 1).checked_mul(stride)?.checked_add(cols)?,
        };
        (stride >= cols && data.len() >= needed).then_some(Self {
            data,
            rows,
            cols,
            stride,
        })
    }

    /// Row `i`.
    fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.stride..i * self.stride + self.cols]
    }
}

/// The weight of a product: `x · W` with `W` stored `[k, n]`, or `x · Wᵀ` with `W` stored
/// `[n, k]`.
#[derive(Debug, Clone, Copy)]
pub enum Weight<'a> {
    /// `[k, n]`, rows contiguous: `y = x · W`.
    InOut(Rows<'a>),
    /// `[n, k]`, rows contiguous: `y = x · Wᵀ`.
    OutIn(Rows<'a>),
}

impl Weight<'_> {
    /// `(k, n)`.
    fn dims(&self) -> (usize, usize) {
        match self {
            Weight::InOut(w) => (w.rows, w.cols),
            Weight::OutIn(w) => (w.cols, w.rows),
        }
    }
}

/// `y = x · W (+ bias)`, `[m, n]` row-major.
///
/// # Panics
/// If the inner dimensions or the bias length do not match (the callers check shapes).
pub fn matmul(x: Rows<'_>, w: Weight<'_>, bias: Option<&[f32]>) -> Vec<f32> {
    let (k, n) = w.dims();
    assert_eq!(x.cols, k, "matmul: inner dimensions");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "matmul: bias length");
    }
    let m = x.rows;
    let mut out = match w {
        Weight::InOut(w) => in_out(x, w),
        Weight::OutIn(w) => out_in(x, w),
    };
    if let Some(b) = bias {
        for row in out.chunks_mut(n) {
            row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
        }
    }
    debug_assert_eq!(out.len(), m * n);
    out
}

/// How many tasks share `work` multiply-adds: one below a size where splitting costs more
/// than it saves, else two per thread.
fn task_count(work: usize, units: usize) -> usize {
    if work < 1 << 17 {
        1
    } else {
        (rayon::current_num_threads() * 2).clamp(1, units.max(1))
    }
}

/// `x · W` for `W` stored `[k, n]`: tasks own contiguous ranges of W's rows (so each reads
/// one contiguous stretch of memory, front to back) and their partial products are summed.
fn in_out(x: Rows<'_>, w: Rows<'_>) -> Vec<f32> {
    in_out_blocked(x, w, block_rows(x.rows))
}

/// Rows of W per block in [`in_out`] for `m` rows of x. A block's column tiles stay in L1
/// while every row group of x passes over them, so with many rows a long block saves reloading
/// the output tile; with up to 4 rows the product is bound by reading W, and a short block
/// keeps those reads to few streams of consecutive memory (measured on the development
/// machine by `matmul_throughput` below: 16 rows per block read W 20–40% faster than 64 at 1
/// row, the same at 16 rows).
fn block_rows(m: usize) -> usize {
    if m <= 4 {
        16
    } else {
        64
    }
}

/// [`in_out`] with blocks of `kc` rows of W.
fn in_out_blocked(x: Rows<'_>, w: Rows<'_>, kc: usize) -> Vec<f32> {
    let (m, k, n) = (x.rows, w.rows, w.cols);
    if m == 0 || n == 0 {
        return vec![0f32; m * n];
    }
    let tasks = task_count(m * n * k, k.div_ceil(64));
    let span = k.div_ceil(tasks);
    let ranges: Vec<(usize, usize)> = (0..k)
        .step_by(span.max(1))
        .map(|r| (r, (r + span).min(k)))
        .collect();
    let mut partials: Vec<Vec<f32>> = ranges
        .par_iter()
        .map(|&(k0, k1)| {
            let mut part = vec![0f32; m * n];
            pulp::Arch::new().dispatch(InOutTask {
                x,
                w,
                k0,
                k1,
                kc,
                out: &mut part,
            });
            part
        })
        .collect();
    let mut out = partials.swap_remove(0);
    for part in &partials {
        out.iter_mut().zip(part).for_each(|(y, p)| *y += p);
    }
    out
}

/// Rows `k0..k1` of W (and the matching columns of x) times x, summed into `out`
/// (`[m, n]`).
struct InOutTask<'a, 'b> {
    x: Rows<'a>,
    w: Rows<'a>,
    k0: usize,
    k1: usize,
    kc: usize,
    out: &'b mut [f32],
}

impl WithSimd for InOutTask<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // Register tiles of 6 or 4 rows of x by NR vectors of columns (`row_groups`): the
        // accumulators, NR loads of W and one broadcast of x stay within the register file.
        if S::REGISTER_COUNT >= 32 {
            in_out_rows::<S, 4>(simd, self);
        } else {
            in_out_rows::<S, 2>(simd, self);
        }
    }
}

/// The task body: blocks of `kc` rows of W; within a block, column tiles of `NR` vectors
/// left to right, each against every group of 4 (then 1) rows of x.
#[inline(always)]
fn in_out_rows<S: Simd, const NR: usize>(simd: S, mut t: InOutTask<'_, '_>) {
    let lanes = S::F32_LANES;
    let (m, n) = (t.x.rows, t.w.cols);
    let kc = t.kc.max(1);
    for kb in (t.k0..t.k1).step_by(kc) {
        let ke = (kb + kc).min(t.k1);
        let mut j = 0;
        while j + NR * lanes <= n {
            row_groups::<S, NR>(simd, &mut t, j, kb, ke);
            j += NR * lanes;
        }
        while j + lanes <= n {
            row_groups::<S, 1>(simd, &mut t, j, kb, ke);
            j += lanes;
        }
        for col in j..n {
            for i in 0..m {
                let x = &t.x.row(i)[kb..ke];
                let acc: f32 = (kb..ke)
                    .zip(x)
                    .map(|(kk, xv)| xv * t.w.data[kk * t.w.stride + col])
                    .sum();
                t.out[i * n + col] += acc;
            }
        }
    }
}

/// Every group of 6 (with 32 vector registers), then 4, then 1 rows of `x` against the column
/// tile of `NR` vectors at column `j`, over W rows `kb..ke`.
#[inline(always)]
fn row_groups<S: Simd, const NR: usize>(
    simd: S,
    t: &mut InOutTask<'_, '_>,
    j: usize,
    kb: usize,
    ke: usize,
) {
    let (m, n) = (t.x.rows, t.w.cols);
    let lanes = S::F32_LANES;
    // Bounds, checked once for the raw reads below.
    assert!(j + NR * lanes <= n && ke <= t.x.cols && ke <= t.w.rows);
    assert!(t.out.len() >= m * n);
    let w = t.w.data[kb * t.w.stride + j..].as_ptr();
    let out = t.out.as_mut_ptr();
    let mut i = 0;
    // 6 rows by NR = 4 vectors: 24 accumulators, 4 loads of W and a broadcast of x fit in 32
    // registers; each W vector serves 6 rows instead of 4 (measured with AVX-512 at 16 rows:
    // 114-140 GFLOP/s against 86-119 with 4-row groups).
    while S::REGISTER_COUNT >= 32 && i + 6 <= m {
        // SAFETY: the asserts above bound every offset the tile reads or writes.
        unsafe { tile_at::<S, 6, NR>(simd, t.x, (w, t.w.stride), (out, n), i, j, kb..ke) };
        i += 6;
    }
    while i + 4 <= m {
        // SAFETY: as above.
        unsafe { tile_at::<S, 4, NR>(simd, t.x, (w, t.w.stride), (out, n), i, j, kb..ke) };
        i += 4;
    }
    while i < m {
        // SAFETY: as above.
        unsafe { tile_at::<S, 1, NR>(simd, t.x, (w, t.w.stride), (out, n), i, j, kb..ke) };
        i += 1;
    }
}

/// [`tile`] for rows `i .. i + MR` of `x`, the column tile at `j` of W (`w` points at row
/// `ks.start`, column `j`; rows `ws` apart) and W rows `ks`, into `out` (`[m, n]`). The first
/// row group (`i = 0`) asks for W's lines ahead (the next column tile, and this one in the
/// next block of `ks.len()` rows); the later groups read the same lines of W from L1.
///
/// # Safety
/// As [`tile`]'s, for those rows, columns and W rows (what [`row_groups`] asserts).
#[inline(always)]
unsafe fn tile_at<S: Simd, const MR: usize, const NR: usize>(
    simd: S,
    x: Rows<'_>,
    (w, ws): (*const f32, usize),
    (out, n): (*mut f32, usize),
    i: usize,
    j: usize,
    ks: std::ops::Range<usize>,
) {
    let xi = x.data[i * x.stride + ks.start..].as_ptr();
    let w_ahead = (i == 0).then_some(ks.len() * ws);
    // SAFETY: the caller's bounds.
    unsafe {
        tile::<S, MR, NR, false>(
            simd,
            xi,
            x.stride,
            w,
            ws,
            out.add(i * n + j),
            n,
            ks.len(),
            w_ahead,
        )
    };
}

/// A register tile: `MR` rows of x times `NR` vectors of W columns over `kc` rows of W,
/// added to the output tile. With `STREAM_X` the prefetch hints run ahead along x's rows
/// (x is the large operand streaming from memory); otherwise `w_ahead = Some(d)` asks for W's
/// next column tile into L1 and for the lines `d` elements further on (the same column tile in
/// the next block of W's rows) into L2, and `None` asks for nothing.
///
/// # Safety
/// `x` must be valid for `MR` rows of `kc` elements at stride `xs`, `w` for `kc` rows of
/// `NR · lanes` elements at stride `ws`, `out` for `MR` rows of `NR · lanes` elements at
/// stride `os`, and nothing else may access the output tile meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<S: Simd, const MR: usize, const NR: usize, const STREAM_X: bool>(
    simd: S,
    x: *const f32,
    xs: usize,
    w: *const f32,
    ws: usize,
    out: *mut f32,
    os: usize,
    kc: usize,
    w_ahead: Option<usize>,
) {
    let lanes = S::F32_LANES;
    unsafe {
        let mut acc: [[S::f32s; NR]; MR] = std::array::from_fn(|r| {
            std::array::from_fn(|c| {
                std::ptr::read_unaligned(out.add(r * os + c * lanes) as *const S::f32s)
            })
        });
        for t in 0..kc {
            let wrow = w.add(t * ws);
            // The tile walks down W's rows at a stride; asking for the same rows of the next
            // column tile now (every cache line of it) keeps the loads streaming (measured:
            // 30-40% faster at 1-16 rows on the development machine), and asking for the next
            // block's rows into L2 a block ahead hides the memory latency that the next column
            // tile alone does not (measured with `matmul_throughput`: a decode layer's
            // products ~15% faster at 1 and 16 rows). Hints only: they never fault.
            if STREAM_X {
                // x streams from memory instead (the transposed head): its rows' cache lines
                // a few lines ahead, one hint per row and line.
                if t % 16 == 0 {
                    for r in 0..MR {
                        prefetch_lines::<NEAR>(x.wrapping_add(r * xs + t + 64), 64);
                    }
                }
            } else if let Some(far) = w_ahead {
                prefetch_lines::<NEAR>(wrow.wrapping_add(NR * lanes), NR * lanes * 4);
                prefetch_lines::<L2>(wrow.wrapping_add(far), NR * lanes * 4);
            }
            let wv: [S::f32s; NR] = std::array::from_fn(|c| {
                std::ptr::read_unaligned(wrow.add(c * lanes) as *const S::f32s)
            });
            for (r, row) in acc.iter_mut().enumerate() {
                let xv = simd.splat_f32s(*x.add(r * xs + t));
                for (a, wv) in row.iter_mut().zip(&wv) {
                    *a = simd.mul_add_f32s(xv, *wv, *a);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (c, a) in row.iter().enumerate() {
                std::ptr::write_unaligned(out.add(r * os + c * lanes) as *mut S::f32s, *a);
            }
        }
    }
}

/// `x · Wᵀ` for `W` stored `[n, k]`: tasks own ranges of W's rows (output columns), each a
/// contiguous stretch of memory.
fn out_in(x: Rows<'_>, w: Rows<'_>) -> Vec<f32> {
    out_in_with(x, w, None)
}

/// [`out_in`], transposed or not as `transpose` says (`None`: by [`transposes`]).
fn out_in_with(x: Rows<'_>, w: Rows<'_>, transpose: Option<bool>) -> Vec<f32> {
    let (m, k, n) = (x.rows, x.cols, w.rows);
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return out;
    }
    let tasks = task_count(m * n * k, n.div_ceil(64));
    let width = n.div_ceil(tasks);
    let ranges: Vec<(usize, usize)> = (0..n)
        .step_by(width)
        .map(|c| (c, (c + width).min(n)))
        .collect();
    let blocks: Vec<Vec<f32>> = ranges
        .par_iter()
        .map(|&(c0, c1)| {
            let mut local = vec![0f32; m * (c1 - c0)];
            pulp::Arch::new().dispatch(OutInTask {
                x,
                w,
                c0,
                c1,
                transpose,
                out: &mut local,
            });
            local
        })
        .collect();
    for (&(c0, c1), local) in ranges.iter().zip(&blocks) {
        for i in 0..m {
            out[i * n + c0..i * n + c1].copy_from_slice(&local[i * (c1 - c0)..(i + 1) * (c1 - c0)]);
        }
    }
    out
}

/// Columns `c0..c1` of `x · Wᵀ` for `W` stored `[n, k]`, into `out` (`[m, c1 − c0]`).
struct OutInTask<'a, 'b> {
    x: Rows<'a>,
    w: Rows<'a>,
    c0: usize,
    c1: usize,
    /// Whether to run as `W · xᵀ` (`None`: by [`transposes`]).
    transpose: Option<bool>,
    out: &'b mut [f32],
}

impl WithSimd for OutInTask<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        if self
            .transpose
            .unwrap_or_else(|| transposes(self.x.rows, S::F32_LANES))
        {
            return out_in_transposed(simd, self);
        }
        // 4 x 4 accumulators with 32 vector registers, 4 x 2 with 16 (6 x 4 tiles measured
        // 10-40% slower at 1-16 rows with AVX-512: every tile reduces each accumulator to one
        // sum, and a short batch fills only part of a 6-row tile).
        if S::REGISTER_COUNT >= 32 {
            out_in_rows::<S, 4>(simd, self);
        } else {
            out_in_rows::<S, 2>(simd, self);
        }
    }
}

/// Whether `x · Wᵀ` with `m` rows of x runs as `(W · xᵀ)ᵀ` ([`out_in_transposed`]): once
/// the rows fill at least half of a vector (`head_throughput` below, AVX-512, SmolLM2's and
/// Qwen2.5-0.5B's heads: 8 rows 74-80 GFLOP/s against 56-73 as dot products, 16 rows 140-145
/// against 93-97, 32 rows 148-160 against 116-131; at 4 rows the dot products are as fast).
fn transposes(m: usize, lanes: usize) -> bool {
    2 * m >= lanes
}

/// [`OutInTask`] as the product `W · xᵀ`: x's rows transposed into the columns of a small
/// `[k, m]` matrix (padded to whole vectors) that stays in cache, W's rows broadcast one
/// element at a time against it in the register tiles of [`in_out`] — no dot product ends
/// in a horizontal sum, which is what bounds the dot tiles once there are many rows. The
/// `[width, m]` result is transposed into `out`.
#[inline(always)]
fn out_in_transposed<S: Simd>(simd: S, t: OutInTask<'_, '_>) {
    let lanes = S::F32_LANES;
    let (m, k) = (t.x.rows, t.x.cols);
    let width = t.c1 - t.c0;
    let vectors = m.div_ceil(lanes);
    let padded = vectors * lanes;
    let mut xt = vec![0f32; k * padded];
    for r in 0..m {
        for (h, x) in t.x.row(r).iter().enumerate() {
            xt[h * padded + r] = *x;
        }
    }
    let mut yt = vec![0f32; width * padded];
    let w = Rows {
        data: &t.w.data[t.c0 * t.w.stride..],
        rows: width,
        cols: k,
        stride: t.w.stride,
    };
    let xt = Rows {
        data: &xt,
        rows: k,
        cols: padded,
        stride: padded,
    };
    let mut c = 0;
    while c + 2 <= vectors {
        if S::REGISTER_COUNT >= 32 {
            transposed_columns::<S, 12, 2>(simd, w, xt, c * lanes, &mut yt);
        } else {
            transposed_columns::<S, 6, 2>(simd, w, xt, c * lanes, &mut yt);
        }
        c += 2;
    }
    if c < vectors {
        if S::REGISTER_COUNT >= 32 {
            transposed_columns::<S, 24, 1>(simd, w, xt, c * lanes, &mut yt);
        } else {
            transposed_columns::<S, 12, 1>(simd, w, xt, c * lanes, &mut yt);
        }
    }
    for r in 0..m {
        for (v, y) in t.out[r * width..(r + 1) * width].iter_mut().enumerate() {
            *y = yt[v * padded + r];
        }
    }
}

/// Columns `j .. j + NR · lanes` of `W · xᵀ` (`xt` = xᵀ, `[k, padded]`) for every row of
/// `w`, in tiles of `MR` rows of W (then single rows), into `yt` (`[w.rows, padded]`).
#[inline(always)]
fn transposed_columns<S: Simd, const MR: usize, const NR: usize>(
    simd: S,
    w: Rows<'_>,
    xt: Rows<'_>,
    j: usize,
    yt: &mut [f32],
) {
    let lanes = S::F32_LANES;
    let (rows, k, padded) = (w.rows, w.cols, xt.cols);
    // Bounds, checked once for the raw reads below.
    assert!(j + NR * lanes <= padded && xt.rows == k && yt.len() >= rows * padded);
    assert!(rows == 0 || w.data.len() >= (rows - 1) * w.stride + k);
    let out = yt.as_mut_ptr();
    let mut v = 0;
    while v < rows {
        let step = if v + MR <= rows { MR } else { 1 };
        // SAFETY: the asserts above bound every offset the tile reads or writes.
        unsafe {
            let (x, o) = (w.data[v * w.stride..].as_ptr(), out.add(v * padded + j));
            let wt = xt.data[j..].as_ptr();
            if step == MR {
                tile::<S, MR, NR, true>(simd, x, w.stride, wt, padded, o, padded, k, None);
            } else {
                tile::<S, 1, NR, true>(simd, x, w.stride, wt, padded, o, padded, k, None);
            }
        }
        v += step;
    }
}

/// The task body: tiles of 4 rows of x by `NV` rows of W, dot products along `k`.
#[inline(always)]
fn out_in_rows<S: Simd, const NV: usize>(simd: S, t: OutInTask<'_, '_>) {
    let m = t.x.rows;
    let width = t.c1 - t.c0;
    let mut v = 0;
    while v < width {
        let nv = NV.min(width - v);
        let mut i = 0;
        while i < m {
            let mr = 4.min(m - i);
            let xs: [&[f32]; 4] = std::array::from_fn(|r| t.x.row(i + r.min(mr - 1)));
            let ws: [&[f32]; NV] = std::array::from_fn(|c| t.w.row(t.c0 + v + c.min(nv - 1)));
            let dots = dot_tile::<S, NV>(simd, xs, ws);
            for (r, row) in dots.iter().enumerate().take(mr) {
                let start = (i + r) * width + v;
                t.out[start..start + nv].copy_from_slice(&row[..nv]);
            }
            i += mr;
        }
        v += nv;
    }
}

/// The 4 x `NV` dot products of rows `xs` and `ws` (all of one length).
#[inline(always)]
fn dot_tile<S: Simd, const NV: usize>(
    simd: S,
    xs: [&[f32]; 4],
    ws: [&[f32]; NV],
) -> [[f32; NV]; 4] {
    let lanes = S::F32_LANES;
    let len = xs[0].len();
    assert!(xs.iter().all(|r| r.len() == len) && ws.iter().all(|r| r.len() == len));
    let vectors = len / lanes;
    let xp = xs.map(<[f32]>::as_ptr);
    let wp = ws.map(<[f32]>::as_ptr);
    let mut acc = [[simd.splat_f32s(0.0); NV]; 4];
    for p in 0..vectors {
        // SAFETY: every row holds `len ≥ (p + 1) · lanes` elements (asserted above).
        unsafe {
            let w: [S::f32s; NV] = std::array::from_fn(|c| {
                std::ptr::read_unaligned(wp[c].add(p * lanes) as *const S::f32s)
            });
            for (r, row) in acc.iter_mut().enumerate() {
                let x = std::ptr::read_unaligned(xp[r].add(p * lanes) as *const S::f32s);
                for (a, w) in row.iter_mut().zip(&w) {
                    *a = simd.mul_add_f32s(x, *w, *a);
                }
            }
        }
    }
    let tail = vectors * lanes..len;
    let mut out = [[0f32; NV]; 4];
    for r in 0..4 {
        for c in 0..NV {
            let rest: f32 = xs[r][tail.clone()]
                .iter()
                .zip(&ws[c][tail.clone()])
                .map(|(x, w)| x * w)
                .sum();
            out[r][c] = simd.reduce_sum_f32s(acc[r][c]) + rest;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|kk| f64::from(x[i * k + kk]) * f64::from(w[kk * n + j]))
                    .sum();
            }
        }
        y
    }

    #[test]
    fn both_layouts_equal_the_f64_product_at_odd_sizes() {
        for &(m, k, n) in &[
            (1, 5, 3),
            (3, 17, 29),
            (4, 64, 96),
            (7, 576, 200),
            (16, 33, 1000),
            (13, 70, 301),
            (33, 40, 130),
            (40, 19, 2500),
        ] {
            let x = values(m * k, 1);
            let w = values(k * n, 2);
            let bias = values(n, 3);
            let want = reference(&x, &w, m, k, n);
            let wt: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
            let xr = Rows::new(&x, m, k, k).unwrap();
            let in_out = matmul(
                xr,
                Weight::InOut(Rows::new(&w, k, n, n).unwrap()),
                Some(&bias),
            );
            let out_in = matmul(xr, Weight::OutIn(Rows::new(&wt, n, k, k).unwrap()), None);
            // Both ways of the `[n, k]` layout, whichever the row count picks.
            let wr = Rows::new(&wt, n, k, k).unwrap();
            let dots = out_in_with(xr, wr, Some(false));
            let transposed = out_in_with(xr, wr, Some(true));
            for (idx, want) in want.iter().enumerate() {
                let tol = 1e-5 * (k as f64).sqrt() * 4.0;
                let b = f64::from(bias[idx % n]);
                assert!(
                    (f64::from(in_out[idx]) - want - b).abs() < tol,
                    "{m}x{k}x{n} [{idx}]"
                );
                for got in [out_in[idx], dots[idx], transposed[idx]] {
                    assert!((f64::from(got) - want).abs() < tol, "{m}x{k}x{n} [{idx}]");
                }
            }
        }
    }

    #[test]
    fn strided_rows_are_read_in_place() {
        let (m, k, n) = (5, 40, 70);
        let x = values(m * 48, 4); // rows of 40 at stride 48
        let w = values(k * 80, 5); // rows of 70 at stride 80
        let dense_x: Vec<f32> = (0..m * k).map(|i| x[(i / k) * 48 + i % k]).collect();
        let dense_w: Vec<f32> = (0..k * n).map(|i| w[(i / n) * 80 + i % n]).collect();
        let got = matmul(
            Rows::new(&x, m, k, 48).unwrap(),
            Weight::InOut(Rows::new(&w, k, n, 80).unwrap()),
            None,
        );
        let want = reference(&dense_x, &dense_w, m, k, n);
        for (g, w) in got.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-4);
        }
    }

    #[test]
    fn a_view_too_short_for_its_shape_is_refused() {
        assert!(Rows::new(&[0.0; 5], 2, 3, 3).is_none());
        assert!(Rows::new(&[0.0; 6], 2, 3, 2).is_none());
        assert!(Rows::new(&[0.0; 6], 2, 3, 3).is_some());
    }
}

/// Throughput of [`matmul`] at a decode step's shapes (SmolLM2-135M's projections and tied
/// head), printed in GFLOP/s; `cargo test --release -p sdpo-models --lib matmul_throughput --
/// --ignored --nocapture` on an idle machine. A measurement, not a check.
#[cfg(test)]
mod throughput {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore = "a measurement: run on an idle machine"]
    fn matmul_throughput() {
        let shapes = [(576, 576), (576, 1536), (1536, 576), (576, 192)];
        for m in [1usize, 4, 16] {
            for &(k, n) in &shapes {
                // Enough copies of the weight to exceed the last-level cache, as a decode
                // step's 30 layers do: each product reads its weight from memory.
                let copies = (256 << 20) / (k * n * 4);
                let x = vec![0.5f32; m * k];
                let ws: Vec<Vec<f32>> = (0..copies).map(|_| vec![0.25f32; k * n]).collect();
                let xr = Rows::new(&x, m, k, k).unwrap();
                let reps = copies * 4;
                for kc in [8, 16, 32, 64, 128] {
                    let t0 = Instant::now();
                    for r in 0..reps {
                        let wr = Rows::new(&ws[r % copies], k, n, n).unwrap();
                        std::hint::black_box(in_out_blocked(xr, wr, kc));
                    }
                    let s = t0.elapsed().as_secs_f64() / reps as f64;
                    report(
                        &format!("in_out m={m:2} k={k:4} n={n:5} kc={kc:3}"),
                        s,
                        m,
                        k,
                        n,
                    );
                }
            }
        }
    }

    /// One product's time, its rate and the weight's bytes read per second.
    fn report(label: &str, seconds: f64, m: usize, k: usize, n: usize) {
        let gflops = 2.0 * (m * k * n) as f64 / seconds / 1e9;
        let gbs = (k * n * 4) as f64 / seconds / 1e9;
        println!(
            "{label}: {:8.1} us {gflops:6.1} GFLOP/s {gbs:5.1} GB/s",
            seconds * 1e6
        );
    }

    /// The tied heads of SmolLM2-135M and Qwen2.5-0.5B as dot products and transposed;
    /// `cargo test --release -p sdpo-models --lib head_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: run on an idle machine"]
    fn head_throughput() {
        for m in [1usize, 4, 8, 16, 32] {
            for (k, n) in [(576, 49152), (896, 151936)] {
                let x = vec![0.5f32; m * k];
                let w = vec![0.25f32; n * k];
                let xr = Rows::new(&x, m, k, k).unwrap();
                let wr = Rows::new(&w, n, k, k).unwrap();
                for transpose in [false, true] {
                    let reps = 10;
                    let t0 = Instant::now();
                    for _ in 0..reps {
                        std::hint::black_box(out_in_with(xr, wr, Some(transpose)));
                    }
                    let s = t0.elapsed().as_secs_f64() / reps as f64;
                    let label = format!("out_in m={m:2} k={k:4} n={n:6} transposed={transpose:5}");
                    report(&label, s, m, k, n);
                }
            }
        }
    }
}
