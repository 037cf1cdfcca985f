//! Grouped-query self-attention with optional q/k biases and per-head q/k RMSNorm.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use std::cell::OnceCell;

use burn::tensor::{backend::Backend, Bool, Device, Tensor};

use super::cache::{CachedKv, KvCache};
use super::config::ModelConfig;
use super::delta::{project, LayerDelta, Projection};
use super::mask::attention_mask;
use super::norm::RmsNorm;
use super::rope::{apply_rotary, RotaryAngles};
use crate::kernels::{self, AttentionLayout, DecoderBackend};

/// Self-attention, field names as in HF checkpoints (`self_attn.q_proj`, ...).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `hidden → heads · head_dim`.
    pub q_proj: Linear<B>,
    /// `hidden → kv_heads · head_dim`.
    pub k_proj: Linear<B>,
    /// `hidden → kv_heads · head_dim`.
    pub v_proj: Linear<B>,
    /// `heads · head_dim → hidden`.
    pub o_proj: Linear<B>,
    /// Per-head RMSNorm on queries (Qwen3).
    pub q_norm: Option<RmsNorm<B>>,
    /// Per-head RMSNorm on keys (Qwen3).
    pub k_norm: Option<RmsNorm<B>>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Builds the block (weights lazily initialized; loading overwrites them).
    pub fn new(config: &ModelConfig, device: &Device<B>) -> Self {
        let h = config.hidden_size;
        let (nq, nkv, d) = (config.num_heads, config.num_kv_heads, config.head_dim);
        let lin = |i, o, bias| LinearConfig::new(i, o).with_bias(bias).init(device);
        let norm = || {
            config
                .qk_norm
                .then(|| RmsNorm::new(d, config.rms_norm_eps, device))
        };
        Self {
            q_proj: lin(h, nq * d, config.qkv_bias),
            k_proj: lin(h, nkv * d, config.qkv_bias),
            v_proj: lin(h, nkv * d, config.qkv_bias),
            o_proj: lin(nq * d, h, config.o_bias),
            q_norm: norm(),
            k_norm: norm(),
            num_heads: nq,
            num_kv_heads: nkv,
            head_dim: d,
        }
    }

    /// Attends `x` to itself and to the cached tokens, if any.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - `angles`: `[batch, seq, head_dim / 2]` (see [`RotaryEmbedding::cos_sin`](super::rope::RotaryEmbedding::cos_sin))
    /// - `mask`: the keys (`cached + seq` of them) and which each query sees
    /// - returns `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        angles: &RotaryAngles<B>,
        mask: &AttentionMask<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3>
    where
        B: DecoderBackend,
    {
        self.forward_with(x, angles, mask, cache, None)
    }

    /// [`Attention::forward`] with an optional additive term on the projections
    /// (`y = x·W + b + Δ(x)`, e.g. LoRA adapters).
    ///
    /// # Shapes
    /// As in [`Attention::forward`].
    pub fn forward_with(
        &self,
        x: Tensor<B, 3>,
        angles: &RotaryAngles<B>,
        mask: &AttentionMask<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
        delta: Option<LayerDelta<'_, B>>,
    ) -> Tensor<B, 3>
    where
        B: DecoderBackend,
    {
        let [batch, seq, _] = x.dims();
        let (nq, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // Heads as the projections lay them out: [batch, seq, heads, head_dim].
        let heads = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, d]);
        let mut q = heads(project(&self.q_proj, Projection::Q, delta, x.clone()), nq);
        let mut k = heads(project(&self.k_proj, Projection::K, delta, x.clone()), nkv);
        let v = heads(project(&self.v_proj, Projection::V, delta, x), nkv);
        if let Some(norm) = &self.q_norm {
            q = norm.forward(q);
        }
        if let Some(norm) = &self.k_norm {
            k = norm.forward(k);
        }
        let q = apply_rotary(q, angles);
        let k = apply_rotary(k, angles);
        let kv = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => CachedKv {
                keys: k,
                values: v,
                len: seq,
            },
        };
        let layout = AttentionLayout {
            keys: kv.len,
            window: mask.window,
            scale: 1.0 / (d as f64).sqrt(),
        };
        let out = kernels::attention(&q, &kv.keys, &kv.values, &mask.keys, layout)
            .unwrap_or_else(|| attention_composite(q, kv, mask, layout.scale));
        project(
            &self.o_proj,
            Projection::O,
            delta,
            out.reshape([batch, seq, nq * d]),
        )
    }
}

/// Which keys exist and which each query sees, for one forward: the key mask of the cached
/// and new tokens, the number of new tokens (queries, last in the key sequence), and the
/// sliding window. The dense `[batch, 1, queries, keys]` mask the composite attention needs
/// is built once, on first use.
#[derive(Debug)]
pub struct AttentionMask<B: Backend> {
    /// `[batch, keys]`, `true` = real token.
    pub keys: Tensor<B, 2, Bool>,
    /// New tokens per row.
    pub queries: usize,
    /// Sliding-window width, if any.
    pub window: Option<usize>,
    dense: OnceCell<Tensor<B, 4, Bool>>,
}

impl<B: Backend> AttentionMask<B> {
    /// The mask of `queries` new tokens placed at the end of `keys`.
    pub fn new(keys: Tensor<B, 2, Bool>, queries: usize, window: Option<usize>) -> Self {
        Self {
            keys,
            queries,
            window,
            dense: OnceCell::new(),
        }
    }

    /// `[batch, 1, queries, keys]`, `true` = masked out ([`attention_mask`]).
    pub fn dense(&self) -> Tensor<B, 4, Bool> {
        self.dense
            .get_or_init(|| attention_mask(self.keys.clone(), self.queries, self.window))
            .clone()
    }
}

/// Attention as tensor operations (keys and values repeated per query head, Burn's
/// `attention` with the dense mask): the reference the kernels are tested against.
///
/// # Shapes
/// - `q`: `[batch, queries, heads, head_dim]`; `kv`: `[batch, capacity, kv_heads, head_dim]`
///   buffers, of which the first `kv.len` positions are read
/// - returns `[batch, queries, heads, head_dim]`
pub fn attention_composite<B: Backend>(
    q: Tensor<B, 4>,
    kv: CachedKv<B>,
    mask: &AttentionMask<B>,
    scale: f64,
) -> Tensor<B, 4> {
    let [batch, queries, nq, _] = q.dims();
    let nkv = kv.keys.dims()[2];
    let by_head = |t: Tensor<B, 4>| repeat_kv(t.narrow(1, 0, kv.len).swap_dims(1, 2), nq / nkv);
    let keys = by_head(kv.keys);
    let values = by_head(kv.values);
    let mask = mask.dense().expand([batch, nq, queries, kv.len]);
    let options = AttentionModuleOptions {
        scale: Some(scale),
        softcap: None,
        is_causal: false,
    };
    attention(q.swap_dims(1, 2), keys, values, Some(mask), None, options).swap_dims(1, 2)
}

/// Repeats each key/value head `n_rep` times so head `h` of the queries uses kv head
/// `h / n_rep` (HF `repeat_kv`).
///
/// # Shapes
/// - `x`: `[batch, kv_heads, len, head_dim]` → `[batch, kv_heads · n_rep, len, head_dim]`
pub fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kv, len, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, n_rep, len, d])
        .reshape([b, kv * n_rep, len, d])
}
