//! Parity of [`load_hf_dir`] + [`CausalLm::forward_logits`] with transformers on tiny random
//! models (`tests/fixtures/models/`, built by
//! `python3 scripts/make_model_fixtures.py sdpo-models/tests/fixtures/models`).
//!
//! Tolerance: max |ours − HF| ≤ 1e-4 · max |HF logit|. Both sides compute in f32 from the same
//! (f32, or f16/bf16 rounded then exactly widened) weights; the remaining differences are
//! summation order in matmuls/softmax and `rsqrt` vs `1/sqrt`, each ~1e-7 relative, grown by
//! two layers and a vocab projection to ~1e-6. 1e-4 leaves two orders of margin while any real
//! bug (wrong RoPE layout, missing bias or norm, wrong position ids, transposed weight)
//! moves logits by ≥ 1e-2 relative.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use safetensors::SafeTensors;
use sdpo_models::{load_hf_dir, CausalLm, LoadError};

/// One float element type per test binary (Burn's dtype settings are per device).
type B = NdArray<f32>;

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

struct Reference {
    ids: (Vec<i64>, Vec<usize>),
    logits: (Vec<f32>, Vec<usize>),
    batch_ids: (Vec<i64>, Vec<usize>),
    batch_mask: (Vec<i64>, Vec<usize>),
    batch_logits: (Vec<f32>, Vec<usize>),
}

fn read_reference(dir: &Path) -> Reference {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let i64s = |name: &str| {
        let t = st.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (v, t.shape().to_vec())
    };
    let f32s = |name: &str| {
        let t = st.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (v, t.shape().to_vec())
    };
    Reference {
        ids: i64s("ids"),
        logits: f32s("logits"),
        batch_ids: i64s("batch_ids"),
        batch_mask: i64s("batch_mask"),
        batch_logits: f32s("batch_logits"),
    }
}

fn run(model: &CausalLm<B>, ids: &(Vec<i64>, Vec<usize>), mask: &[bool]) -> (Vec<f32>, Vec<usize>) {
    let device = Default::default();
    let [b, s] = [ids.1[0], ids.1[1]];
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.0.clone(), [b, s]), &device);
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(mask.to_vec(), [b, s]), &device);
    let logits = model.forward_logits(ids, mask);
    let shape = logits.dims().to_vec();
    (logits.into_data().to_vec::<f32>().unwrap(), shape)
}

/// Max |ours − want| over real-token rows, relative to max |want| over those rows.
fn max_rel_error(ours: &[f32], want: &[f32], vocab: usize, real: &[bool]) -> f32 {
    let (mut err, mut scale) = (0f32, 0f32);
    for (row, &keep) in real.iter().enumerate() {
        if !keep {
            continue;
        }
        for i in row * vocab..(row + 1) * vocab {
            err = err.max((ours[i] - want[i]).abs());
            scale = scale.max(want[i].abs());
        }
    }
    err / scale
}

fn check_parity(name: &str) {
    let dir = fixture(name);
    let device = Default::default();
    let model = load_hf_dir::<B>(&dir, &device).unwrap_or_else(|e| panic!("{e}"));
    let r = read_reference(&dir);

    let all_real = vec![true; r.ids.0.len()];
    let (ours, shape) = run(&model, &r.ids, &all_real);
    assert_eq!(shape, r.logits.1, "{name}: logits shape");
    let vocab = shape[2];
    let err = max_rel_error(&ours, &r.logits.0, vocab, &all_real);
    eprintln!("{name}: unpadded max relative error {err:.2e}");
    assert!(err <= TOLERANCE, "{name}: unpadded relative error {err}");

    let mask: Vec<bool> = r.batch_mask.0.iter().map(|&m| m != 0).collect();
    let (ours, shape) = run(&model, &r.batch_ids, &mask);
    assert_eq!(shape, r.batch_logits.1, "{name}: batch logits shape");
    let err = max_rel_error(&ours, &r.batch_logits.0, vocab, &mask);
    eprintln!("{name}: left-padded max relative error {err:.2e}");
    assert!(err <= TOLERANCE, "{name}: left-padded relative error {err}");
    assert!(
        ours.iter().all(|x| x.is_finite()),
        "{name}: non-finite logits"
    );
}

#[test]
fn qwen2_bf16_with_qkv_bias_matches_transformers() {
    check_parity("qwen2_bf16");
}

#[test]
fn llama_tied_sharded_matches_transformers() {
    check_parity("llama_tied_sharded");
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    check_parity("llama3_rope");
}

#[test]
fn qwen3_f16_with_qk_norm_matches_transformers() {
    check_parity("qwen3_f16");
}

#[test]
fn mistral_sliding_window_matches_transformers() {
    check_parity("mistral_window");
}

#[test]
fn tied_model_has_no_lm_head_parameter() {
    let model = load_hf_dir::<B>(fixture("llama_tied_sharded"), &Default::default()).unwrap();
    assert!(model.lm_head.is_none());
    let untied = load_hf_dir::<B>(fixture("llama3_rope"), &Default::default()).unwrap();
    assert!(untied.lm_head.is_some());
}

/// Copies a fixture folder into a fresh temp dir so a test can damage it.
fn scratch_copy(name: &str, tag: &str) -> PathBuf {
    let src = fixture(name);
    let dst = std::env::temp_dir().join(format!("sdpo-models-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

#[test]
fn wrong_config_reports_file_tensor_and_shapes() {
    let dir = scratch_copy("llama3_rope", "shape");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"),
    )
    .unwrap();
    let err = load_hf_dir::<B>(&dir, &Default::default()).unwrap_err();
    match &err {
        LoadError::ShapeMismatch {
            file,
            tensor,
            expected,
            found,
        } => {
            assert!(file.ends_with("model.safetensors"), "{err}");
            assert!(tensor.contains("mlp."), "{err}");
            // Reported in the checkpoint's [out, in] layout.
            assert!(expected.contains(&96) && found.contains(&128), "{err}");
            if tensor.ends_with("down_proj.weight") {
                assert_eq!(
                    (expected.as_slice(), found.as_slice()),
                    (&[64, 96][..], &[64, 128][..])
                );
            } else {
                assert_eq!(
                    (expected.as_slice(), found.as_slice()),
                    (&[96, 64][..], &[128, 64][..])
                );
            }
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn untied_config_on_tied_checkpoint_reports_missing_lm_head() {
    let dir = scratch_copy("llama_tied_sharded", "missing");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace(
            "\"tie_word_embeddings\": true",
            "\"tie_word_embeddings\": false",
        ),
    )
    .unwrap();
    let err = load_hf_dir::<B>(&dir, &Default::default()).unwrap_err();
    match &err {
        LoadError::MissingTensors { file, tensors } => {
            assert!(file.ends_with("model.safetensors.index.json"), "{err}");
            assert_eq!(tensors, &vec!["lm_head.weight".to_string()]);
        }
        other => panic!("expected MissingTensors, got {other}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn qwen2_weights_in_a_llama_config_report_unused_biases() {
    let dir = scratch_copy("qwen2_bf16", "unused");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"model_type\": \"qwen2\"", "\"model_type\": \"llama\""),
    )
    .unwrap();
    let err = load_hf_dir::<B>(&dir, &Default::default()).unwrap_err();
    match &err {
        LoadError::UnusedTensors { file, tensors, .. } => {
            assert!(file.ends_with("model.safetensors"), "{err}");
            assert!(tensors.iter().all(|t| t.ends_with("_proj.bias")), "{err}");
            assert_eq!(tensors.len(), 6, "{err}");
        }
        other => panic!("expected UnusedTensors, got {other}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unknown_model_type_and_missing_weights_are_named() {
    let dir = scratch_copy("qwen3_f16", "unknown");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"model_type\": \"qwen3\"", "\"model_type\": \"qwen3_moe\""),
    )
    .unwrap();
    let err = load_hf_dir::<B>(&dir, &Default::default()).unwrap_err();
    assert!(matches!(err, LoadError::Config { .. }), "{err}");
    assert!(err.to_string().contains("qwen3_moe") && err.to_string().contains("config.json"));

    std::fs::write(dir.join("config.json"), cfg).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = load_hf_dir::<B>(&dir, &Default::default()).unwrap_err();
    assert!(matches!(err, LoadError::NoWeights { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Hidden states computed chunk by chunk with a [`sdpo_models::KvCache`] give the same logits
/// as one full forward, including on a left-padded batch (same tolerance argument as above).
#[test]
fn kv_cache_continuation_matches_full_forward() {
    use sdpo_models::arch::positions_from_mask;
    let device = Default::default();
    for name in ["qwen3_f16", "mistral_window"] {
        let dir = fixture(name);
        let model = load_hf_dir::<B>(&dir, &device).unwrap();
        let r = read_reference(&dir);
        let [b, s] = [r.batch_ids.1[0], r.batch_ids.1[1]];
        let ids =
            Tensor::<B, 2, Int>::from_data(TensorData::new(r.batch_ids.0.clone(), [b, s]), &device);
        let mask_vec: Vec<bool> = r.batch_mask.0.iter().map(|&m| m != 0).collect();
        let mask =
            Tensor::<B, 2, Bool>::from_data(TensorData::new(mask_vec.clone(), [b, s]), &device);
        let full = model.forward_logits(ids.clone(), mask.clone());
        let positions = positions_from_mask(mask.clone());

        let mut cache = model.new_cache();
        let mut chunks = Vec::new();
        for (start, end) in [(0, s - 3), (s - 3, s - 2), (s - 2, s)] {
            let hidden = model.forward_hidden(
                ids.clone().slice([0..b, start..end]),
                mask.clone().slice([0..b, 0..end]),
                positions.clone().slice([0..b, start..end]),
                Some(&mut cache),
            );
            assert_eq!(cache.len(), end);
            chunks.push(model.logits_from_hidden(hidden));
        }
        let cached = Tensor::cat(chunks, 1);
        let vocab = full.dims()[2];
        let full = full.into_data().to_vec::<f32>().unwrap();
        let cached = cached.into_data().to_vec::<f32>().unwrap();
        let err = max_rel_error(&cached, &full, vocab, &mask_vec);
        eprintln!("{name}: kv-cache max relative error {err:.2e}");
        assert!(err <= TOLERANCE, "{name}: kv-cache relative error {err}");
    }
}

/// The lm_head applied to a slice of hidden states equals the slice of the full logits.
#[test]
fn logits_from_hidden_on_a_slice_matches_full_logits() {
    let device = Default::default();
    let model = load_hf_dir::<B>(fixture("llama_tied_sharded"), &device).unwrap();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::from([[5i64, 9, 200, 17, 3]]), &device);
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::from([[true; 5]]), &device);
    let positions = sdpo_models::arch::positions_from_mask(mask.clone());
    let full = model.forward_logits(ids.clone(), mask.clone());
    let hidden = model.forward_hidden(ids, mask, positions, None);
    let part = model.logits_from_hidden(hidden.slice([0..1, 2..5]));
    let want = full.slice([0..1, 2..5]);
    let diff = part.sub(want).abs().max().into_scalar();
    assert!(diff < 1e-5, "{diff}");
}

/// Under autodiff, a left-padded batch (whose first padding query sees only padding) gives
/// finite logits and finite gradients for every parameter it touches.
#[test]
fn left_padded_backward_is_finite() {
    use burn::backend::Autodiff;
    type A = Autodiff<B>;
    let device = Default::default();
    let model = load_hf_dir::<A>(fixture("qwen3_f16"), &device).unwrap();
    let r = read_reference(&fixture("qwen3_f16"));
    let [b, s] = [r.batch_ids.1[0], r.batch_ids.1[1]];
    let ids =
        Tensor::<A, 2, Int>::from_data(TensorData::new(r.batch_ids.0.clone(), [b, s]), &device);
    let mask_vec: Vec<bool> = r.batch_mask.0.iter().map(|&m| m != 0).collect();
    let mask = Tensor::<A, 2, Bool>::from_data(TensorData::new(mask_vec, [b, s]), &device);
    let weight = mask.clone().float().unsqueeze_dim::<3>(2);
    let logits = model.forward_logits(ids, mask);
    let loss = burn::tensor::activation::log_softmax(logits, 2)
        .mul(weight)
        .sum();
    let grads = loss.backward();
    let q = model.model.layers[0]
        .self_attn
        .q_proj
        .weight
        .grad(&grads)
        .unwrap();
    let emb = model.model.embed_tokens.weight.grad(&grads).unwrap();
    let knorm = model.model.layers[1]
        .self_attn
        .k_norm
        .as_ref()
        .unwrap()
        .weight
        .grad(&grads)
        .unwrap();
    for g in [q.into_data(), emb.into_data()] {
        assert!(g.to_vec::<f32>().unwrap().iter().all(|x| x.is_finite()));
    }
    let knorm = knorm.into_data().to_vec::<f32>().unwrap();
    assert!(knorm.iter().all(|x| x.is_finite()) && knorm.iter().any(|x| *x != 0.0));
}
