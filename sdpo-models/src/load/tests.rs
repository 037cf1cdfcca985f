//! [`load`] on the committed tiny fixtures: a Hugging Face folder
//! (`tests/fixtures/models/llama_tied_sharded` + `gguf/testdata/tiny_llama_tokenizer/`) and the
//! GGUF files `scripts/make_gguf_fixtures.py` converts from it (`gguf/testdata/tiny_llama.*`).

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use safetensors::SafeTensors;
use serde_json::Value;

use super::*;
use crate::gguf::GgufError;
use crate::hf::load_hf_dir;
use crate::ChatMessage;

type B = NdArray<f32>;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn testdata(name: &str) -> PathBuf {
    manifest().join("src/gguf/testdata").join(name)
}

fn model_fixture() -> PathBuf {
    manifest().join("tests/fixtures/models/llama_tied_sharded")
}

/// A scratch folder under the system temp directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sdpo-load-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(src: &Path, dst: &Path) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
}

/// The tiny llama as a complete Hugging Face folder: the model fixture plus the tokenizer files
/// transformers saved for the GGUF made from it.
fn hf_folder(tag: &str) -> Scratch {
    let dir = Scratch::new(tag);
    copy_dir(&model_fixture(), &dir.0);
    copy_dir(&testdata("tiny_llama_tokenizer"), &dir.0);
    dir
}

/// Float tensors of a safetensors file as (values, shape); int64 tensors converted to f32.
fn read_tensor(path: &Path, name: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let values = match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::I64 => t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    (values, t.shape().to_vec())
}

/// The reference inputs of the model fixture: (ids, mask, shape) for the unpadded sequence and
/// the left-padded batch.
fn reference_inputs() -> [(Vec<i64>, Vec<bool>, [usize; 2]); 2] {
    let file = model_fixture().join("reference.safetensors");
    let (ids, shape) = read_tensor(&file, "ids");
    let (batch, batch_shape) = read_tensor(&file, "batch_ids");
    let (mask, _) = read_tensor(&file, "batch_mask");
    let as_i64 = |v: Vec<f32>| v.into_iter().map(|x| x as i64).collect::<Vec<_>>();
    [
        (as_i64(ids), vec![true; shape[1]], [shape[0], shape[1]]),
        (
            as_i64(batch),
            mask.iter().map(|&m| m != 0.0).collect(),
            [batch_shape[0], batch_shape[1]],
        ),
    ]
}

fn logits(model: &CausalLm<B>, ids: &[i64], mask: &[bool], shape: [usize; 2]) -> Vec<f32> {
    let device = Default::default();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.to_vec(), shape), &device);
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(mask.to_vec(), shape), &device);
    model
        .forward_logits(ids, mask)
        .into_data()
        .to_vec::<f32>()
        .unwrap()
}

/// Max |ours − want| over the rows of real tokens, relative to max |want| over those rows.
fn max_rel_error(ours: &[f32], want: &[f32], real: &[bool]) -> f32 {
    let vocab = ours.len() / real.len();
    let (mut err, mut scale) = (0f32, 0f32);
    for (row, _) in real.iter().enumerate().filter(|(_, &r)| r) {
        for i in row * vocab..(row + 1) * vocab {
            err = err.max((ours[i] - want[i]).abs());
            scale = scale.max(want[i].abs());
        }
    }
    err / scale
}

fn load_ok(path: impl AsRef<Path>) -> Loaded<B> {
    load::<B>(path.as_ref(), &Default::default())
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.as_ref().display()))
}

#[test]
fn folder_load_equals_load_hf_dir() {
    let dir = hf_folder("folder");
    let loaded = load_ok(&dir.0);
    let plain = load_hf_dir::<B>(&dir.0, &Default::default()).unwrap();
    assert_eq!(loaded.model.config, plain.config);
    for (ids, mask, shape) in reference_inputs() {
        let (a, b) = (
            logits(&loaded.model, &ids, &mask, shape),
            logits(&plain, &ids, &mask, shape),
        );
        assert_eq!(a, b, "same weights, same code: identical logits");
    }
    assert_eq!(loaded.tokenizer.vocab_size(), 256);
    assert_eq!(loaded.tokenizer.eos_token(), Some("<|im_end|>"));
}

/// The f32 GGUF holds the folder's weights bit for bit (q/k permuted, names changed), and its
/// metadata rounds `rms_norm_eps` and `rope_theta` to f32, which the f32 model does anyway:
/// any difference in the logits is a loading bug.
#[test]
fn f32_gguf_gives_the_folder_logits_exactly() {
    let dir = hf_folder("f32");
    let folder = load_ok(&dir.0);
    let gguf = load_ok(testdata("tiny_llama.f32.gguf"));
    assert!(gguf.model.lm_head.is_none(), "tied embeddings");
    let mut config = load_gguf_model::<B>(testdata("tiny_llama.f32.gguf"), &Default::default())
        .unwrap()
        .config;
    // GGUF stores the epsilon as f32: 1e-6 comes back as 9.99999997e-7.
    assert_eq!(
        config.rms_norm_eps as f32,
        folder.model.config.rms_norm_eps as f32
    );
    config.rms_norm_eps = folder.model.config.rms_norm_eps;
    assert_eq!(config, folder.model.config);
    for (ids, mask, shape) in reference_inputs() {
        assert_eq!(
            logits(&gguf.model, &ids, &mask, shape),
            logits(&folder.model, &ids, &mask, shape)
        );
    }
}

/// Against transformers' logits for the same file (Q8_0 matrices, F16 embeddings, F32 norms).
/// Both sides dequantize bit-exactly the same way (`gguf.quants` ≡ our `dequant`), so the
/// tolerance is `hf_parity.rs`'s f32 one: 1e-4 relative (measured: 2e-7 and 4e-7). Against the
/// f32 folder, quantization itself moves the logits (measured: 4.4e-3 unpadded, 7.2e-3 on the
/// batch); 3e-2 bounds that, while a loading bug moves them far more (skipping the q/k
/// un-permutation: 2.3e-1).
#[test]
fn q8_0_gguf_matches_transformers() {
    let gguf = load_ok(testdata("tiny_llama.q8_0.gguf"));
    let dir = hf_folder("q8");
    let folder = load_ok(&dir.0);
    let expected = testdata("tiny_llama.expected.safetensors");
    for ((ids, mask, shape), key) in reference_inputs()
        .into_iter()
        .zip(["logits", "batch_logits"])
    {
        let ours = logits(&gguf.model, &ids, &mask, shape);
        let (want, want_shape) = read_tensor(&expected, key);
        assert_eq!(want_shape, vec![shape[0], shape[1], 256], "{key}");
        let err = max_rel_error(&ours, &want, &mask);
        assert!(
            err <= 1e-4,
            "{key}: relative error {err:.2e} vs transformers"
        );
        let drift = max_rel_error(&ours, &logits(&folder.model, &ids, &mask, shape), &mask);
        eprintln!("{key}: vs transformers {err:.2e}, vs the f32 folder {drift:.2e}");
        assert!(
            drift <= 1e-2,
            "{key}: Q8_0 drift {drift:.2e} from the f32 folder"
        );
        assert!(
            drift > 0.0,
            "{key}: the Q8_0 file must actually be quantized"
        );
    }
}

fn expected_json() -> Value {
    let text = std::fs::read_to_string(testdata("tiny_llama.expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The tokenizer rebuilt from GGUF metadata encodes and renders like transformers' GGUF
/// tokenizer, and like our own loader on the `tokenizer.json` transformers saved from it.
#[test]
fn gguf_tokenizer_matches_transformers_and_the_saved_folder() {
    let gguf = load_ok(testdata("tiny_llama.f32.gguf")).tokenizer;
    let folder = Tokenizer::from_hf_dir(testdata("tiny_llama_tokenizer")).unwrap();
    let expected = expected_json();
    for case in expected["encodings"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(gguf.encode(text, true).unwrap(), want, "{text:?}");
        assert_eq!(folder.encode(text, true).unwrap(), want, "{text:?}");
        assert_eq!(gguf.decode(&want, false).unwrap(), text);
    }
    for chat in expected["chats"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage {
                role: m["role"].as_str().unwrap().into(),
                content: m["content"].as_str().unwrap().into(),
            })
            .collect();
        let generation = chat["add_generation_prompt"].as_bool().unwrap();
        let text = gguf.apply_chat_template(&messages, generation).unwrap();
        assert_eq!(text, chat["text"].as_str().unwrap());
        assert_eq!(
            folder.apply_chat_template(&messages, generation).unwrap(),
            text
        );
    }
    let special = &expected["special_tokens"];
    assert_eq!(gguf.bos_token(), special["bos_token"].as_str());
    assert_eq!(gguf.eos_token(), special["eos_token"].as_str());
    assert_eq!(gguf.pad_token(), special["pad_token"].as_str());
    assert_eq!(gguf.eos_token_ids(), &[2]);
}

#[test]
fn sources_are_detected_by_folder_extension_and_magic() {
    let dir = Scratch::new("detect");
    let gguf = testdata("tiny_llama.f32.gguf");
    assert_eq!(
        ModelSource::detect(&dir.0).unwrap(),
        ModelSource::HfDir(dir.0.clone())
    );
    assert_eq!(
        ModelSource::detect(&gguf).unwrap(),
        ModelSource::Gguf(gguf.clone())
    );
    let renamed = dir.path("weights.bin");
    std::fs::copy(&gguf, &renamed).unwrap();
    assert_eq!(
        ModelSource::detect(&renamed).unwrap(),
        ModelSource::Gguf(renamed.clone())
    );
    let upper = dir.path("MODEL.GGUF");
    std::fs::write(&upper, b"not really").unwrap();
    assert_eq!(
        ModelSource::detect(&upper).unwrap(),
        ModelSource::Gguf(upper)
    );

    let text = dir.path("notes.txt");
    std::fs::write(&text, b"hello").unwrap();
    let err = ModelSource::detect(&text).unwrap_err();
    assert!(
        matches!(&err, LoadError::UnknownFormat { path, .. } if *path == text),
        "{err}"
    );
    assert!(err.to_string().contains("notes.txt"), "{err}");
}

#[test]
fn missing_paths_are_io_errors_naming_them() {
    for missing in [testdata("no-such-model.gguf"), testdata("no-such-folder")] {
        let err = load::<B>(&missing, &Default::default()).unwrap_err();
        match &err {
            LoadError::Io { path, source } => {
                assert_eq!(path, &missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Io, got {other}"),
        }
        assert!(err.to_string().contains("no-such-"), "{err}");
    }
}

#[test]
fn a_file_that_is_not_gguf_is_named() {
    let dir = Scratch::new("badmagic");
    let fake = dir.path("fake.gguf");
    std::fs::write(&fake, b"PK\x03\x04 a zip, not a model").unwrap();
    let err = load::<B>(&fake, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Gguf { source: GgufError::BadMagic { file, .. } } if *file == fake),
        "{err}"
    );
    assert!(err.to_string().contains("fake.gguf"), "{err}");
}

#[test]
fn truncated_gguf_files_are_typed_errors_naming_the_file() {
    let bytes = std::fs::read(testdata("tiny_llama.f32.gguf")).unwrap();
    let dir = Scratch::new("truncated");
    // In the header, in the metadata, in the tensor infos, in the tensor data.
    for cut in [2, 40, 2_000, bytes.len() - 1] {
        let path = dir.path(&format!("cut{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = load::<B>(&path, &Default::default()).unwrap_err();
        match &err {
            LoadError::Gguf {
                source:
                    GgufError::Truncated { file, .. } | GgufError::TensorOutOfBounds { file, .. },
            } => assert_eq!(file, &path),
            other => panic!("cut at {cut}: expected Truncated/TensorOutOfBounds, got {other}"),
        }
        assert!(err.to_string().contains(&format!("cut{cut}.gguf")), "{err}");
    }
}

/// The offset of metadata value `key` (just after its u32 type), checking the type.
fn value_offset(bytes: &[u8], key: &str, value_type: u32) -> usize {
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("key {key} not in the fixture"));
    let ty_at = at + needle.len();
    let ty = u32::from_le_bytes(bytes[ty_at..ty_at + 4].try_into().unwrap());
    assert_eq!(ty, value_type, "{key}");
    ty_at + 4
}

/// A copy of the f32 fixture with `patch` applied to its bytes.
fn patched_gguf(dir: &Scratch, name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(testdata("tiny_llama.f32.gguf")).unwrap();
    patch(&mut bytes);
    let path = dir.path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn set_u32(bytes: &mut [u8], key: &str, value: u32) {
    let at = value_offset(bytes, key, 4);
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn unknown_architecture_is_named_with_the_file() {
    let dir = Scratch::new("arch");
    let path = patched_gguf(&dir, "mamba.gguf", |bytes| {
        let at = value_offset(bytes, "general.architecture", 8) + 8;
        assert_eq!(&bytes[at..at + 5], b"llama");
        bytes[at..at + 5].copy_from_slice(b"mamba");
    });
    let err = load::<B>(&path, &Default::default()).unwrap_err();
    match &err {
        LoadError::Gguf {
            source: GgufError::Unsupported {
                file, what, found, ..
            },
        } => {
            assert_eq!(
                (file, *what, found.as_str()),
                (&path, "architecture", "mamba")
            );
        }
        other => panic!("expected Unsupported architecture, got {other}"),
    }
    assert!(err.to_string().contains("mamba.gguf"), "{err}");
}

#[test]
fn a_layer_count_beyond_the_tensors_is_refused_before_building() {
    let dir = Scratch::new("missing");
    // A third layer the file does not hold; a million would allocate a million layers.
    for layers in [3, 1_000_000] {
        let path = patched_gguf(&dir, "many_layers.gguf", |b| {
            set_u32(b, "llama.block_count", layers)
        });
        let err = load::<B>(&path, &Default::default()).unwrap_err();
        match &err {
            LoadError::LayerCount {
                file,
                configured,
                found,
            } => {
                assert_eq!(file, &path);
                assert_eq!((*configured, *found), (layers as usize, 2), "{err}");
            }
            other => panic!("expected LayerCount, got {other}"),
        }
        assert!(err.to_string().len() < 300, "{err}");
    }
}

#[test]
fn misshapen_gguf_tensors_report_expected_and_found_shapes() {
    let dir = Scratch::new("shape");
    let path = patched_gguf(&dir, "narrow_mlp.gguf", |b| {
        set_u32(b, "llama.feed_forward_length", 96)
    });
    let err = load::<B>(&path, &Default::default()).unwrap_err();
    match &err {
        LoadError::ShapeMismatch {
            file,
            tensor,
            expected,
            found,
        } => {
            assert_eq!(file, &path);
            assert!(
                tensor.starts_with("blk.") && tensor.contains(".ffn_"),
                "{err}"
            );
            // Row-major, as the file's dims reversed: [out, in].
            if tensor.ends_with("ffn_down.weight") {
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
}

#[test]
fn gguf_tensors_without_a_parameter_are_refused() {
    let dir = Scratch::new("unmapped");
    let path = patched_gguf(&dir, "renamed.gguf", |bytes| {
        let name = b"blk.1.ffn_up.weight";
        let at = bytes
            .windows(name.len())
            .position(|w| w == name)
            .expect("tensor name in the header");
        bytes[at..at + name.len()].copy_from_slice(b"blk.1.ffn_xx.weight");
    });
    let err = load::<B>(&path, &Default::default()).unwrap_err();
    match &err {
        LoadError::UnusedTensors { file, tensors, .. } => {
            assert_eq!(file, &path);
            assert_eq!(tensors, &vec!["blk.1.ffn_xx.weight".to_string()]);
        }
        other => panic!("expected UnusedTensors, got {other}"),
    }
}

#[test]
fn folder_without_tokenizer_or_with_a_larger_one_is_refused() {
    let dir = Scratch::new("notok");
    copy_dir(&model_fixture(), &dir.0);
    let err = load::<B>(&dir.0, &Default::default()).unwrap_err();
    match &err {
        LoadError::Tokenizer { path, source } => {
            assert_eq!(path, &dir.0);
            assert!(
                matches!(source, TokenizerError::MissingFile { .. }),
                "{err}"
            );
        }
        other => panic!("expected Tokenizer, got {other}"),
    }

    // SmolLM2's 49152-token tokenizer on the 256-row model.
    copy_dir(&manifest().join("tests/fixtures/tokenizer/smollm2"), &dir.0);
    let err = load::<B>(&dir.0, &Default::default()).unwrap_err();
    match &err {
        LoadError::VocabMismatch {
            tokenizer_vocab,
            model_vocab,
            ..
        } => assert_eq!((*tokenizer_vocab, *model_vocab), (49152, 256)),
        other => panic!("expected VocabMismatch, got {other}"),
    }
}
