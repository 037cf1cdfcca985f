//! Top-k selection over large vocabularies without a full sort.
//!
//! `Tensor::topk_with_indices` in Burn 0.21 sorts each whole row. For a
//! vocabulary of 49k–152k entries and k = 100 that sort dominates the loss.
//! Here each row is cut into chunks of `S` entries (a divisor of the vocabulary
//! size near 16); the top-k entries all lie in the k chunks with the largest
//! maxima, so only the `C = V / S` chunk maxima and then `k·S` candidates are
//! sorted. Everything is tensor ops, so it runs on any backend.

use burn::tensor::{backend::Backend, Int, Tensor};

/// Preferred chunk size; the actual one is the divisor of `V` closest to it.
const TARGET_CHUNK: usize = 16;

/// Indices of the `k` largest values along the last dimension, ordered by
/// decreasing value. Ties are broken arbitrarily (as `torch.topk`). `k` is
/// capped at the row length.
///
/// # Shapes
/// `x: [batch, len, V]` → `[batch, len, min(k, V)]`.
pub fn topk_indices<B: Backend>(x: Tensor<B, 3>, k: usize) -> Tensor<B, 3, Int> {
    let [batch, len, vocab] = x.dims();
    let k = k.min(vocab);
    let rows = x.reshape([batch * len, vocab]);
    topk_rows(rows, k).reshape([batch, len, k])
}

/// Top-k indices of each row of a 2-D tensor (recursive on the chunk maxima).
fn topk_rows<B: Backend>(x: Tensor<B, 2>, k: usize) -> Tensor<B, 2, Int> {
    let [n, v] = x.dims();
    let chunk = match chunk_size(v, k) {
        Some(s) => s,
        None => return sort_topk(x, k),
    };
    let chunks = v / chunk;
    let device = x.device();
    // [n, chunks] maxima of each chunk; the top-k values lie in the k best chunks.
    let chunk_max = x
        .clone()
        .reshape([n, chunks, chunk])
        .max_dim(2)
        .reshape([n, chunks]);
    let best_chunks = topk_rows(chunk_max, k); // [n, k]
    let offsets = Tensor::<B, 1, Int>::arange(0..chunk as i64, &device).reshape([1, 1, chunk]);
    let candidates =
        (best_chunks.reshape([n, k, 1]).mul_scalar(chunk as i64) + offsets).reshape([n, k * chunk]);
    let values = x.gather(1, candidates.clone());
    let best = sort_topk(values, k);
    candidates.gather(1, best)
}

/// Top-k by a full descending sort of each row.
fn sort_topk<B: Backend>(x: Tensor<B, 2>, k: usize) -> Tensor<B, 2, Int> {
    let [n, _] = x.dims();
    let (_, indices) = x.sort_descending_with_indices(1);
    indices.slice([0..n, 0..k])
}

/// The chunk size to use for a row of `v` entries, or `None` when chunking
/// would not shrink the sort enough to pay for itself.
fn chunk_size(v: usize, k: usize) -> Option<usize> {
    let best = (2..=128usize)
        .filter(|s| v.is_multiple_of(*s))
        .min_by_key(|&s| s.abs_diff(TARGET_CHUNK))?;
    // Worth it only if both sorts together are much shorter than one full row.
    (v / best + k * best <= v / 2).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, TensorData};

    type B = NdArray<f64>;

    fn reference(x: &[f64], v: usize, k: usize) -> Vec<Vec<f64>> {
        x.chunks(v)
            .map(|row| {
                let mut r = row.to_vec();
                r.sort_by(|a, b| b.total_cmp(a));
                r.truncate(k);
                r
            })
            .collect()
    }

    #[test]
    fn chunked_topk_matches_a_full_sort() {
        let dev = Default::default();
        <B as Backend>::seed(&dev, 3);
        for &(v, k) in &[
            (49152usize, 100usize),
            (4096, 7),
            (3000, 50),
            (97, 10),
            (10, 10),
        ] {
            let x = Tensor::<B, 3>::random([2, 3, v], Distribution::Normal(0.0, 3.0), &dev);
            let data = x.clone().into_data().to_vec::<f64>().unwrap();
            let idx = topk_indices(x.clone(), k);
            assert_eq!(idx.dims(), [2, 3, k]);
            let got = x.gather(2, idx).into_data().to_vec::<f64>().unwrap();
            let want: Vec<f64> = reference(&data, v, k).concat();
            assert_eq!(got, want, "v={v} k={k}");
        }
    }

    #[test]
    fn ties_and_peaks_in_one_chunk() {
        let dev = Default::default();
        // All top values crowded into a single chunk, the rest tied.
        let mut row = vec![0.0f64; 1024];
        for (i, x) in row.iter_mut().enumerate().take(16) {
            *x = 100.0 - i as f64;
        }
        let x = Tensor::<B, 3>::from_data(TensorData::new(row.clone(), [1, 1, 1024]), &dev);
        let got = x
            .clone()
            .gather(2, topk_indices(x, 20))
            .into_data()
            .to_vec::<f64>()
            .unwrap();
        assert_eq!(got, reference(&row, 1024, 20).concat());
    }

    #[test]
    fn chunk_size_is_a_divisor_near_16() {
        assert_eq!(chunk_size(49152, 100), Some(16));
        assert_eq!(chunk_size(151936, 100), Some(16));
        assert_eq!(chunk_size(128256, 100), Some(16));
        assert_eq!(chunk_size(97, 10), None); // prime: full sort
        assert_eq!(chunk_size(64, 10), None); // too small to gain
    }
}
