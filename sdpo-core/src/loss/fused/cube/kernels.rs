//! The fused loss as CubeCL kernels: one cube per row of `V` logits, threads
//! striding over the row, tree reductions in shared memory.
//!
//! Forward, per row (the same formulas as [`super::super::row`]):
//!
//! 1. the row maxima, and whether a logit is NaN or infinite (bit tests:
//!    WGSL may assume IEEE specials away);
//! 2. the sums of `exp(x − max)`, the maximum's entries counted exactly apart
//!    from the rest (`log Σ = ln count + log1p(rest / count)`: a lane holding
//!    the maximum's 1 must not swallow the small terms);
//! 3. top-k supports: the k-th largest student logit by a radix search over
//!    order-preserving keys (8 passes of 4-bit digits, no sort), then each thread
//!    takes a contiguous chunk, selects the entries above the cut and the
//!    lowest-indexed ties (as the CPU selection does), writes their indices in
//!    vocabulary order and sums the mass *outside* the top-k itself;
//! 4. the divergence over the support and its derivative, the row
//!    coefficients `c`, `G` and `d_i` of the saved state.
//!
//! Backward, per row: `grad · P_j · c` (or the full-vocabulary formula)
//! everywhere, then the selected entries overwritten with their own formula.

// The `#[cube]` language: a comptime condition cannot merge with a runtime one, and it has
// neither `div_ceil` nor every compound assignment.
#![allow(
    clippy::collapsible_if,
    clippy::manual_div_ceil,
    clippy::assign_op_pattern
)]

use cubecl::prelude::*;

/// Support codes (comptime).
pub const TOPK_TAIL: u32 = 0;
/// Top-k renormalized.
pub const TOPK_RENORMALIZED: u32 = 1;
/// Full vocabulary.
pub const FULL_VOCABULARY: u32 = 2;
/// Sampled token.
pub const SAMPLED_TOKEN: u32 = 3;

/// Divergence codes (comptime).
pub const FORWARD_KL: u32 = 0;
/// Reverse KL.
pub const REVERSE_KL: u32 = 1;
/// Generalized Jensen–Shannon.
pub const JSD: u32 = 2;

/// Runtime constants of the divergence and the tail clamp.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct Consts {
    /// JSD weight of the student, `1 − α`.
    pub w_s: f32,
    /// JSD weight of the teacher, `α`.
    pub w_t: f32,
    /// `ln(1 − α)`.
    pub ln_w_s: f32,
    /// `ln α`.
    pub ln_w_t: f32,
    /// The reference's floor of a tail log-probability.
    pub floor: f32,
}

/// The largest finite `f32`, negated (WGSL has no `-inf` literal).
#[cube]
fn lowest() -> f32 {
    f32::reinterpret(0xff7f_ffffu32)
}

/// A quiet NaN made at run time (WGSL folds `0/0`).
#[cube]
fn nan() -> f32 {
    f32::reinterpret(0x7fc0_0000u32)
}

/// Whether `x` is NaN or infinite, from its bits.
#[cube]
fn not_finite(x: f32) -> bool {
    (u32::reinterpret(x) & 0x7fff_ffffu32) >= 0x7f80_0000u32
}

/// A key whose unsigned order is the float order of `x` (`−0` as `+0`).
#[cube]
fn order_key(x: f32) -> u32 {
    let mut bits = u32::reinterpret(x);
    if bits == 0x8000_0000u32 {
        bits = 0u32;
    }
    if bits >= 0x8000_0000u32 {
        0xffff_ffffu32 - bits
    } else {
        bits | 0x8000_0000u32
    }
}

/// The larger of two floats.
#[cube]
fn fmax(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// The sum of `value` over the cube.
#[cube]
fn cube_sum<N: Numeric>(shared: &mut SharedMemory<N>, value: N) -> N {
    cube_reduce::<N>(shared, value, false)
}

/// The maximum of `value` over the cube.
#[cube]
fn cube_max(shared: &mut SharedMemory<f32>, value: f32) -> f32 {
    cube_reduce::<f32>(shared, value, true)
}

/// The sum (or, with `max`, the maximum) of `value` over the cube: a tree in
/// `shared` (`CUBE_DIM_X` a power of two), the result read by every thread.
#[cube]
fn cube_reduce<N: Numeric>(shared: &mut SharedMemory<N>, value: N, #[comptime] max: bool) -> N {
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

/// `ln Σ exp(x − max)` from the count of entries at the maximum and the sum
/// of the others.
#[cube]
fn log_sum(peaks: f32, rest: f32) -> f32 {
    peaks.ln() + log1p(rest / peaks)
}

/// `ln(1 + e)` for `e ≥ 0` without cancellation for small `e` (WGSL has no
/// `log1p`; CubeCL writes `log(e + 1)` there): on `[0, 1]`, `2·atanh(u)` with
/// `u = e / (2 + e) ≤ 1/3` as an odd series to `u¹⁵` (as the CPU kernels).
#[cube]
fn log1p(e: f32) -> f32 {
    if e > f32::new(1.0) {
        (e + f32::new(1.0)).ln()
    } else {
        let u = e / (e + f32::new(2.0));
        let u2 = u * u;
        let mut p = f32::new(1.0 / 15.0);
        p = p * u2 + f32::new(1.0 / 13.0);
        p = p * u2 + f32::new(1.0 / 11.0);
        p = p * u2 + f32::new(1.0 / 9.0);
        p = p * u2 + f32::new(1.0 / 7.0);
        p = p * u2 + f32::new(1.0 / 5.0);
        p = p * u2 + f32::new(1.0 / 3.0);
        p = p * u2 + f32::new(1.0);
        f32::new(2.0) * u * p
    }
}

/// The divergence's term at one entry and its derivative in the student's
/// log-probability.
#[derive(CubeType)]
struct TermSlope {
    term: f32,
    slope: f32,
}

/// The divergence's term at one entry, from the log-probabilities `a`
/// (student) and `b` (teacher), and its slope `∂term/∂a` (as the CPU kernels'
/// `term_and_slope`; the exponentials and the mixture computed once).
#[cube]
fn term_and_slope(a: f32, b: f32, c: &Consts, #[comptime] div: u32) -> TermSlope {
    if comptime![div == FORWARD_KL] {
        let pt = b.exp();
        TermSlope {
            term: pt * (b - a),
            slope: f32::new(0.0) - pt,
        }
    } else if comptime![div == REVERSE_KL] {
        let ps = a.exp();
        TermSlope {
            term: ps * (a - b),
            slope: ps * (a - b + f32::new(1.0)),
        }
    } else {
        let log_m = log_mixture(a, b, c);
        let slope = c.w_s * a.exp() * (a - log_m);
        TermSlope {
            term: slope + c.w_t * b.exp() * (b - log_m),
            slope,
        }
    }
}

/// `ln((1 − α) e^a + α e^b)` without cancellation.
#[cube]
fn log_mixture(a: f32, b: f32, c: &Consts) -> f32 {
    let sa = a + c.ln_w_s;
    let sb = b + c.ln_w_t;
    let hi = fmax(sa, sb);
    let lo = if sa > sb { sb } else { sa };
    hi + log1p((lo - hi).exp())
}

/// The fused forward; one cube per row. Outputs as in
/// [`FusedForward`](super::super::FusedForward); `width` is the row stride of
/// `coefs` and `indices`, `k` the entries selected (`min(k, V)`).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub fn forward_kernel<I: Int>(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    ids: &Tensor<I>,
    loss: &mut Tensor<f32>,
    token_log_probs: &mut Tensor<f32>,
    stats: &mut Tensor<f32>,
    coefs: &mut Tensor<f32>,
    indices: &mut Tensor<I>,
    shape: &RowShape,
    consts: &Consts,
    #[comptime] support: u32,
    #[comptime] div: u32,
    #[comptime] block: u32,
    #[define(I)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= shape.rows as usize {
        terminate!();
    }
    let tid = UNIT_POS_X as usize;
    let at = row_at(row, shape);
    let mut red_f = SharedMemory::<f32>::new(block as usize);
    let mut red_u = SharedMemory::<u32>::new(block as usize);

    // 1. Maxima; a row with a NaN or infinite logit, or a token outside it, is NaN.
    let maxima = row_maxima(student, teacher, &at, &mut red_f, &mut red_u);
    let id = i32::cast_from(ids[row]);
    if maxima.bad > 0 || id < 0 || id >= i32::cast_from(shape.vocab) {
        write_broken(loss, token_log_probs, stats, coefs, indices, row, &at);
        terminate!();
    }
    let id = usize::cast_from(id);

    // 2. Both log-softmax normalizers.
    let n = normalizers(student, teacher, &at, &maxima, &mut red_f, &mut red_u);
    let token_lp = student[at.base + id] - n.max_s - n.lse_s;

    // 3–4. The divergence over the support, and the row coefficients c and G.
    let out = if comptime![support == SAMPLED_TOKEN] {
        sampled_token(teacher, &at, &n, id, token_lp)
    } else if comptime![support == FULL_VOCABULARY] {
        full_vocabulary(student, teacher, &at, &n, consts, &mut red_f, div)
    } else {
        top_k(
            student, teacher, indices, coefs, &at, &n, consts, &mut red_f, support, div, block,
        )
    };

    if tid == 0 {
        loss[row] = out.loss;
        token_log_probs[row] = token_lp;
        stats[row * 6] = n.max_s;
        stats[row * 6 + 1] = n.lse_s;
        stats[row * 6 + 2] = n.max_t;
        stats[row * 6 + 3] = n.lse_t;
        stats[row * 6 + 4] = out.c;
        stats[row * 6 + 5] = out.g;
    }
}

/// Where a row lives: its first logit, its first saved slot, `V` and `k`.
#[derive(CubeType)]
struct RowAt {
    base: usize,
    slots: usize,
    v: usize,
    k: usize,
}

/// Where row `row` lives in the tensors of a launch of `shape`.
#[cube]
fn row_at(row: usize, shape: &RowShape) -> RowAt {
    RowAt {
        base: row * shape.vocab as usize,
        slots: row * shape.width as usize,
        v: shape.vocab as usize,
        k: shape.k as usize,
    }
}

/// The row maxima and whether a logit is NaN or infinite (`bad > 0`).
#[derive(CubeType)]
struct Maxima {
    max_s: f32,
    max_t: f32,
    bad: u32,
}

/// Both sides' log-softmax normalizers: `log p = x − max − lse`.
#[derive(CubeType)]
struct Normalizers {
    max_s: f32,
    lse_s: f32,
    max_t: f32,
    lse_t: f32,
}

/// A row's loss and its gradient coefficients `c` and `G` (see [`super::super::row`]).
#[derive(CubeType)]
struct RowOut {
    loss: f32,
    c: f32,
    g: f32,
}

/// Pass 1: the maxima of both rows, and whether any logit is not finite.
#[cube]
fn row_maxima(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    at: &RowAt,
    red_f: &mut SharedMemory<f32>,
    red_u: &mut SharedMemory<u32>,
) -> Maxima {
    let mut ms = lowest();
    let mut mt = lowest();
    let mut bad = 0u32;
    let mut j = UNIT_POS_X as usize;
    while j < at.v {
        let x = student[at.base + j];
        let y = teacher[at.base + j];
        if not_finite(x) || not_finite(y) {
            bad = 1u32;
        }
        ms = fmax(ms, x);
        mt = fmax(mt, y);
        j += CUBE_DIM_X as usize;
    }
    Maxima {
        max_s: cube_max(red_f, ms),
        max_t: cube_max(red_f, mt),
        bad: cube_sum::<u32>(red_u, bad),
    }
}

/// NaN outputs for a broken row (as the composite code's arithmetic gives).
#[cube]
fn write_broken<I: Int>(
    loss: &mut Tensor<f32>,
    token_log_probs: &mut Tensor<f32>,
    stats: &mut Tensor<f32>,
    coefs: &mut Tensor<f32>,
    indices: &mut Tensor<I>,
    row: usize,
    at: &RowAt,
) {
    if UNIT_POS_X == 0 {
        loss[row] = nan();
        token_log_probs[row] = nan();
        for s in 0..6 {
            stats[row * 6 + s] = nan();
        }
    }
    let mut i = UNIT_POS_X as usize;
    while i < at.k {
        coefs[at.slots + i] = nan();
        indices[at.slots + i] = I::cast_from(0u32);
        i += CUBE_DIM_X as usize;
    }
}

/// Pass 2: the sums of `exp(x − max)`, the maximum's entries counted apart.
#[cube]
fn normalizers(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    at: &RowAt,
    m: &Maxima,
    red_f: &mut SharedMemory<f32>,
    red_u: &mut SharedMemory<u32>,
) -> Normalizers {
    let mut rest_s = f32::new(0.0);
    let mut rest_t = f32::new(0.0);
    let mut peaks_s = 0u32;
    let mut peaks_t = 0u32;
    let mut j = UNIT_POS_X as usize;
    while j < at.v {
        let x = student[at.base + j];
        let y = teacher[at.base + j];
        if x == m.max_s {
            peaks_s += 1u32;
        } else {
            rest_s += (x - m.max_s).exp();
        }
        if y == m.max_t {
            peaks_t += 1u32;
        } else {
            rest_t += (y - m.max_t).exp();
        }
        j += CUBE_DIM_X as usize;
    }
    let rest_s = cube_sum::<f32>(red_f, rest_s);
    let rest_t = cube_sum::<f32>(red_f, rest_t);
    let peaks_s = f32::cast_from(cube_sum::<u32>(red_u, peaks_s));
    let peaks_t = f32::cast_from(cube_sum::<u32>(red_u, peaks_t));
    Normalizers {
        max_s: m.max_s,
        lse_s: log_sum(peaks_s, rest_s),
        max_t: m.max_t,
        lse_t: log_sum(peaks_t, rest_t),
    }
}

/// The sampled-token loss `r · log p_s` with `r = log p_s − log p_t`; `c = −r`.
#[cube]
fn sampled_token(
    teacher: &Tensor<f32>,
    at: &RowAt,
    n: &Normalizers,
    id: usize,
    token_lp: f32,
) -> RowOut {
    let r = token_lp - (teacher[at.base + id] - n.max_t - n.lse_t);
    RowOut {
        loss: r * token_lp,
        c: f32::new(0.0) - r,
        g: f32::new(0.0),
    }
}

/// Passes 3–4 of the top-k supports: the k-th largest key, the selection and
/// the mass outside it, then the divergence over the selected entries.
#[allow(clippy::too_many_arguments)]
#[cube]
fn top_k<I: Int>(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    indices: &mut Tensor<I>,
    coefs: &mut Tensor<f32>,
    at: &RowAt,
    n: &Normalizers,
    consts: &Consts,
    red_f: &mut SharedMemory<f32>,
    #[comptime] support: u32,
    #[comptime] div: u32,
    #[comptime] block: u32,
) -> RowOut {
    let k = at.k as u32;
    let cut = kth_largest_key(student, at.base, at.v, k);
    let outside = select_top(student, teacher, indices, at, cut, k, n, block);
    let below_s = cube_sum::<f32>(red_f, outside.below_s);
    let below_t = cube_sum::<f32>(red_f, outside.below_t);
    // The indices written by other threads, visible to all.
    sync_storage();
    sync_cube();
    if comptime![support == TOPK_TAIL] {
        topk_tail(
            student, teacher, indices, coefs, at, n, below_s, below_t, consts, red_f, div,
        )
    } else {
        topk_renormalized(student, teacher, indices, coefs, at, consts, red_f, div)
    }
}

/// The divergence over the whole vocabulary; `G` = the sum of the slopes.
#[cube]
fn full_vocabulary(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    at: &RowAt,
    n: &Normalizers,
    consts: &Consts,
    red_f: &mut SharedMemory<f32>,
    #[comptime] div: u32,
) -> RowOut {
    let mut terms = f32::new(0.0);
    let mut slopes = f32::new(0.0);
    let mut j = UNIT_POS_X as usize;
    while j < at.v {
        let a = student[at.base + j] - n.max_s - n.lse_s;
        let b = teacher[at.base + j] - n.max_t - n.lse_t;
        let e = term_and_slope(a, b, consts, div);
        terms += e.term;
        slopes += e.slope;
        j += CUBE_DIM_X as usize;
    }
    RowOut {
        loss: cube_sum::<f32>(red_f, terms),
        c: f32::new(0.0),
        g: cube_sum::<f32>(red_f, slopes),
    }
}

/// The divergence over the top-k and the tail bucket, each side's tail from
/// its own mass outside the top-k (`below_*`), clamped as the reference does
/// (the clamp also cuts the tail's gradient). Writes `d_i` = the slopes.
#[allow(clippy::too_many_arguments)]
#[cube]
fn topk_tail<I: Int>(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    indices: &Tensor<I>,
    coefs: &mut Tensor<f32>,
    at: &RowAt,
    n: &Normalizers,
    below_s: f32,
    below_t: f32,
    consts: &Consts,
    red_f: &mut SharedMemory<f32>,
    #[comptime] div: u32,
) -> RowOut {
    let mut terms = f32::new(0.0);
    let mut slopes = f32::new(0.0);
    let mut i = UNIT_POS_X as usize;
    while i < at.k {
        let j = usize::cast_from(indices[at.slots + i]);
        let a = student[at.base + j] - n.max_s - n.lse_s;
        let b = teacher[at.base + j] - n.max_t - n.lse_t;
        let e = term_and_slope(a, b, consts, div);
        coefs[at.slots + i] = e.slope;
        terms += e.term;
        slopes += e.slope;
        i += CUBE_DIM_X as usize;
    }
    let terms = cube_sum::<f32>(red_f, terms);
    let total = cube_sum::<f32>(red_f, slopes);
    let tail_s = below_s.ln() - n.lse_s;
    let tail_t = below_t.ln() - n.lse_t;
    let clamped = below_s <= f32::new(0.0) || tail_s < consts.floor;
    let ts = if clamped { consts.floor } else { tail_s };
    let tt = if below_t <= f32::new(0.0) || tail_t < consts.floor {
        consts.floor
    } else {
        tail_t
    };
    let tail = term_and_slope(ts, tt, consts, div);
    let g = if clamped { total } else { total + tail.slope };
    let c = if clamped {
        f32::new(0.0) - total
    } else {
        tail.slope / tail_s.exp() - g
    };
    RowOut {
        loss: terms + tail.term,
        c,
        g,
    }
}

/// Both sides renormalized over the student's top-k. Writes
/// `d_i = slope_i − q_i Σ slopes`; `c = G = 0`.
#[allow(clippy::too_many_arguments)]
#[cube]
fn topk_renormalized<I: Int>(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    indices: &Tensor<I>,
    coefs: &mut Tensor<f32>,
    at: &RowAt,
    consts: &Consts,
    red_f: &mut SharedMemory<f32>,
    #[comptime] div: u32,
) -> RowOut {
    let threads = CUBE_DIM_X as usize;
    let mut ms = lowest();
    let mut mt = lowest();
    let mut i = UNIT_POS_X as usize;
    while i < at.k {
        let j = usize::cast_from(indices[at.slots + i]);
        ms = fmax(ms, student[at.base + j]);
        mt = fmax(mt, teacher[at.base + j]);
        i += threads;
    }
    let top_s = cube_max(red_f, ms);
    let top_t = cube_max(red_f, mt);
    let mut ss = f32::new(0.0);
    let mut st = f32::new(0.0);
    let mut i = UNIT_POS_X as usize;
    while i < at.k {
        let j = usize::cast_from(indices[at.slots + i]);
        ss += (student[at.base + j] - top_s).exp();
        st += (teacher[at.base + j] - top_t).exp();
        i += threads;
    }
    let ls = cube_sum::<f32>(red_f, ss).ln();
    let lt = cube_sum::<f32>(red_f, st).ln();
    let mut terms = f32::new(0.0);
    let mut slopes = f32::new(0.0);
    let mut i = UNIT_POS_X as usize;
    while i < at.k {
        let j = usize::cast_from(indices[at.slots + i]);
        let a = student[at.base + j] - top_s - ls;
        let b = teacher[at.base + j] - top_t - lt;
        let e = term_and_slope(a, b, consts, div);
        coefs[at.slots + i] = e.slope;
        terms += e.term;
        slopes += e.slope;
        i += threads;
    }
    let loss = cube_sum::<f32>(red_f, terms);
    let total = cube_sum::<f32>(red_f, slopes);
    // Each thread adjusts the slots it wrote.
    let mut i = UNIT_POS_X as usize;
    while i < at.k {
        let j = usize::cast_from(indices[at.slots + i]);
        let q = (student[at.base + j] - top_s - ls).exp();
        coefs[at.slots + i] = coefs[at.slots + i] - q * total;
        i += threads;
    }
    RowOut {
        loss,
        c: f32::new(0.0),
        g: f32::new(0.0),
    }
}

/// The k-th largest order key of a row (`1 ≤ k ≤ V`), four bits per pass from
/// the top (8 passes over the row): each pass histograms the next digit of the
/// keys that match the digits found so far (16 shared atomic counters) and
/// keeps the digit where the k-th largest falls.
#[cube]
fn kth_largest_key(student: &Tensor<f32>, base: usize, v: usize, k: u32) -> u32 {
    let tid = UNIT_POS_X as usize;
    let threads = CUBE_DIM_X as usize;
    let hist = SharedMemory::<Atomic<u32>>::new(16usize);
    let mut prefix = 0u32;
    // The rank of the k-th largest among the keys that match `prefix`.
    let mut remaining = k;
    for pass in 0..8u32 {
        let shift = 28u32 - 4u32 * pass;
        let fixed = 0xffff_ffffu32 - (0xffff_ffffu32 >> (4u32 * pass));
        let mut d = tid;
        while d < 16 {
            hist[d].store(0u32);
            d += threads;
        }
        sync_cube();
        let mut j = tid;
        while j < v {
            let key = order_key(student[base + j]);
            if (key & fixed) == prefix {
                hist[((key >> shift) & 15u32) as usize].fetch_add(1u32);
            }
            j += threads;
        }
        sync_cube();
        let mut digit = 0u32;
        let mut above = 0u32;
        let mut found = false;
        for i in 0..16u32 {
            let d = 15u32 - i;
            let count = hist[d as usize].load();
            if !found {
                if above + count >= remaining {
                    digit = d;
                    found = true;
                } else {
                    above += count;
                }
            }
        }
        prefix |= digit << shift;
        remaining -= above;
        sync_cube();
    }
    prefix
}

/// Sizes of a launch.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct RowShape {
    /// Rows `n`.
    pub rows: u32,
    /// Row length `V`.
    pub vocab: u32,
    /// Entries selected per row (`min(k, V)`; 0 without top-k).
    pub k: u32,
    /// Row stride of the saved `[n, width]` tensors.
    pub width: u32,
}

/// The mass outside the top-k, per thread.
#[derive(CubeType)]
struct Outside {
    below_s: f32,
    below_t: f32,
}

/// Selects the entries above `cut` and the lowest-indexed ties until `k` are
/// taken, writes their indices in vocabulary order at the row's slots, and
/// returns this thread's share of the exp-sums of the entries not taken.
#[allow(clippy::too_many_arguments)]
#[cube]
fn select_top<I: Int>(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    indices: &mut Tensor<I>,
    at: &RowAt,
    cut: u32,
    k: u32,
    n: &Normalizers,
    #[comptime] block: u32,
) -> Outside {
    let tid = UNIT_POS_X as usize;
    let threads = CUBE_DIM_X as usize;
    let v = at.v;
    let chunk = (v + threads - 1) / threads;
    let lo = if tid * chunk < v { tid * chunk } else { v };
    let hi = if lo + chunk < v { lo + chunk } else { v };
    let mut above = 0u32;
    let mut ties = 0u32;
    for j in lo..hi {
        let key = order_key(student[at.base + j]);
        if key > cut {
            above += 1u32;
        } else if key == cut {
            ties += 1u32;
        }
    }
    // Exclusive prefix sums of both counts over the threads (one thread scans).
    let mut before_above = SharedMemory::<u32>::new(block as usize + 1);
    let mut before_ties = SharedMemory::<u32>::new(block as usize + 1);
    before_above[tid] = above;
    before_ties[tid] = ties;
    sync_cube();
    if tid == 0 {
        let mut run_above = 0u32;
        let mut run_ties = 0u32;
        for t in 0..threads {
            let a = before_above[t];
            let b = before_ties[t];
            before_above[t] = run_above;
            before_ties[t] = run_ties;
            run_above += a;
            run_ties += b;
        }
        before_above[threads] = run_above;
    }
    sync_cube();
    let needed_ties = k - before_above[threads];
    let mut tie_rank = before_ties[tid];
    let taken_before = if tie_rank < needed_ties {
        tie_rank
    } else {
        needed_ties
    };
    let mut pos = (before_above[tid] + taken_before) as usize;
    let mut below_s = f32::new(0.0);
    let mut below_t = f32::new(0.0);
    for j in lo..hi {
        let x = student[at.base + j];
        let key = order_key(x);
        let mut take = key > cut;
        if key == cut {
            take = tie_rank < needed_ties;
            tie_rank += 1u32;
        }
        if take {
            indices[at.slots + pos] = I::cast_from(j as u32);
            pos += 1;
        } else {
            below_s += (x - n.max_s).exp();
            below_t += (teacher[at.base + j] - n.max_t).exp();
        }
    }
    sync_cube();
    Outside { below_s, below_t }
}

/// The fused backward; one cube per row: `out = grad · ∂loss/∂student`.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub fn backward_kernel<I: Int>(
    student: &Tensor<f32>,
    teacher: &Tensor<f32>,
    ids: &Tensor<I>,
    stats: &Tensor<f32>,
    coefs: &Tensor<f32>,
    indices: &Tensor<I>,
    grad: &Tensor<f32>,
    out: &mut Tensor<f32>,
    shape: &RowShape,
    consts: &Consts,
    #[comptime] support: u32,
    #[comptime] div: u32,
    #[define(I)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= shape.rows as usize {
        terminate!();
    }
    let tid = UNIT_POS_X as usize;
    let threads = CUBE_DIM_X as usize;
    let at = row_at(row, shape);
    let scale = grad[row];
    let max_s = stats[row * 6];
    let lse_s = stats[row * 6 + 1];
    let max_t = stats[row * 6 + 2];
    let lse_t = stats[row * 6 + 3];
    let c = stats[row * 6 + 4];
    let g = stats[row * 6 + 5];
    let mut bad = false;
    for s in 0..6 {
        if not_finite(stats[row * 6 + s]) {
            bad = true;
        }
    }
    let zero = scale == f32::new(0.0);
    let id = usize::cast_from(ids[row]);

    let mut j = tid;
    while j < at.v {
        let a = student[at.base + j] - max_s - lse_s;
        let mut o = f32::new(0.0);
        if comptime![support == FULL_VOCABULARY] {
            let b = teacher[at.base + j] - max_t - lse_t;
            o = scale * (term_and_slope(a, b, consts, div).slope - a.exp() * g);
        } else if comptime![support != TOPK_RENORMALIZED] {
            o = scale * c * a.exp();
            if comptime![support == SAMPLED_TOKEN] {
                if j == id {
                    o -= scale * c;
                }
            }
        }
        if zero {
            o = f32::new(0.0);
        } else if bad {
            o = nan();
        }
        out[at.base + j] = o;
        j += threads;
    }
    if comptime![support == TOPK_TAIL || support == TOPK_RENORMALIZED] {
        sync_storage();
        sync_cube();
        if !zero && !bad {
            let mut i = tid;
            while i < at.k {
                let j = usize::cast_from(indices[at.slots + i]);
                let d = coefs[at.slots + i];
                if comptime![support == TOPK_TAIL] {
                    let p = (student[at.base + j] - max_s - lse_s).exp();
                    out[at.base + j] = scale * (d - p * g);
                } else {
                    out[at.base + j] = scale * d;
                }
                i += threads;
            }
        }
    }
}
