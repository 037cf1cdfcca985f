//! Positions and attention masks of a left-padded batch.

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

/// RoPE positions for a left-padded batch: `cumsum(mask) − 1`, clamped at 0.
///
/// # Shapes
/// - `mask`: `[batch, seq]`, `true` = real token → `[batch, seq]`
pub fn positions_from_mask<B: Backend>(mask: Tensor<B, 2, Bool>) -> Tensor<B, 2, Int> {
    mask.int().cumsum(1).sub_scalar(1).clamp_min(0)
}

/// The boolean attention mask (`true` = masked out) for `q_len` new queries placed at the end of
/// `key_mask`'s sequence: a key is masked when it is padding, in the future, or (with a sliding
/// window `w`) `w` or more positions back. A query always sees itself, so no row is fully
/// masked and padding rows stay finite.
///
/// # Shapes
/// - `key_mask`: `[batch, k_len]`, `true` = real token
/// - returns `[batch, 1, q_len, k_len]`
pub fn attention_mask<B: Backend>(
    key_mask: Tensor<B, 2, Bool>,
    q_len: usize,
    sliding_window: Option<usize>,
) -> Tensor<B, 4, Bool> {
    let [batch, k_len] = key_mask.dims();
    let device = key_mask.device();
    let past = k_len as i64 - q_len as i64;
    let rows = Tensor::<B, 1, Int>::arange(past..k_len as i64, &device)
        .reshape([q_len, 1])
        .expand([q_len, k_len]);
    let cols = Tensor::<B, 1, Int>::arange(0..k_len as i64, &device)
        .reshape([1, k_len])
        .expand([q_len, k_len]);
    let mut blocked = cols.clone().greater(rows.clone());
    if let Some(w) = sliding_window {
        // HF: key j is visible from query i when i − j < w.
        let too_old = rows.clone().sub(cols.clone()).greater_equal_elem(w as i64);
        blocked = blocked.bool_or(too_old);
    }
    let is_self = rows.equal(cols);
    let padding = key_mask
        .bool_not()
        .reshape([batch, 1, 1, k_len])
        .expand([batch, 1, q_len, k_len]);
    let blocked = blocked
        .reshape([1, 1, q_len, k_len])
        .expand([batch, 1, q_len, k_len]);
    let self_mask = is_self
        .reshape([1, 1, q_len, k_len])
        .expand([batch, 1, q_len, k_len]);
    blocked.bool_or(padding).bool_and(self_mask.bool_not())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    #[test]
    fn positions_follow_left_padding() {
        let device = Default::default();
        let mask = Tensor::<B, 2, Bool>::from_data(
            TensorData::from([[false, false, true, true], [true, true, true, true]]),
            &device,
        );
        let pos = positions_from_mask(mask)
            .into_data()
            .to_vec::<i64>()
            .unwrap();
        assert_eq!(pos, vec![0, 0, 0, 1, 0, 1, 2, 3]);
    }

    #[test]
    fn mask_blocks_padding_future_and_old_keys() {
        let device = Default::default();
        let key_mask =
            Tensor::<B, 2, Bool>::from_data(TensorData::from([[false, true, true, true]]), &device);
        let m = attention_mask(key_mask, 4, Some(2))
            .into_data()
            .to_vec::<bool>()
            .unwrap();
        #[rustfmt::skip]
        let want = [
            false, true,  true,  true,  // padding query: sees only itself
            true,  false, true,  true,
            true,  false, false, true,
            true,  true,  false, false, // window 2: key 1 is too old for query 3
        ];
        assert_eq!(m, want);
    }

    #[test]
    fn mask_with_cache_aligns_new_queries_at_the_end() {
        let device = Default::default();
        let key_mask =
            Tensor::<B, 2, Bool>::from_data(TensorData::from([[true, true, true]]), &device);
        let m = attention_mask(key_mask, 1, None)
            .into_data()
            .to_vec::<bool>()
            .unwrap();
        assert_eq!(m, vec![false, false, false]);
    }
}
