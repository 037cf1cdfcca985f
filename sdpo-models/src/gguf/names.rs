//! From llama.cpp's tensor names and layouts to Hugging Face's.

use super::error::GgufError;
use super::reader::{GgufFile, TensorData};

/// Whole-model tensors: GGUF name → Hugging Face name.
const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    // Absent when the embeddings are tied (`lm_head` reuses `model.embed_tokens`).
    ("output", "lm_head"),
];

/// Per-layer tensors: `blk.N.<gguf>` → `model.layers.N.<hf>`.
const BLOCK_NAMES: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    // Rows permuted by llama.cpp for the `llama` architecture; see `unpermute_qk`.
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    // Qwen3's per-head RMSNorm on queries and keys.
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The Hugging Face name of GGUF tensor `gguf_name`, or `None` for tensors
/// with no Hugging Face counterpart (e.g. `rope_freqs.weight`).
///
/// Both `.weight` and `.bias` suffixes map (`blk.3.attn_q.bias` →
/// `model.layers.3.self_attn.q_proj.bias`).
pub fn hf_tensor_name(gguf_name: &str) -> Option<String> {
    let (stem, suffix) = gguf_name.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    if let Some(rest) = stem.strip_prefix("blk.") {
        let (layer, part) = rest.split_once('.')?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (_, hf) = BLOCK_NAMES.iter().find(|(g, _)| *g == part)?;
        return Some(format!("model.layers.{layer}.{hf}.{suffix}"));
    }
    let (_, hf) = GLOBAL_NAMES.iter().find(|(g, _)| *g == stem)?;
    Some(format!("{hf}.{suffix}"))
}

/// The GGUF name of Hugging Face tensor `hf_name`, the inverse of [`hf_tensor_name`]
/// (`model.layers.3.mlp.up_proj.weight` → `blk.3.ffn_up.weight`), or `None` for names
/// outside the table.
pub fn gguf_tensor_name(hf_name: &str) -> Option<String> {
    let (stem, suffix) = hf_name.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    if let Some(rest) = stem.strip_prefix("model.layers.") {
        let (layer, part) = rest.split_once('.')?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (gguf, _) = BLOCK_NAMES.iter().find(|(_, h)| *h == part)?;
        return Some(format!("blk.{layer}.{gguf}.{suffix}"));
    }
    let (gguf, _) = GLOBAL_NAMES.iter().find(|(_, h)| *h == stem)?;
    Some(format!("{gguf}.{suffix}"))
}

/// Whether llama.cpp permuted the q/k projection rows of this architecture
/// (`convert_hf_to_gguf.py` does it for `llama`, whose GGUF RoPE is the
/// interleaved kind; Qwen2/Qwen3 keep Hugging Face's half-split layout).
pub fn permutes_qk(architecture: &str) -> bool {
    architecture == "llama"
}

/// The head count llama.cpp used to permute tensor `gguf_name`, or `None` if
/// it is not a permuted q/k projection (weight or bias).
pub fn qk_permutation_heads(gguf_name: &str, n_head: usize, n_head_kv: usize) -> Option<usize> {
    let part = gguf_name.strip_prefix("blk.")?.split_once('.')?.1;
    match part {
        "attn_q.weight" | "attn_q.bias" => Some(n_head),
        "attn_k.weight" | "attn_k.bias" => Some(n_head_kv),
        _ => None,
    }
}

/// Undoes llama.cpp's q/k row permutation of a row-major `[rows, cols]` matrix
/// (use `cols = 1` for a bias).
///
/// `convert_hf_to_gguf.py` stores `w.reshape(n_head, 2, rows / n_head / 2, cols)
/// .swapaxes(1, 2)`: within each head, GGUF row `2 i + j` is Hugging Face row
/// `j * half + i` (`half = rows / n_head / 2`). This function returns the
/// Hugging Face order. Returns `None` if `rows` is not a multiple of
/// `2 * n_head` or `data.len() != rows * cols`.
pub fn unpermute_qk(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Option<Vec<f32>> {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) || rows.checked_mul(cols)? != data.len() {
        return None;
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + 2 * i + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Some(out)
}

/// A tensor ready for a Hugging Face-layout model.
#[derive(Clone, Debug, PartialEq)]
pub struct HfTensor {
    /// Hugging Face name (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// The GGUF name it came from.
    pub gguf_name: String,
    /// Dequantized data, row-major, in Hugging Face layout.
    pub tensor: TensorData,
}

impl GgufFile {
    /// Tensor `gguf_name` dequantized, renamed and (for `llama` q/k
    /// projections) un-permuted into Hugging Face layout. `Ok(None)` for
    /// tensors with no Hugging Face counterpart.
    ///
    /// # Errors
    /// As [`GgufFile::dequantize`]; [`GgufError::MissingKey`] if the head
    /// counts needed to un-permute are absent; [`GgufError::InvalidTensor`] if
    /// the q/k shape does not fit them.
    pub fn hf_tensor(&self, gguf_name: &str) -> Result<Option<HfTensor>, GgufError> {
        let Some(name) = hf_tensor_name(gguf_name) else {
            return Ok(None);
        };
        let mut tensor = self.dequantize(gguf_name)?;
        let arch = self.require_str("general.architecture")?;
        if permutes_qk(arch) && qk_permutation_heads(gguf_name, 1, 1).is_some() {
            let n_head = self.require_usize(&format!("{arch}.attention.head_count"))?;
            let n_head_kv = self
                .get_usize(&format!("{arch}.attention.head_count_kv"))?
                .unwrap_or(n_head);
            let heads = qk_permutation_heads(gguf_name, n_head, n_head_kv).unwrap_or(n_head);
            let rows = tensor.shape.first().copied().unwrap_or(1);
            let cols = tensor.shape.iter().skip(1).product();
            tensor.data = unpermute_qk(&tensor.data, rows, cols, heads).ok_or_else(|| {
                GgufError::InvalidTensor {
                    file: self.path().to_path_buf(),
                    tensor: gguf_name.into(),
                    reason: format!(
                        "shape {:?} cannot be un-permuted for {heads} heads (rows must be a multiple of {})",
                        tensor.shape,
                        2 * heads
                    ),
                }
            })?;
        }
        Ok(Some(HfTensor {
            name,
            gguf_name: gguf_name.into(),
            tensor,
        }))
    }

    /// Every tensor with a Hugging Face counterpart, in file order, converted
    /// lazily by [`GgufFile::hf_tensor`] (one tensor in memory at a time).
    pub fn hf_tensors(&self) -> impl Iterator<Item = Result<HfTensor, GgufError>> + '_ {
        self.tensors()
            .iter()
            .filter_map(|t| self.hf_tensor(&t.name).transpose())
    }

    pub(crate) fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_str(key)?.ok_or_else(|| GgufError::MissingKey {
            file: self.path().to_path_buf(),
            key: key.into(),
        })
    }

    pub(crate) fn require_usize(&self, key: &str) -> Result<usize, GgufError> {
        self.get_usize(key)?.ok_or_else(|| GgufError::MissingKey {
            file: self.path().to_path_buf(),
            key: key.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_like_the_table() {
        let cases = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
            (
                "blk.0.attn_q.weight",
                "model.layers.0.self_attn.q_proj.weight",
            ),
            (
                "blk.12.attn_k.bias",
                "model.layers.12.self_attn.k_proj.bias",
            ),
            (
                "blk.1.attn_v.weight",
                "model.layers.1.self_attn.v_proj.weight",
            ),
            (
                "blk.1.attn_output.weight",
                "model.layers.1.self_attn.o_proj.weight",
            ),
            (
                "blk.2.attn_q_norm.weight",
                "model.layers.2.self_attn.q_norm.weight",
            ),
            (
                "blk.2.attn_k_norm.weight",
                "model.layers.2.self_attn.k_norm.weight",
            ),
            (
                "blk.3.ffn_gate.weight",
                "model.layers.3.mlp.gate_proj.weight",
            ),
            ("blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight"),
            (
                "blk.3.ffn_down.weight",
                "model.layers.3.mlp.down_proj.weight",
            ),
            (
                "blk.4.attn_norm.weight",
                "model.layers.4.input_layernorm.weight",
            ),
            (
                "blk.4.ffn_norm.weight",
                "model.layers.4.post_attention_layernorm.weight",
            ),
        ];
        for (gguf, hf) in cases {
            assert_eq!(hf_tensor_name(gguf).as_deref(), Some(hf), "{gguf}");
            assert_eq!(gguf_tensor_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        for unknown in [
            "model.rotary_emb.inv_freq",
            "model.layers.x.mlp.up_proj.weight",
            "model.layers.0.mlp.up_proj",
            "model.layers.0.mlp.fc.weight",
            "",
        ] {
            assert_eq!(gguf_tensor_name(unknown), None, "{unknown}");
        }
        for unknown in [
            "rope_freqs.weight",
            "blk.x.attn_q.weight",
            "blk.0.attn_q",
            "blk..attn_q.weight",
            "",
        ] {
            assert_eq!(hf_tensor_name(unknown), None, "{unknown}");
        }
    }

    /// `convert_hf_to_gguf.py`'s permutation, written out for the test.
    fn permute(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let (head_dim, half) = (rows / n_head, rows / n_head / 2);
        let mut out = vec![0f32; data.len()];
        for h in 0..n_head {
            for i in 0..half {
                for j in 0..2 {
                    let dst = h * head_dim + 2 * i + j;
                    let src = h * head_dim + j * half + i;
                    out[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&data[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_the_permutation() {
        // 2 heads of dim 4, 3 columns: hand-checked row order for head 0 is
        // GGUF [r0, r2, r1, r3] (interleaved halves).
        let rows: Vec<f32> = (0..8 * 3).map(|x| x as f32).collect();
        let permuted = permute(&rows, 8, 3, 2);
        assert_eq!(&permuted[3..6], &rows[6..9]);
        assert_eq!(unpermute_qk(&permuted, 8, 3, 2), Some(rows));
    }

    #[test]
    fn unpermute_rejects_shapes_that_do_not_fit_the_heads() {
        assert_eq!(unpermute_qk(&[0.0; 6], 6, 1, 2), None);
        assert_eq!(unpermute_qk(&[0.0; 8], 8, 2, 2), None);
        assert_eq!(unpermute_qk(&[0.0; 8], 8, 1, 0), None);
    }
}
