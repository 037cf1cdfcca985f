//! Top-k of one row by selection, O(V) rather than a sort.
//!
//! Entries above a running threshold go into a buffer of at most `2k`; when it
//! fills, `select_nth_unstable` keeps the best `k` and raises the threshold to
//! the k-th value. Order is by value, then by lower index, so ties at the
//! boundary are resolved the same way every time. NaN entries are never
//! selected (the caller treats a row with NaN as broken anyway).

use std::cmp::Ordering;

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
        let buf = &mut self.buf;
        buf.clear();
        if k == 0 {
            return buf;
        }
        let cap = 2 * k.max(16);
        buf.reserve(cap);
        let mut threshold = f32::NEG_INFINITY;
        let mut filled = false;
        for (j, &x) in row.iter().enumerate() {
            // Until k entries are in, take everything that is not NaN.
            if x > threshold || (!filled && x == threshold) {
                buf.push((x, j as u32));
                if buf.len() == cap {
                    buf.select_nth_unstable_by(k - 1, rank);
                    buf.truncate(k);
                    threshold = buf[k - 1].0;
                    filled = true;
                }
            }
        }
        if buf.len() > k {
            buf.select_nth_unstable_by(k - 1, rank);
            buf.truncate(k);
        }
        buf.sort_unstable_by(rank);
        buf
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
