//! Explicit key/value cache: the model stays stateless, the caller owns the cache.

use burn::tensor::{backend::Backend, Tensor};

/// Keys and values of the tokens seen so far, per layer, after RoPE and before the
/// grouped-query repeat.
///
/// Pass the same cache to successive [`CausalLm::forward_hidden`](super::CausalLm::forward_hidden)
/// calls; the key mask of each call must then cover all cached tokens plus the new ones.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerKv<B>>>,
}

/// One layer's cached keys and values.
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    /// `[batch, kv_heads, cached, head_dim]`
    pub keys: Tensor<B, 4>,
    /// `[batch, kv_heads, cached, head_dim]`
    pub values: Tensor<B, 4>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
        }
    }

    /// Number of cached positions (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |kv| kv.keys.dims()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of layers the cache was built for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Appends new keys/values for `layer` and returns all keys/values of that layer.
    ///
    /// # Shapes
    /// - `keys`, `values`: `[batch, kv_heads, new, head_dim]`
    /// - returns `[batch, kv_heads, cached + new, head_dim]` twice
    pub(crate) fn append(
        &mut self,
        layer: usize,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let merged = match self.layers[layer].take() {
            Some(old) => LayerKv {
                keys: Tensor::cat(vec![old.keys, keys], 2),
                values: Tensor::cat(vec![old.values, values], 2),
            },
            None => LayerKv { keys, values },
        };
        let out = (merged.keys.clone(), merged.values.clone());
        self.layers[layer] = Some(merged);
        out
    }
}
