//! Top-k of one row by selection, O(V) rather than a sort.
//!
//! Entries above a running threshold go into a buffer of at most `2k`; when it
//! fills, `select_nth_unstable` keeps the best `k` and raises the threshold to
//! the k-th value. Once the threshold is set, blocks of four SIMD vectors whose
//! maximum does not exceed it are skipped without looking at their entries
//! (most of a row, for `k ≪ V`). Order is by value, then by lower index, so
//! ties at the boundary are resolved the same way every time. NaN entries are
//! never selected (the caller keeps rows with NaN away: they are broken).

use std::cmp::Ordering;

use pulp::{Simd, WithSimd};

/// `(value, index)` of a candidate.
type Entry = (f32, u32);

/// Best first: larger value, then lower index.
fn rank(a: &Entry, b: &Entry) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// Reusable buffer of the selection (one per worker thread).
#[derive(Debug, Default)]
pub struct TopK {
    buf: Vec<Entry>,
}

impl TopK {
    /// The `k` largest entries of `row` (k capped at the row length), best
    /// first, as `(value, index)`.
    pub fn select(&mut self, row: &[f32], k: usize) -> &[Entry] {
        let k = k.min(row.len());
        self.buf.clear();
        if k > 0 {
            let mut state = Running::new(&mut self.buf, k);
            pulp::Arch::new().dispatch(Scan {
                row,
                state: &mut state,
            });
            state.finish();
        }
        &self.buf
    }
}

/// The candidates so far and the threshold an entry must beat.
struct Running<'a> {
    buf: &'a mut Vec<Entry>,
    k: usize,
    cap: usize,
    threshold: f32,
    filled: bool,
}

impl<'a> Running<'a> {
    fn new(buf: &'a mut Vec<Entry>, k: usize) -> Self {
        let cap = 2 * k.max(16);
        buf.reserve(cap);
        Self {
            buf,
            k,
            cap,
            threshold: f32::NEG_INFINITY,
            filled: false,
        }
    }

    /// Considers entry `j` with value `x`.
    #[inline(always)]
    fn offer(&mut self, x: f32, j: usize) {
        // Until k entries are in, take everything that is not NaN.
        if x > self.threshold || (!self.filled && x == self.threshold) {
            self.buf.push((x, j as u32));
            if self.buf.len() == self.cap {
                self.keep_best();
                self.threshold = self.buf[self.k - 1].0;
                self.filled = true;
            }
        }
    }

    fn keep_best(&mut self) {
        if self.buf.len() > self.k {
            self.buf.select_nth_unstable_by(self.k - 1, rank);
            self.buf.truncate(self.k);
        }
    }

    fn finish(&mut self) {
        self.keep_best();
        self.buf.sort_unstable_by(rank);
    }
}

/// The scan over one row, four vectors at a time.
struct Scan<'a, 'b> {
    row: &'a [f32],
    state: &'a mut Running<'b>,
}

impl WithSimd for Scan<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Scan { row, state } = self;
        let (head, _) = S::as_simd_f32s(row);
        let block = 4 * S::F32_LANES;
        let mut j = 0;
        for vectors in head.chunks_exact(4) {
            let max = simd.max_f32s(
                simd.max_f32s(vectors[0], vectors[1]),
                simd.max_f32s(vectors[2], vectors[3]),
            );
            if !state.filled || simd.reduce_max_f32s(max) > state.threshold {
                for (i, &x) in row[j..j + block].iter().enumerate() {
                    state.offer(x, j + i);
                }
            }
            j += block;
        }
        for (i, &x) in row[j..].iter().enumerate() {
            state.offer(x, j + i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_sort(row: &[f32], k: usize) -> Vec<Entry> {
        let mut all: Vec<Entry> = row
            .iter()
            .enumerate()
            .filter(|(_, x)| !x.is_nan())
            .map(|(j, &x)| (x, j as u32))
            .collect();
        all.sort_by(rank);
        all.truncate(k);
        all
    }

    #[test]
    fn selection_equals_a_sort() {
        let mut top = TopK::default();
        for (n, k) in [
            (1usize, 1usize),
            (10, 10),
            (10, 3),
            (1000, 100),
            (49_152, 100),
            (300, 299),
        ] {
            let row: Vec<f32> = (0..n)
                .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 12) as f32 * 1e-3)
                .collect();
            assert_eq!(
                top.select(&row, k),
                by_sort(&row, k).as_slice(),
                "n={n} k={k}"
            );
        }
    }

    #[test]
    fn ties_prefer_lower_indices_and_k_is_capped() {
        let mut top = TopK::default();
        let row = [1.0f32, 3.0, 3.0, 1.0, 3.0, 0.0];
        assert_eq!(top.select(&row, 2), &[(3.0, 1), (3.0, 2)]);
        assert_eq!(
            top.select(&row, 4),
            &[(3.0, 1), (3.0, 2), (3.0, 4), (1.0, 0)]
        );
        assert_eq!(top.select(&row, 10).len(), 6);
        let flat = vec![0.5f32; 5000];
        let got: Vec<u32> = top.select(&flat, 40).iter().map(|e| e.1).collect();
        assert_eq!(got, (0..40).collect::<Vec<u32>>());
    }

    #[test]
    fn nan_is_never_selected() {
        let mut top = TopK::default();
        let row = [f32::NAN, 1.0, f32::NAN, 2.0];
        assert_eq!(top.select(&row, 2), &[(2.0, 3), (1.0, 1)]);
    }
}
