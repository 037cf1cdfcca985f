//! Causal grouped-query attention over a key/value cache, without repeating keys and values
//! per query head: each task takes one (row, query, key-value head) and its group of query
//! heads, scores the visible keys, and sums the values in place.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;
use sdpo_core::loss::fused::vmath::exp_nonpos;

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
    let chunk = group * shape.head_dim;
    let mut out = vec![0f32; q.len()];
    out.par_chunks_mut(chunk)
        .zip(q.par_chunks(chunk))
        .enumerate()
        .for_each(|(unit, (out, q))| {
            let kv_head = unit % shape.kv_heads;
            let query = (unit / shape.kv_heads) % shape.queries;
            let row = unit / (shape.kv_heads * shape.queries);
            let visible = visible_keys(key_mask, shape, row, query);
            pulp::Arch::new().dispatch(Group {
                q,
                k,
                v,
                out,
                visible: &visible,
                shape,
                row,
                kv_head,
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

/// One query position's group of heads against one key/value head.
struct Group<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a mut [f32],
    visible: &'a [usize],
    shape: AttentionShape,
    row: usize,
    kv_head: usize,
}

impl WithSimd for Group<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let s = self.shape;
        let d = s.head_dim;
        let group = s.heads / s.kv_heads;
        let key_row = |j: usize| ((self.row * s.capacity + j) * s.kv_heads + self.kv_head) * d;
        let n = self.visible.len();
        // Scores, head-major: scores[h * n + t] for the t-th visible key.
        let mut scores = vec![0f32; group * n];
        for (t, &j) in self.visible.iter().enumerate() {
            let key = &self.k[key_row(j)..key_row(j) + d];
            for h in 0..group {
                scores[h * n + t] = dot(simd, &self.q[h * d..(h + 1) * d], key) * s.scale;
            }
        }
        for h in 0..group {
            let row = &mut scores[h * n..(h + 1) * n];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total = exp_shifted(simd, row, max);
            row.iter_mut().for_each(|p| *p /= total);
        }
        self.out.iter_mut().for_each(|o| *o = 0.0);
        for (t, &j) in self.visible.iter().enumerate() {
            let value = &self.v[key_row(j)..key_row(j) + d];
            for h in 0..group {
                axpy(
                    simd,
                    scores[h * n + t],
                    value,
                    &mut self.out[h * d..(h + 1) * d],
                );
            }
        }
    }
}

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
