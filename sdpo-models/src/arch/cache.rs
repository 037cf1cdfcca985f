//! Explicit key/value cache: the model stays stateless, the caller owns the cache.
//!
//! Each layer's keys and values live in one buffer per tensor, `[batch, capacity, kv_heads,
//! head_dim]` (token-major, the layout the projections produce), allocated once and written
//! in place: appending a token writes its keys and values after the filled positions (Burn's
//! `slice_assign`, which writes into a buffer nothing else holds), and attention reads the
//! filled prefix. A cache built with [`KvCache::with_capacity`] never reallocates within
//! that capacity; past it (or without one) a buffer doubles, so appending stays amortized
//! O(new tokens) rather than copying the whole cache every step.

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::kernels::{self, DecoderBackend};

/// Keys and values of the tokens seen so far, per layer, after RoPE and before any
/// grouped-query repeat.
///
/// Pass the same cache to successive [`CausalLm::forward_hidden`](super::CausalLm::forward_hidden)
/// calls; the key mask of each call must then cover all cached tokens plus the new ones.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerKv<B>>>,
    capacity: usize,
}

/// One layer's key and value buffers.
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    /// `[batch, capacity, kv_heads, head_dim]`; positions `0..len` are filled.
    pub keys: Tensor<B, 4>,
    /// `[batch, capacity, kv_heads, head_dim]`; positions `0..len` are filled.
    pub values: Tensor<B, 4>,
    /// Filled positions.
    pub len: usize,
}

/// What attention reads after an append: the layer's buffers and how much of them is filled.
#[derive(Debug, Clone)]
pub struct CachedKv<B: Backend> {
    /// `[batch, capacity, kv_heads, head_dim]`.
    pub keys: Tensor<B, 4>,
    /// `[batch, capacity, kv_heads, head_dim]`.
    pub values: Tensor<B, 4>,
    /// Filled positions (cached + just appended).
    pub len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` layers; buffers grow as tokens arrive.
    pub fn new(num_layers: usize) -> Self {
        Self::with_capacity(num_layers, 0)
    }

    /// An empty cache whose buffers hold `capacity` positions per row from the first append
    /// (prompt + new tokens for generation): no reallocation until then.
    pub fn with_capacity(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            capacity,
        }
    }

    /// Allocates `capacity` positions per row on the first append (prompt + new tokens for
    /// generation); a cache that already holds tokens keeps its buffers (they grow on demand).
    pub fn reserve(&mut self, capacity: usize) {
        if self.layers.iter().all(Option::is_none) {
            self.capacity = self.capacity.max(capacity);
        }
    }

    /// Number of cached positions (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |kv| kv.len)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of layers the cache was built for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Rows of the batch the cache holds (0 when empty).
    pub fn batch(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |kv| kv.keys.dims()[0])
    }

    /// One layer's buffers, if anything is cached.
    pub fn layer(&self, layer: usize) -> Option<&LayerKv<B>> {
        self.layers.get(layer).and_then(Option::as_ref)
    }

    /// Keeps, reorders or repeats rows of the batch: row `i` of the result is row
    /// `rows[i]` now, in every layer (a copy of the buffers). Used to give the samples of a
    /// group the keys and values of their one shared prompt, and to drop finished rows.
    ///
    /// # Shapes
    /// - `rows`: `[new_batch]` indices into the current batch
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for kv in self.layers.iter_mut().flatten() {
            kv.keys = kv.keys.clone().select(0, rows.clone());
            kv.values = kv.values.clone().select(0, rows.clone());
        }
    }

    /// Writes new keys/values for `layer` after its filled positions and returns the
    /// buffers to attend over.
    ///
    /// # Shapes
    /// - `keys`, `values`: `[batch, new, kv_heads, head_dim]`
    pub(crate) fn append(
        &mut self,
        layer: usize,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> CachedKv<B>
    where
        B: DecoderBackend,
    {
        let [batch, new, heads, dim] = keys.dims();
        let kv = match self.layers[layer].take() {
            Some(kv) if kv.len + new <= kv.keys.dims()[1] => kv,
            Some(kv) => {
                let capacity = (2 * kv.keys.dims()[1]).max(kv.len + new);
                grow(kv, capacity)
            }
            None => {
                let capacity = self.capacity.max(new);
                let options = (&keys.device(), keys.dtype());
                let zeros = || Tensor::zeros([batch, capacity, heads, dim], options);
                LayerKv {
                    keys: zeros(),
                    values: zeros(),
                    len: 0,
                }
            }
        };
        let kv = LayerKv {
            keys: kernels::write_positions(kv.keys, kv.len, keys),
            values: kernels::write_positions(kv.values, kv.len, values),
            len: kv.len + new,
        };
        let out = CachedKv {
            keys: kv.keys.clone(),
            values: kv.values.clone(),
            len: kv.len,
        };
        self.layers[layer] = Some(kv);
        out
    }
}

/// The buffers reallocated with `capacity` positions, the filled ones copied.
fn grow<B: Backend>(kv: LayerKv<B>, capacity: usize) -> LayerKv<B> {
    let [batch, _, heads, dim] = kv.keys.dims();
    let options = (&kv.keys.device(), kv.keys.dtype());
    let copy = |old: Tensor<B, 4>| {
        Tensor::zeros([batch, capacity, heads, dim], options).slice_assign(
            [0..batch, 0..kv.len, 0..heads, 0..dim],
            old.narrow(1, 0, kv.len),
        )
    };
    LayerKv {
        keys: copy(kv.keys),
        values: copy(kv.values),
        len: kv.len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    fn tokens(batch: usize, new: usize, start: f32) -> Tensor<B, 4> {
        let values: Vec<f32> = (0..batch * new * 2).map(|i| start + i as f32).collect();
        Tensor::from_data(
            TensorData::new(values, [batch, new, 1, 2]),
            &Default::default(),
        )
    }

    #[test]
    fn appends_in_place_and_grows_past_its_capacity() {
        let mut cache = KvCache::<B>::with_capacity(1, 3);
        let first = cache.append(0, tokens(2, 2, 0.0), tokens(2, 2, 100.0));
        assert_eq!((first.len, first.keys.dims()), (2, [2, 3, 1, 2]));
        drop(first);
        let second = cache.append(0, tokens(2, 1, 50.0), tokens(2, 1, 150.0));
        assert_eq!((second.len, second.keys.dims()[1]), (3, 3));
        drop(second);
        // Past the capacity: doubled, the filled positions kept.
        let third = cache.append(0, tokens(2, 2, 70.0), tokens(2, 2, 170.0));
        assert_eq!((third.len, third.keys.dims()[1]), (5, 6));
        let keys: Vec<f32> = third.keys.narrow(1, 0, 5).into_data().to_vec().unwrap();
        // Row 0: tokens (0,1), (2,3) | 50,51 | 70,71, 72,73.
        assert_eq!(&keys[..10], &[0., 1., 2., 3., 50., 51., 70., 71., 72., 73.]);
        // Row 1: (4..8) | 52,53 | 74..78.
        assert_eq!(&keys[10..], &[4., 5., 6., 7., 52., 53., 74., 75., 76., 77.]);
        assert_eq!(cache.len(), 5);
    }

    #[test]
    fn selected_rows_keep_their_positions() {
        let mut cache = KvCache::<B>::new(2);
        for layer in 0..2 {
            cache.append(layer, tokens(2, 2, 0.0), tokens(2, 2, 10.0));
        }
        let rows =
            Tensor::<B, 1, Int>::from_data(TensorData::from([1i64, 1, 0]), &Default::default());
        cache.select_rows(rows);
        assert_eq!(cache.batch(), 3);
        let kv = cache.layer(1).unwrap();
        let keys: Vec<f32> = kv.keys.clone().into_data().to_vec().unwrap();
        assert_eq!(keys, vec![4., 5., 6., 7., 4., 5., 6., 7., 0., 1., 2., 3.]);
        assert_eq!(kv.len, 2);
    }
}
