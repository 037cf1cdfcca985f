//! Causal grouped-query attention over a key/value cache, without repeating keys and values
//! per query head: each task takes one (row, query) — or, with fewer of those than threads,
//! one key/value head of it — scores the visible keys position by position (every head of
//! the task against the position's keys, which lie next to each other in the cache), and
//! sums the values the same way.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;
use sdpo_core::loss::fused::vmath::exp_nonpos;

use super::{prefetch_lines, L2};

/// The shapes of one attention call. Queries are `[batch, queries, heads, head_dim]`, keys and
/// values `[batch, capacity, kv_heads, head_dim]` of which the first `keys` positions are
/// filled; query `i` sits at key position `keys − queries + i` (causality aligned at the
/// end, as with a cache).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    /// Rows of the batch.
    pub batch: usize,
    /// New tokens per row (1 when decoding).
    pub queries: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Filled key positions (cached + new).
    pub keys: usize,
    /// Positions allocated per row in the key/value buffers (`≥ keys`).
    pub capacity: usize,
    /// Keys `window` or more positions before a query are not visible to it.
    pub window: Option<usize>,
    /// Factor on the scores (`1 / √head_dim`).
    pub scale: f32,
}

impl AttentionShape {
    /// Whether the buffers' lengths fit the shape.
    pub fn fits(&self, q: usize, k: usize, v: usize, mask: usize) -> bool {
        let kv = self.batch * self.capacity * self.kv_heads * self.head_dim;
        self.kv_heads > 0
            && self.heads.is_multiple_of(self.kv_heads)
            && self.keys >= self.queries
            && self.capacity >= self.keys
            && q == self.batch * self.queries * self.heads * self.head_dim
            && k == kv
            && v == kv
            && mask == self.batch * self.keys
    }
}

/// Attention of `q` over the first `shape.keys` positions of `k`/`v`; `key_mask[b · keys +
/// j]` is `true` for a real (non-padding) key. A query sees key `j` when `j` is itself, or
/// when `j` is real, not in its future, and (with a window) fewer than `window` positions
/// back — the visibility of [`crate::arch::attention_mask`]. Returns `[batch, queries,
/// heads, head_dim]`.
///
/// # Panics
/// If the buffers do not fit `shape` ([`AttentionShape::fits`]).
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_mask: &[bool],
    shape: AttentionShape,
) -> Vec<f32> {
    assert!(
        shape.fits(q.len(), k.len(), v.len(), key_mask.len()),
        "attention: buffers do not fit {shape:?}"
    );
    let group = shape.heads / shape.kv_heads;
    // A task takes every key/value head of one (row, query) when there are enough of those
    // to share the threads (it then reads each key position's keys and values as one
    // contiguous stretch); otherwise one key/value head each.
    let span = if shape.batch * shape.queries >= 2 * rayon::current_num_threads() {
        shape.kv_heads
    } else {
        1
    };
    let chunk = span * group * shape.head_dim;
    let mut out = vec![0f32; q.len()];
    let per_query = shape.kv_heads / span;
    out.par_chunks_mut(chunk)
        .zip(q.par_chunks(chunk))
        .enumerate()
        .for_each(|(unit, (out, q))| {
            let first = (unit % per_query) * span;
            let query = (unit / per_query) % shape.queries;
            let row = unit / (per_query * shape.queries);
            let visible = visible_keys(key_mask, shape, row, query);
            pulp::Arch::new().dispatch(Group {
                q,
                k,
                v,
                out,
                visible: &visible,
                shape,
                row,
                kv_heads: first..first + span,
            });
        });
    out
}

/// The key positions query `query` of row `row` sees, in increasing order.
fn visible_keys(key_mask: &[bool], s: AttentionShape, row: usize, query: usize) -> Vec<usize> {
    let at = s.keys - s.queries + query;
    let real = &key_mask[row * s.keys..(row + 1) * s.keys];
    let oldest = s.window.map_or(0, |w| (at + 1).saturating_sub(w));
    (0..=at)
        .filter(|&j| j == at || (j >= oldest && real[j]))
        .collect()
}

/// One query position's heads against the key/value heads `kv_heads` (each with its group of
/// query heads).
struct Group<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a mut [f32],
    visible: &'a [usize],
    shape: AttentionShape,
    row: usize,
    kv_heads: std::ops::Range<usize>,
}

impl WithSimd for Group<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let s = self.shape;
        let d = s.head_dim;
        let group = s.heads / s.kv_heads;
        let heads = self.kv_heads.len() * group;
        let first = self.kv_heads.start;
        // Where key position j's keys (and values) of this task's first key/value head start;
        // the task's heads follow contiguously.
        let position = |j: usize| ((self.row * s.capacity + j) * s.kv_heads + first) * d;
        let width = self.kv_heads.len() * d;
        let n = self.visible.len();
        // Scores, head-major: scores[h * n + t] for the t-th visible key. Position by
        // position, so the keys and values stream front to back; the rows a few positions
        // ahead are asked for early (measured by `attention_throughput` below).
        let mut scores = vec![0f32; heads * n];
        for (t, &j) in self.visible.iter().enumerate() {
            if let Some(&ahead) = self.visible.get(t + PREFETCH_KEYS) {
                prefetch_lines::<L2>(self.k[position(ahead)..].as_ptr(), width * 4);
                prefetch_lines::<L2>(self.v[position(ahead)..].as_ptr(), width * 4);
            }
            let keys = &self.k[position(j)..position(j) + width];
            for h in 0..heads {
                let key = &keys[(h / group) * d..(h / group + 1) * d];
                scores[h * n + t] = dot(simd, &self.q[h * d..(h + 1) * d], key) * s.scale;
            }
        }
        let mut inverse = vec![0f32; heads];
        for (h, inverse) in inverse.iter_mut().enumerate() {
            let row = &mut scores[h * n..(h + 1) * n];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            *inverse = 1.0 / exp_shifted(simd, row, max);
        }
        self.out.iter_mut().for_each(|o| *o = 0.0);
        for (t, &j) in self.visible.iter().enumerate() {
            let values = &self.v[position(j)..position(j) + width];
            for h in 0..heads {
                let value = &values[(h / group) * d..(h / group + 1) * d];
                axpy(
                    simd,
                    scores[h * n + t],
                    value,
                    &mut self.out[h * d..(h + 1) * d],
                );
            }
        }
        for (h, inverse) in inverse.iter().enumerate() {
            self.out[h * d..(h + 1) * d]
                .iter_mut()
                .for_each(|o| *o *= inverse);
        }
    }
}

/// `y += a·x`.
#[inline(always)]
fn axpy<S: Simd>(simd: S, a: f32, x: &[f32], y: &mut [f32]) {
    let (xh, xt) = S::as_simd_f32s(x);
    let (yh, yt) = S::as_mut_simd_f32s(y);
    let av = simd.splat_f32s(a);
    for (y, x) in yh.iter_mut().zip(xh) {
        *y = simd.mul_add_f32s(av, *x, *y);
    }
    for (y, x) in yt.iter_mut().zip(xt) {
        *y += a * x;
    }
}

/// How many visible keys ahead [`Group`] asks for the rows it will read.
const PREFETCH_KEYS: usize = 32;

/// `Σ a·b` over two rows of one length.
#[inline(always)]
fn dot<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (ah, at) = S::as_simd_f32s(a);
    let (bh, bt) = S::as_simd_f32s(b);
    let mut acc = simd.splat_f32s(0.0);
    for (a, b) in ah.iter().zip(bh) {
        acc = simd.mul_add_f32s(*a, *b, acc);
    }
    simd.reduce_sum_f32s(acc) + at.iter().zip(bt).map(|(a, b)| a * b).sum::<f32>()
}

/// Replaces each entry `s` by `exp(s − max)` and returns their sum.
#[inline(always)]
fn exp_shifted<S: Simd>(simd: S, row: &mut [f32], max: f32) -> f32 {
    let m = simd.splat_f32s(max);
    let (head, tail) = S::as_mut_simd_f32s(row);
    let mut sum = simd.splat_f32s(0.0);
    for x in head.iter_mut() {
        *x = exp_nonpos(simd, simd.sub_f32s(*x, m));
        sum = simd.add_f32s(sum, *x);
    }
    let mut total = simd.reduce_sum_f32s(sum);
    for x in tail.iter_mut() {
        *x = (*x - max).exp();
        total += *x;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 9;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Repeated key/value heads, a dense score matrix, softmax in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], mask: &[bool], s: AttentionShape) -> Vec<f64> {
        let d = s.head_dim;
        let group = s.heads / s.kv_heads;
        let mut out = vec![0f64; q.len()];
        for b in 0..s.batch {
            for i in 0..s.queries {
                for h in 0..s.heads {
                    let kvh = h / group;
                    let qrow = &q[((b * s.queries + i) * s.heads + h) * d..][..d];
                    let vis = visible_keys(mask, s, b, i);
                    let scores: Vec<f64> = vis
                        .iter()
                        .map(|&j| {
                            let key = &k[((b * s.capacity + j) * s.kv_heads + kvh) * d..][..d];
                            qrow.iter()
                                .zip(key)
                                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                                .sum::<f64>()
                                * f64::from(s.scale)
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let total: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                    let o = &mut out[((b * s.queries + i) * s.heads + h) * d..][..d];
                    for (&j, sc) in vis.iter().zip(&scores) {
                        let p = (sc - max).exp() / total;
                        let value = &v[((b * s.capacity + j) * s.kv_heads + kvh) * d..][..d];
                        o.iter_mut()
                            .zip(value)
                            .for_each(|(o, x)| *o += p * f64::from(*x));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn equals_the_dense_reference_with_padding_windows_and_odd_widths() {
        for (queries, keys, window, d) in [(1, 9, None, 16), (5, 5, None, 12), (3, 11, Some(4), 7)]
        {
            let s = AttentionShape {
                batch: 2,
                queries,
                heads: 6,
                kv_heads: 2,
                head_dim: d,
                keys,
                capacity: keys + 3,
                window,
                scale: 1.0 / (d as f32).sqrt(),
            };
            let q = values(2 * queries * 6 * d, 1);
            let k = values(2 * s.capacity * 2 * d, 2);
            let v = values(2 * s.capacity * 2 * d, 3);
            // Row 1 is left-padded by two positions.
            let mask: Vec<bool> = (0..2 * keys).map(|i| i < keys || i - keys >= 2).collect();
            let got = attention(&q, &k, &v, &mask, s);
            let want = reference(&q, &k, &v, &mask, s);
            for (g, w) in got.iter().zip(&want) {
                assert!((f64::from(*g) - w).abs() < 2e-6, "{s:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn a_padding_query_sees_only_itself() {
        let s = AttentionShape {
            batch: 1,
            queries: 3,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
            keys: 3,
            capacity: 3,
            window: None,
            scale: 0.5,
        };
        let mask = [false, true, true];
        assert_eq!(visible_keys(&mask, s, 0, 0), vec![0]);
        assert_eq!(visible_keys(&mask, s, 0, 2), vec![1, 2]);
        let v = values(12, 4);
        let out = attention(&values(24, 5), &values(12, 6), &v, &mask, s);
        // Query 0 attends to key 0 alone: its output is value 0.
        for h in 0..2 {
            for x in 0..4 {
                assert!((out[h * 4 + x] - v[x]).abs() < 1e-6);
            }
        }
    }
}

/// Throughput of [`attention`] for one decode step's query per row at SmolLM2-135M's and
/// Qwen2.5-0.5B's head layout over caches of several lengths, printed as the key/value bytes
/// read per second; `cargo test --release -p sdpo-models --lib attention_throughput --
/// --ignored --nocapture` on an idle machine. A measurement, not a check.
#[cfg(test)]
mod throughput {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore = "a measurement: run on an idle machine"]
    fn attention_throughput() {
        for (name, heads, kv_heads, head_dim) in [("smollm2", 9, 3, 64), ("qwen05", 14, 2, 64)] {
            for keys in [64usize, 256, 1024] {
                let batch = 16;
                let shape = AttentionShape {
                    batch,
                    queries: 1,
                    heads,
                    kv_heads,
                    head_dim,
                    keys,
                    capacity: keys,
                    window: None,
                    scale: 0.125,
                };
                let kv = batch * keys * kv_heads * head_dim;
                // Enough layers' caches to exceed the last-level cache, as in a decode step.
                let layers = ((256usize << 20) / (kv * 8)).max(2);
                let caches: Vec<(Vec<f32>, Vec<f32>)> = (0..layers)
                    .map(|_| (vec![0.01f32; kv], vec![0.02f32; kv]))
                    .collect();
                let q = vec![0.1f32; batch * heads * head_dim];
                let mask = vec![true; batch * keys];
                let reps = (layers * 4).max(40);
                let t0 = Instant::now();
                for r in 0..reps {
                    let (k, v) = &caches[r % layers];
                    std::hint::black_box(attention(&q, k, v, &mask, shape));
                }
                let s = t0.elapsed().as_secs_f64() / reps as f64;
                println!(
                    "attention {name} batch {batch} keys {keys:5}: {:8.1} us {:5.1} GB/s of keys and values",
                    s * 1e6,
                    (kv * 8) as f64 / s / 1e9
                );
            }
        }
    }
}
