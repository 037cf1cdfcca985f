//! Writes what `scripts/check_export.py` compares against transformers: every tiny fixture
//! model (`tests/fixtures/models/`) with a merged random LoRA exported as a Hugging Face
//! folder, our logits on a fixed left-padded batch, our token ids and chat-template
//! renderings. `#[ignore]`d: the script runs it with
//!
//! ```text
//! SDPO_EXPORT_TOKENIZER=TOKENIZER_DIR SDPO_EXPORT_OUT=OUT_DIR [SDPO_EXPORT_EXTRA_TOKENIZER=DIR] \
//!     cargo test -p sdpo-models --test models export_check -- --ignored
//! ```
//!
//! - `TOKENIZER_DIR`: a HF tokenizer folder with at most 256 tokens (the fixtures' vocabulary),
//!   exported with every model;
//! - `OUT_DIR`: receives `<fixture>/` (the export), `<fixture>.ours.json` (ids, mask, logits)
//!   and `tokenizer.ours.json`;
//! - `EXTRA_TOKENIZER_DIR` (optional): a real tokenizer written back with
//!   `Tokenizer::save_hf_files` into `OUT_DIR/extra_tokenizer/`, with its ids in
//!   `extra_tokenizer.ours.json`.

use std::error::Error;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use sdpo_models::export::export_hf_dir;
use sdpo_models::lora::merge;
use sdpo_models::{load_hf_dir, ChatMessage, Tokenizer};
use serde_json::json;

use crate::lora_fixtures::{random_lora, FIXTURES};

type B = NdArray<f32>;

/// Texts whose ids are compared with transformers'.
const TEXTS: [&str; 5] = [
    "the string is interesting",
    "Hello, world! 123 ¿qué? naïve café",
    "<|im_start|>user\nhi there<|im_end|>\n",
    "  leading spaces and\ttabs\n\nnew lines",
    "emoji 🙂 and 日本語",
];

fn conversation() -> Vec<ChatMessage> {
    let msg = |role: &str, content: &str| ChatMessage {
        role: role.into(),
        content: content.into(),
    };
    vec![
        msg("system", "Be brief."),
        msg("user", "What is 2 + 2?"),
        msg("assistant", "4"),
        msg("user", "And the string \"interesting\"?"),
    ]
}

/// Ids of [`TEXTS`] (without and with special tokens) and the chat template's rendering.
fn tokenizer_report(tok: &Tokenizer) -> Result<serde_json::Value, Box<dyn Error>> {
    let mut texts = Vec::new();
    for text in TEXTS {
        texts.push(json!({
            "text": text,
            "ids": tok.encode(text, false)?,
            "ids_special": tok.encode(text, true)?,
        }));
    }
    let chat = match tok.chat_template() {
        Some(_) => Some(tok.apply_chat_template(&conversation(), true)?),
        None => None,
    };
    Ok(json!({
        "texts": texts,
        "conversation": conversation().iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
        "chat": chat,
        "eos_token_ids": tok.eos_token_ids(),
    }))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), Box<dyn Error>> {
    std::fs::write(path, serde_json::to_string(value)?)?;
    Ok(())
}

#[test]
#[ignore = "writes the files scripts/check_export.py compares; run by that script"]
fn export_check() -> Result<(), Box<dyn Error>> {
    let var =
        |name: &str| std::env::var(name).map_err(|_| format!("set {name} (see the module doc)"));
    let tokenizer_dir = var("SDPO_EXPORT_TOKENIZER")?;
    let out = PathBuf::from(var("SDPO_EXPORT_OUT")?);
    let extra = std::env::var("SDPO_EXPORT_EXTRA_TOKENIZER").ok();
    std::fs::create_dir_all(&out)?;
    let tok = Tokenizer::from_hf_dir(tokenizer_dir)?;
    write_json(&out.join("tokenizer.ours.json"), &tokenizer_report(&tok)?)?;

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let device = Default::default();
    // A left-padded batch: the second row has two padding tokens.
    let (b, s) = (2, 7);
    let ids: Vec<i64> = vec![5, 17, 200, 3, 9, 64, 128, 0, 0, 12, 250, 7, 1, 99];
    let mask: Vec<bool> = (0..b * s).map(|i| !(i == s || i == s + 1)).collect();
    for (n, name) in FIXTURES.iter().enumerate() {
        let base = load_hf_dir::<B>(fixtures.join(name), &device)?;
        let lora = random_lora::<B>(&base.config, 100 + n as u64);
        let merged = merge(&base, &lora)?;
        let dir = out.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        export_hf_dir(&merged, &tok, &dir)?;
        let logits = merged.forward_logits(
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [b, s]), &device),
            Tensor::<B, 2, Bool>::from_data(TensorData::new(mask.clone(), [b, s]), &device),
        );
        let shape = logits.dims();
        let values = logits.into_data().to_vec::<f32>()?;
        write_json(
            &out.join(format!("{name}.ours.json")),
            &json!({"ids": ids, "mask": mask, "shape": shape, "logits": values}),
        )?;
        println!("exported {name} to {}", dir.display());
    }

    if let Some(extra) = extra {
        let extra_tok = Tokenizer::from_hf_dir(&extra)?;
        let dir = out.join("extra_tokenizer");
        std::fs::create_dir_all(&dir)?;
        extra_tok.save_hf_files(&dir)?;
        write_json(
            &out.join("extra_tokenizer.ours.json"),
            &tokenizer_report(&extra_tok)?,
        )?;
        println!("wrote {extra} back to {}", dir.display());
    }
    Ok(())
}
