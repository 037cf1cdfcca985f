//! The decoder kernels ([`DecoderBackend`]) against the composite tensor code they replace,
//! on every backend of the suite; and whole generations with kernels against the same
//! generations with every operation composite ([`kernels::composite_only`]).
//!
//! Which kernels a backend has: NdArray and Flex all of them (CPU); Wgpu and Cuda the
//! attention kernel (CubeCL), the rest composite (Burn's fusion compiles those). Each test
//! asserts that the kernel it compares ran where the backend has it, so a kernel silently
//! declining cannot pass as "equal to the composite code".
//!
//! Tolerances: the kernels run the composite code's arithmetic per element and sum in
//! another order (SIMD lanes, blocks, other tile splits): relative differences of a few
//! 1e-7 per sum, so 1e-5 relative (CPU) covers sums of a few thousand terms with margin
//! while a wrong index, mask or scale is off by 1e-2 or more. GPU sums reorder more (tree
//! reductions, online softmax): 1e-4.

use burn::tensor::{Bool, Distribution, Int, Tensor, TensorData};
use sdpo::models::arch::attention::attention_composite;
use sdpo::models::arch::cache::CachedKv;
use sdpo::models::arch::mlp::swiglu_composite;
use sdpo::models::arch::norm::RmsNorm;
use sdpo::models::arch::rope::{apply_rotary, apply_rotary_composite, RotaryEmbedding};
use sdpo::models::arch::AttentionMask;
use sdpo::models::generate::{
    generate, left_pad, select_tokens, Generation, RowStreams, SamplingParams,
};
use sdpo::models::kernels::{self, AttentionLayout, DecoderBackend};
use sdpo::models::load_hf_dir;

use crate::common::{host_f32, host_i64, serial};
use crate::lora_fixtures::fixture;
use crate::Target;

fn tolerance<B: Target>() -> f64 {
    if B::GPU {
        1e-4
    } else {
        1e-5
    }
}

/// Max |a − b| / max(max |b|, 1e-3), with the arrays' lengths checked.
fn relative_gap(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f64, |m, &x| m.max(f64::from(x).abs()));
    let gap = a.iter().zip(b).fold(0f64, |m, (&x, &y)| {
        m.max((f64::from(x) - f64::from(y)).abs())
    });
    gap / scale
}

fn random<B: DecoderBackend, const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

pub fn rms_norm_kernel_equals_composite<B: Target>() {
    let _serial = serial();
    B::seed(&Default::default(), 11);
    let mut norm = RmsNorm::<B>::new(37, 1e-6, &Default::default());
    norm.weight = burn::module::Param::from_tensor(random::<B, 1>([37]));
    let x = random::<B, 3>([3, 5, 37]).mul_scalar(4.0);
    let fused = kernels::rms_norm(&x, &norm.weight.val(), norm.eps);
    assert_eq!(fused.is_some(), !B::GPU, "{}: the CPU kernel runs", B::NAME);
    let got = host_f32(norm.forward(x.clone()));
    let want = host_f32(norm.forward_composite(x));
    let gap = relative_gap(&got, &want);
    assert!(gap < tolerance::<B>(), "{}: {gap}", B::NAME);
}

pub fn rotary_kernel_equals_composite<B: Target>() {
    let _serial = serial();
    B::seed(&Default::default(), 12);
    let device = Default::default();
    let rope = RotaryEmbedding::<B>::new(&[1.0, 0.3, 0.01], &device);
    // Left-padded row 1: positions clamp at 0, then count.
    let positions =
        Tensor::<B, 2, Int>::from_data(TensorData::from([[0i64, 1, 2, 3], [0, 0, 0, 1]]), &device);
    let angles = rope.cos_sin(positions, burn::tensor::DType::F32);
    let x = random::<B, 4>([2, 4, 5, 6]);
    let fused = kernels::rotary(&x, &angles.cos, &angles.sin);
    assert_eq!(fused.is_some(), !B::GPU, "{}: the CPU kernel runs", B::NAME);
    let got = host_f32(apply_rotary(x.clone(), &angles));
    let want = host_f32(apply_rotary_composite(x, &angles));
    let gap = relative_gap(&got, &want);
    assert!(gap < tolerance::<B>(), "{}: {gap}", B::NAME);
}

pub fn swiglu_kernel_equals_composite<B: Target>() {
    let _serial = serial();
    B::seed(&Default::default(), 13);
    // Large gates of both signs: the sigmoid's two branches and its saturation.
    let gate = random::<B, 2>([7, 333]).mul_scalar(12.0);
    let up = random::<B, 2>([7, 333]);
    let fused = kernels::swiglu(&gate, &up);
    assert_eq!(fused.is_some(), !B::GPU, "{}: the CPU kernel runs", B::NAME);
    let want = host_f32(swiglu_composite(gate.clone(), up.clone()));
    let got = host_f32(fused.unwrap_or_else(|| swiglu_composite(gate, up)));
    let gap = relative_gap(&got, &want);
    assert!(gap < tolerance::<B>(), "{}: {gap}", B::NAME);
}

pub fn matmul_kernel_equals_composite_in_both_layouts<B: Target>() {
    let _serial = serial();
    B::seed(&Default::default(), 14);
    // Rows and widths off the SIMD and tile sizes; up to the kernel's row limit.
    for (m, k, n) in [(1, 37, 5), (3, 64, 129), (16, 130, 77), (32, 9, 300)] {
        let x = random::<B, 2>([m, k]);
        let w = random::<B, 2>([k, n]);
        let bias = random::<B, 1>([n]);
        let want = host_f32(x.clone().matmul(w.clone()).add(bias.clone().unsqueeze()));
        let fused = kernels::matmul(&x, &w, Some(&bias));
        assert_eq!(fused.is_some(), !B::GPU, "{}: the CPU kernel runs", B::NAME);
        if let Some(got) = fused {
            let gap = relative_gap(&host_f32(got), &want);
            assert!(gap < tolerance::<B>(), "{} {m}x{k}x{n}: {gap}", B::NAME);
        }
        // The transposed view of an [n, k] matrix (a tied output head).
        let e = random::<B, 2>([n, k]);
        let want = host_f32(x.clone().matmul(e.clone().transpose()));
        if let Some(got) = kernels::matmul(&x, &e.transpose(), None) {
            let gap = relative_gap(&host_f32(got), &want);
            assert!(
                gap < tolerance::<B>(),
                "{} {m}x{k}x{n} (transposed): {gap}",
                B::NAME
            );
        }
    }
}

/// Attention over a cache whose buffers are longer than the filled keys: grouped heads, a
/// left-padded row, several queries, a sliding window, odd widths.
pub fn attention_kernel_equals_composite<B: Target>() {
    let _serial = serial();
    B::seed(&Default::default(), 15);
    let device = Default::default();
    for (queries, keys, window, d) in [(1, 9, None, 16), (4, 4, None, 12), (3, 11, Some(4), 7)] {
        let (batch, heads, kv_heads, capacity) = (2, 6, 2, keys + 3);
        let q = random::<B, 4>([batch, queries, heads, d]);
        let k = random::<B, 4>([batch, capacity, kv_heads, d]);
        let v = random::<B, 4>([batch, capacity, kv_heads, d]);
        let real: Vec<bool> = (0..batch * keys)
            .map(|i| i < keys || i - keys >= 2)
            .collect();
        let key_mask =
            Tensor::<B, 2, Bool>::from_data(TensorData::new(real, [batch, keys]), &device);
        let mask = AttentionMask::new(key_mask.clone(), queries, window);
        let layout = AttentionLayout {
            keys,
            window,
            scale: 1.0 / (d as f64).sqrt(),
        };
        let fused = kernels::attention(&q, &k, &v, &key_mask, layout)
            .expect("every backend of the suite has the kernel");
        let kv = CachedKv {
            keys: k,
            values: v,
            len: keys,
        };
        let want = host_f32(attention_composite(q, kv, &mask, layout.scale));
        let gap = relative_gap(&host_f32(fused), &want);
        assert!(
            gap < tolerance::<B>(),
            "{} q{queries} k{keys} w{window:?} d{d}: {gap}",
            B::NAME
        );
    }
}

pub fn cache_writes_equal_slice_assign<B: Target>() {
    let _serial = serial();
    B::seed(&Default::default(), 16);
    let buffer = random::<B, 4>([2, 7, 3, 4]);
    let values = random::<B, 4>([2, 2, 3, 4]);
    let want = host_f32(
        buffer
            .clone()
            .slice_assign([0..2, 3..5, 0..3, 0..4], values.clone()),
    );
    // A copy, so that the buffer is not shared and the write may happen in place.
    let own = Tensor::<B, 4>::from_data(buffer.into_data(), &Default::default());
    let got = host_f32(kernels::write_positions(own, 3, values));
    assert_eq!(got, want, "{}", B::NAME);
}

pub fn selection_kernel_equals_composite<B: Target>() {
    let _serial = serial();
    B::seed(&Default::default(), 17);
    let logits = random::<B, 2>([5, 1000]).mul_scalar(3.0);
    let greedy = SamplingParams::greedy(1);
    let want = select_tokens(logits.clone(), &greedy, None);
    if let Some((ids, log_probs)) = kernels::select(&logits, None, None) {
        assert!(!B::GPU);
        assert_eq!(host_i64(ids), host_i64(want.ids), "{}: argmax", B::NAME);
        let gap = relative_gap(&host_f32(log_probs), &host_f32(want.log_probs));
        assert!(
            gap < tolerance::<B>(),
            "{}: greedy log-probs {gap}",
            B::NAME
        );
    } else {
        assert!(B::GPU, "{}: the CPU kernel runs", B::NAME);
    }
    let sampling = SamplingParams {
        temperature: 0.7,
        ..SamplingParams::default()
    };
    let uniforms = [0.05f32, 0.31, 0.5, 0.77, 0.93];
    let u = Tensor::<B, 1>::from_data(TensorData::new(uniforms.to_vec(), [5]), &Default::default());
    let want = select_tokens(logits.clone(), &sampling, Some(u));
    if let Some((ids, log_probs)) = kernels::select(&logits, Some(0.7), Some(&uniforms)) {
        // These draws are not within rounding of a boundary between two tokens.
        assert_eq!(host_i64(ids), host_i64(want.ids), "{}: draws", B::NAME);
        let gap = relative_gap(&host_f32(log_probs), &host_f32(want.log_probs));
        assert!(
            gap < tolerance::<B>(),
            "{}: sampled log-probs {gap}",
            B::NAME
        );
    }
}

fn generation<B: Target>(
    model: &sdpo::models::CausalLm<B>,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
) -> Generation<B> {
    let (ids, mask) = left_pad::<B>(prompts, 0, &Default::default());
    let mut streams = RowStreams::new(3, 0, prompts.len());
    generate(model, ids, mask, params, 0, &mut streams).unwrap()
}

/// Greedy generation on the parity fixtures gives the same tokens with the kernels as with
/// every operation composite, and log-probabilities within the tolerance.
pub fn greedy_generation_with_kernels_equals_composite<B: Target>() {
    let prompts = vec![
        vec![5, 9, 13, 2],
        vec![7, 3],
        vec![5, 9, 13, 2],
        vec![11, 12, 40, 41, 42],
    ];
    for name in [
        "llama_tied_sharded",
        "qwen2_bf16",
        "mistral_window",
        "qwen3_f16",
        "llama3_rope",
    ] {
        let model = load_hf_dir::<B>(fixture(name), &Default::default()).unwrap();
        let params = SamplingParams::greedy(12);
        let fused = generation(&model, &prompts, &params);
        let composite = kernels::composite_only(|| generation(&model, &prompts, &params));
        assert_eq!(fused.tokens, composite.tokens, "{} {name}", B::NAME);
        let gap = relative_gap(&host_f32(fused.log_probs), &host_f32(composite.log_probs));
        assert!(gap < 1e-4, "{} {name}: log-probs {gap}", B::NAME);
    }
}

/// Repeated prompts are prefilled once and rows that stop leave the batch; each row's
/// samples (own random stream) and log-probs equal those of generating it alone.
pub fn shared_prefill_and_finished_rows_leave_each_row_unchanged<B: Target>() {
    let model = load_hf_dir::<B>(fixture("qwen2_bf16"), &Default::default()).unwrap();
    let prompts = vec![
        vec![5, 9, 13],
        vec![5, 9, 13],
        vec![5, 9, 13],
        vec![8, 1, 2, 3],
        vec![8, 1, 2, 3],
        vec![4],
    ];
    // Stop ids frequent enough under this near-uniform random model to end rows early.
    let params = SamplingParams {
        max_new_tokens: 16,
        stop_token_ids: (1..256).step_by(9).collect(),
        ..SamplingParams::default()
    };
    let (ids, mask) = left_pad::<B>(&prompts, 0, &Default::default());
    let mut streams = RowStreams::new(5, 0, prompts.len());
    let batch = generate(&model, ids, mask, &params, 0, &mut streams).unwrap();
    let lengths: Vec<usize> = batch.tokens.iter().map(Vec::len).collect();
    assert!(
        lengths.iter().any(|&l| l < 16) && lengths.iter().any(|&l| l > 2),
        "{}: rows should end at different steps: {lengths:?}",
        B::NAME
    );
    let batch_lp = host_f32(batch.log_probs.clone());
    let width = batch.log_probs.dims()[1];
    for (r, prompt) in prompts.iter().enumerate() {
        let (ids, mask) = left_pad::<B>(std::slice::from_ref(prompt), 0, &Default::default());
        let mut own = RowStreams::new(5, r as u64, 1);
        let alone = generate(&model, ids, mask, &params, 0, &mut own).unwrap();
        assert_eq!(alone.tokens[0], batch.tokens[r], "{} row {r}", B::NAME);
        let alone_lp = host_f32(alone.log_probs);
        let row_lp = &batch_lp[r * width..r * width + alone_lp.len()];
        let gap = relative_gap(row_lp, &alone_lp);
        assert!(gap < 1e-4, "{} row {r}: log-probs {gap}", B::NAME);
    }
}
