//! Entry points for the `cargo fuzz` targets in `fuzz/` (one function per target) and for the
//! corpus replay test (`tests/fuzz_corpus.rs`, part of `cargo test`): every parser a user's
//! files reach, driven as `sdpo` drives it. Each function must return normally for any input:
//! errors are fine, panics, stack overflows, hangs and huge allocations are bugs.
//!
//! Inputs made of several files are split at [`SEPARATOR`] lines (a missing part is empty).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;

use sdpo_core::ChatMessage;
use sdpo_models::gguf::GgufFile;
use sdpo_models::load::{gguf_model_config, gguf_tokenizer, load_gguf_model};
use sdpo_models::{load_hf_dir, Tokenizer};
use sdpo_train::builtin::char_tokenizer;
use sdpo_train::dataset::Dataset;
use sdpo_train::prompts::Prompts;

use crate::run_config::{Override, RunConfig};

/// The line separating the parts of a multi-file input.
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

/// The names of the fuzz targets, as `fuzz/fuzz_targets/NAME.rs` and `fuzz/corpus/NAME/`.
pub const TARGETS: [&str; 5] = ["gguf", "hf_model", "tokenizer", "run_config", "jsonl"];

/// Runs target `name` on `data`.
///
/// # Panics
/// On an unknown target name (a bug in the caller), or when the target itself panics.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "gguf" => gguf(data),
        "hf_model" => hf_model(data),
        "tokenizer" => tokenizer(data),
        "run_config" => run_config(data),
        "jsonl" => jsonl(data),
        other => panic!("no fuzz target `{other}`"),
    }
}

/// For fuzz targets: libFuzzer's panic hook aborts on every panic, also one that sdpo catches
/// on purpose (the `tokenizers` crate panics on some malformed files; sdpo turns that into an
/// error). This hook keeps quiet instead; a panic that escapes a target still aborts the run
/// (libfuzzer-sys aborts after unwinding), so only escaping panics count as crashes. Replay a
/// crash with `cargo test` (the corpus test) to see its message.
pub fn count_only_escaping_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// The first `n` parts of `data` split at [`SEPARATOR`] (missing parts empty).
fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out.resize(n, &[]);
    out
}

/// A scratch folder per thread (libFuzzer runs one input at a time per process).
fn scratch(target: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sdpo-fuzz-{target}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder in the temp dir");
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("writing a scratch file");
}

fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Sort 3 1 2 and explain {x}."),
        ChatMessage::new("assistant", "1 2 3"),
        ChatMessage::new("user", "Thanks ünïcode 🙂"),
    ]
}

/// Uses a tokenizer as training does: encode, render the chat template, decode.
fn exercise(tokenizer: &Tokenizer) {
    if let Ok(ids) = tokenizer.encode("Hello wörld 123\n\tok", true) {
        let _ = tokenizer.decode(&ids, true);
    }
    let _ = tokenizer.apply_chat_template(&messages(), true);
}

/// A GGUF file: header, metadata, config, tokenizer, and loading the model from it.
pub fn gguf(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") else {
        return;
    };
    let _ = gguf_model_config(&file);
    if let Ok(tokenizer) = gguf_tokenizer(&file) {
        exercise(&tokenizer);
    }
    let dir = scratch("gguf");
    let path = dir.join("model.gguf");
    write(&dir, "model.gguf", data);
    let _ = load_gguf_model::<NdArray<f32>>(&path, &Default::default());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Hugging Face model folder: `config.json`, then `model.safetensors`.
pub fn hf_model(data: &[u8]) {
    let p = parts(data, 2);
    let dir = scratch("hf");
    write(&dir, "config.json", p[0]);
    write(&dir, "model.safetensors", p[1]);
    let _ = load_hf_dir::<NdArray<f32>>(&dir, &Default::default());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Hugging Face tokenizer folder: `tokenizer.json`, `tokenizer_config.json`, then
/// `chat_template.jinja`.
pub fn tokenizer(data: &[u8]) {
    let p = parts(data, 3);
    let dir = scratch("tokenizer");
    write(&dir, "tokenizer.json", p[0]);
    if !p[1].is_empty() {
        write(&dir, "tokenizer_config.json", p[1]);
    }
    if !p[2].is_empty() {
        write(&dir, "chat_template.jinja", p[2]);
    }
    if let Ok(tokenizer) = Tokenizer::from_hf_dir(&dir) {
        exercise(&tokenizer);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A RON run config, then `--set PATH=VALUE` lines: layered, overridden, validated and
/// written back as `sdpo train` does.
pub fn run_config(data: &[u8]) {
    let p = parts(data, 2);
    let Ok(text) = std::str::from_utf8(p[0]) else {
        return;
    };
    let Ok(cfg) = RunConfig::from_ron_str(text, "fuzz.ron") else {
        return;
    };
    let overrides: Vec<Override> = String::from_utf8_lossy(p[1])
        .lines()
        .map(Override::set)
        .collect();
    let Ok(cfg) = cfg.with_overrides(&overrides) else {
        return;
    };
    if cfg.validate().is_ok() {
        let _ = cfg.resume_conflicts(&RunConfig::default());
        if let Ok(text) = cfg.to_ron_string() {
            let _ = RunConfig::from_run_file_text(&text, "fuzz/config.ron");
        }
    }
}

/// A JSONL dataset: rows read, split, and their prompts rendered and encoded.
pub fn jsonl(data: &[u8]) {
    let Ok(dataset) = Dataset::from_jsonl_reader(Cursor::new(data), Path::new("fuzz.jsonl")) else {
        return;
    };
    let _ = dataset.split(1, 0);
    let Ok(tokenizer) = char_tokenizer() else {
        return;
    };
    let prompts = Prompts::new(tokenizer, 64);
    for (i, row) in dataset.rows().iter().enumerate().take(16) {
        let _ = prompts.encode_prompt(&row.prompt.to_messages(), &format!("row {i}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_at_the_separator() {
        let data = b"a\n--8<--\nb\n--8<--\nc\n--8<--\nd";
        assert_eq!(parts(data, 3), [&b"a"[..], b"b", b"c\n--8<--\nd"]);
        assert_eq!(parts(b"only", 2), [&b"only"[..], b""]);
    }
}
