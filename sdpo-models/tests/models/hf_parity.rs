//! Loading errors of [`load_hf_dir`] on damaged copies of the tiny fixture models
//! (`tests/fixtures/models/`): each names the file, tensor and shapes. The numerical parity of
//! the loaded models with transformers is checked on every backend by the root package's
//! backend suite (`tests/backends/models.rs`).

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use sdpo_models::{load_hf_dir, LoadError};

/// One float element type per test binary (Burn's dtype settings are per device).
type B = NdArray<f32>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
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
