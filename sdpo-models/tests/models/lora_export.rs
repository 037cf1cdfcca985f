//! LoRA adapters over the tiny fixture models (`tests/fixtures/models/`) and export of
//! (merged) models as Hugging Face folders, read back by [`load_hf_dir`].
//!
//! Tolerances: a view `W x + s·B(A x)` and a merged `(W + s·A·B) x` round differently in f32
//! (~1e-7 relative per op, grown through two layers and the head to ~1e-6), so they must agree
//! to 1e-5 relative to the largest logit; a real mistake (a transposed or missing adapter, a
//! wrong scale) moves logits by ≥ 1e-2. Everything written by export is f32 and read back
//! exactly, so export → load round trips are compared bit for bit.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::backend::NdArray;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use sdpo_models::arch::{self, Projection, ProjectionDelta};
use sdpo_models::export::{export_hf_dir, ExportError};
use sdpo_models::lora::{merge, LoraConfig, LoraError, LoraSet, WithLora, ADAPTER_WEIGHTS};
use sdpo_models::{load_hf_dir, Tokenizer};

use crate::lora_fixtures::*;

/// One float element type per test binary (Burn's dtype settings are per device).
type B = NdArray<f32>;

/// A scratch folder under the system temp directory, removed first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("sdpo-lora-export-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn adapted_projection_matches_a_hand_computed_reference() {
    // qwen2: q_proj has a bias.
    let base = load::<B>("qwen2_bf16");
    let lora = random_lora::<B>(&base.config, 11);
    let linear = &base.model.layers[1].self_attn.q_proj;
    let adapter = lora.layers[1].self_attn.q_proj.as_ref().unwrap();
    let device = Default::default();
    B::seed(&device, 3);
    let x = Tensor::<B, 3>::random([1, 2, 64], Distribution::Uniform(-1.0, 1.0), &device);
    // The adapted projection as the model runs it: the base product plus the set's delta.
    let delta = lora.delta(1, Projection::Q, x.clone()).unwrap();
    let got = values(arch::linear(linear, x.clone()).add(delta));

    let xs = values(x);
    let w = values(linear.weight.val()); // [in, out]
    let bias = values(linear.bias.as_ref().unwrap().val());
    let a = values(adapter.lora_a.weight.val()); // [in, r]
    let b = values(adapter.lora_b.weight.val()); // [r, out]
    let (d_in, d_out, r) = (64, bias.len(), 4);
    assert_eq!(adapter.scale, 2.0);
    let mut want = Vec::new();
    for row in 0..2 {
        let x = &xs[row * d_in..(row + 1) * d_in];
        let xa: Vec<f64> = (0..r)
            .map(|k| (0..d_in).map(|i| x[i] as f64 * a[i * r + k] as f64).sum())
            .collect();
        for o in 0..d_out {
            let base: f64 = (0..d_in)
                .map(|i| x[i] as f64 * w[i * d_out + o] as f64)
                .sum();
            let delta: f64 = (0..r).map(|k| xa[k] * b[k * d_out + o] as f64).sum();
            want.push((base + bias[o] as f64 + 2.0 * delta) as f32);
        }
    }
    let err = rel_error(&got, &want);
    assert!(err <= 1e-5, "{err}");
}

#[test]
fn mismatched_set_is_rejected_by_tensor_name() {
    let base = load::<B>("qwen3_f16"); // head_dim 32
    let other = load::<B>("llama3_rope"); // head_dim 16
    let lora = random_lora::<B>(&other.config, 1);
    let err = WithLora::new(&base, &lora).unwrap_err();
    assert!(
        matches!(&err, LoraError::Incompatible { tensor, .. } if tensor == "layers.0.self_attn.q_proj.lora_b.weight"),
        "{err}"
    );
    assert!(merge(&base, &lora).is_err());
}

/// `(name, dtype, shape, bytes)` of every tensor in a safetensors file.
type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write_tensors(path: &Path, tensors: &Tensors) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn peft_round_trip_is_exact_and_uses_peft_names() {
    let base = load::<B>("mistral_window");
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.05,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
    };
    let device = Default::default();
    B::seed(&device, 9);
    let lora = LoraSet::<B>::new(&config, &base.config, &device)
        .unwrap()
        .map(&mut Randomize { amp: 0.3 });
    let dir = scratch("peft");
    lora.save_peft(&dir).unwrap();

    let tensors = read_tensors(&dir.join(ADAPTER_WEIGHTS));
    assert_eq!(tensors.len(), 2 * 3 * 2);
    let find = |key: &str| tensors.iter().find(|t| t.0 == key).unwrap();
    let a = find("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
    assert_eq!((a.1, a.2.clone()), (Dtype::F32, vec![4, 64]));
    let b = find("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
    assert_eq!(b.2, vec![64, 4]);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
    assert_eq!(cfg["lora_dropout"], 0.05);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    assert_eq!(cfg["peft_type"], "LORA");
    // Nothing but the two files (the temporary ones were renamed).
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);

    let back = LoraSet::<B>::load_peft(&dir, &base.config, &device).unwrap();
    assert_eq!(back.config, config);
    let (before, after) = (all_params(&lora), all_params(&back));
    assert_eq!(before.len(), after.len());
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(bits(x), bits(y));
    }
    // Saving again over the folder replaces it.
    back.save_peft(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_misshapen_and_foreign_adapter_tensors_are_named() {
    let base = load::<B>("llama3_rope");
    let lora = random_lora::<B>(&base.config, 4);
    let dir = scratch("peft-bad");
    lora.save_peft(&dir).unwrap();
    let path = dir.join(ADAPTER_WEIGHTS);
    let good = read_tensors(&path);
    let device = Default::default();
    let key = "base_model.model.model.layers.1.mlp.up_proj.lora_A.weight";

    let missing: Tensors = good.iter().filter(|t| t.0 != key).cloned().collect();
    write_tensors(&path, &missing);
    let err = LoraSet::<B>::load_peft(&dir, &base.config, &device).unwrap_err();
    assert!(
        matches!(&err, LoraError::MissingTensors { tensors, .. } if tensors == &[key.to_string()]),
        "{err}"
    );

    let mut misshapen = good.clone();
    let t = misshapen.iter_mut().find(|t| t.0 == key).unwrap();
    t.2 = vec![8, 32]; // same byte count, wrong shape ([4, 64] expected)
    write_tensors(&path, &misshapen);
    let err = LoraSet::<B>::load_peft(&dir, &base.config, &device).unwrap_err();
    match &err {
        LoraError::ShapeMismatch {
            tensor,
            expected,
            found,
            ..
        } => {
            assert_eq!(tensor, key);
            assert_eq!(
                (expected.as_slice(), found.as_slice()),
                (&[4, 64][..], &[8, 32][..])
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(ADAPTER_WEIGHTS), "{err}");

    let mut foreign = good.clone();
    let mut extra = good[0].clone();
    extra.0 = "base_model.model.lm_head.lora_A.weight".into();
    foreign.push(extra);
    write_tensors(&path, &foreign);
    let err = LoraSet::<B>::load_peft(&dir, &base.config, &device).unwrap_err();
    assert!(
        matches!(&err, LoraError::UnusedTensors { tensors, .. } if tensors == &["base_model.model.lm_head.lora_A.weight".to_string()]),
        "{err}"
    );

    std::fs::remove_file(&path).unwrap();
    let err = LoraSet::<B>::load_peft(&dir, &base.config, &device).unwrap_err();
    assert!(err.to_string().contains(ADAPTER_WEIGHTS), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 256-token byte-level BPE (the specials, every byte that can occur in UTF-8 text, ten
/// merges) with a ChatML template: small enough for the fixtures' 256-row embeddings.
fn tiny_tokenizer() -> Tokenizer {
    // GPT-2's byte → character table.
    let mut byte_char = [' '; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        byte_char[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap()
        };
    }
    let never_in_utf8 = |b: usize| b == 0xC0 || b == 0xC1 || b >= 0xF5;
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let merges = [
        "Ġ t", "h e", "Ġt he", "i n", "in g", "e r", "Ġ a", "o n", "r e", "Ġ s",
    ];
    let mut tokens: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
    tokens.extend(
        (0..256)
            .filter(|&b| !never_in_utf8(b))
            .map(|b| byte_char[b].to_string()),
    );
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    assert_eq!(tokens.len(), 256);
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i.into()))
        .collect();
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true});
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    let inner = tokenizers::Tokenizer::from_str(&json.to_string()).unwrap();
    let template = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    Tokenizer::from_parts(
        inner,
        Some(template.into()),
        Some("<|im_start|>".into()),
        Some("<|im_end|>".into()),
    )
    .unwrap()
    .with_pad_token("<|endoftext|>")
    .unwrap()
}

#[test]
fn export_then_load_gives_the_same_logits_for_every_fixture() {
    let tok = tiny_tokenizer();
    for name in FIXTURES {
        let base = load::<B>(name);
        let lora = random_lora::<B>(&base.config, 21);
        let merged = merge(&base, &lora).unwrap();
        let dir = scratch(&format!("export-{name}"));
        export_hf_dir(&merged, &tok, &dir).unwrap_or_else(|e| panic!("{name}: {e}"));

        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "config.json",
                "generation_config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json"
            ],
            "{name}"
        );
        let tensors = read_tensors(&dir.join("model.safetensors"));
        assert!(
            tensors.iter().all(|t| t.1 == Dtype::F32),
            "{name}: not all f32"
        );
        let has_head = tensors.iter().any(|t| t.0 == "lm_head.weight");
        assert_eq!(has_head, !base.config.tie_word_embeddings, "{name}");
        let up = tensors
            .iter()
            .find(|t| t.0 == "model.layers.0.mlp.up_proj.weight")
            .unwrap();
        assert_eq!(up.2, vec![128, 64], "{name}: [out, in] layout");

        let back = load_hf_dir::<B>(&dir, &Default::default()).unwrap();
        assert_eq!(back.config, base.config, "{name}");
        let (ids, mask) = batch::<B>();
        let want = values(merged.forward_logits(ids.clone(), mask.clone()));
        let got = values(back.forward_logits(ids, mask));
        assert_eq!(
            bits(&want),
            bits(&got),
            "{name}: logits after export → load"
        );

        let tok_back = Tokenizer::from_hf_dir(&dir).unwrap();
        let text = "<|im_start|>user\nthe string is interesting<|im_end|>\n¿qué?";
        assert_eq!(
            tok_back.encode(text, false).unwrap(),
            tok.encode(text, false).unwrap()
        );
        assert_eq!(tok_back.chat_template(), tok.chat_template());
        assert_eq!(tok_back.eos_token_ids(), tok.eos_token_ids());
        assert_eq!(tok_back.bos_token_id(), Some(1));
        assert_eq!(tok_back.pad_token_id(), Some(0));
        let generation: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("generation_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(generation["eos_token_id"], 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn export_refuses_a_non_empty_target_and_a_too_large_tokenizer() {
    let base = load::<B>("llama_tied_sharded");
    let tok = tiny_tokenizer();
    // A parent of its own, so that no other test's temporary folder shows up in it.
    let root = scratch("export-refusals");
    let dir = root.join("out");
    std::fs::create_dir_all(&dir).unwrap();
    // An empty folder is fine.
    export_hf_dir(&base, &tok, &dir).unwrap();
    // A second export onto it is not.
    let err = export_hf_dir(&base, &tok, &dir).unwrap_err();
    assert!(matches!(err, ExportError::TargetExists { .. }), "{err}");
    assert!(err.to_string().contains("out"), "{err}");

    let smollm2 = Tokenizer::from_hf_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/smollm2"),
    )
    .unwrap();
    let other = root.join("vocab");
    let err = export_hf_dir(&base, &smollm2, &other).unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::VocabMismatch {
                tokenizer_vocab: 49152,
                model_vocab: 256
            }
        ),
        "{err}"
    );
    assert!(!other.exists());
    // No temporary folders are left behind.
    let entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["out"]);
    let _ = std::fs::remove_dir_all(&root);
}
