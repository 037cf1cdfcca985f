//! Grouped-query self-attention with optional q/k biases and per-head q/k RMSNorm.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, Bool, Device, Tensor};

use super::cache::KvCache;
use super::config::ModelConfig;
use super::delta::{project, LayerDelta, Projection};
use super::norm::RmsNorm;
use super::rope::apply_rotary;

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
    /// - `cos`, `sin`: `[batch, 1, seq, head_dim]` (see [`RotaryEmbedding::cos_sin`](super::rope::RotaryEmbedding::cos_sin))
    /// - `mask`: `[batch, 1, seq, cached + seq]`, `true` = masked out
    /// - returns `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: &Tensor<B, 4, Bool>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        self.forward_with(x, cos, sin, mask, cache, None)
    }

    /// [`Attention::forward`] with an optional additive term on the projections
    /// (`y = x·W + b + Δ(x)`, e.g. LoRA adapters).
    ///
    /// # Shapes
    /// As in [`Attention::forward`].
    pub fn forward_with(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: &Tensor<B, 4, Bool>,
        cache: Option<(&mut KvCache<B>, usize)>,
        delta: Option<LayerDelta<'_, B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (nq, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, d]).swap_dims(1, 2);
        let mut q = heads(project(&self.q_proj, Projection::Q, delta, x.clone()), nq);
        let mut k = heads(project(&self.k_proj, Projection::K, delta, x.clone()), nkv);
        let mut v = heads(project(&self.v_proj, Projection::V, delta, x), nkv);
        if let Some(norm) = &self.q_norm {
            q = norm.forward(q);
        }
        if let Some(norm) = &self.k_norm {
            k = norm.forward(k);
        }
        q = apply_rotary(q, cos, sin);
        k = apply_rotary(k, cos, sin);
        if let Some((cache, layer)) = cache {
            (k, v) = cache.append(layer, k, v);
        }
        let k = repeat_kv(k, nq / nkv);
        let v = repeat_kv(v, nq / nkv);
        let [_, _, q_len, k_len] = mask.dims();
        let mask = mask.clone().expand([batch, nq, q_len, k_len]);
        let options = AttentionModuleOptions {
            scale: Some(1.0 / (d as f64).sqrt()),
            softcap: None,
            is_causal: false,
        };
        let out = attention(q, k, v, Some(mask), None, options);
        project(
            &self.o_proj,
            Projection::O,
            delta,
            out.swap_dims(1, 2).reshape([batch, seq, nq * d]),
        )
    }
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
