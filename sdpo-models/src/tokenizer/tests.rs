//! Tokenizer and chat-template tests against fixtures made by
//! `scripts/make_tokenizer_fixtures.py` (transformers' own outputs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::chat_template::{python_float_repr, strftime};
use super::{Tokenizer, TokenizerError};
use crate::ChatMessage;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn smollm2() -> Tokenizer {
    match Tokenizer::from_hf_dir(fixtures().join("smollm2")) {
        Ok(t) => t,
        Err(e) => panic!("loading the SmolLM2 fixture: {e}"),
    }
}

fn read_fixture<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
    }
}

/// A scratch folder under the system temp directory, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("sdpo-tokenizer-tests-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A folder with the SmolLM2 tokenizer.json and the given other files.
fn hf_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = scratch(name);
    let src = fixtures().join("smollm2/tokenizer.json");
    std::fs::copy(&src, dir.join("tokenizer.json")).unwrap_or_else(|e| panic!("copy: {e}"));
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap_or_else(|e| panic!("write: {e}"));
    }
    dir
}

// ---------------------------------------------------------------------------
// Encoding / decoding against transformers.
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct EncodingFixture {
    vocab_size: usize,
    special: BTreeMap<String, Option<String>>,
    cases: Vec<EncodingCase>,
    pretokenizer_variants: BTreeMap<String, PretokVariant>,
}

#[derive(Deserialize)]
struct EncodingCase {
    text: String,
    add_special_tokens: bool,
    ids: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

#[derive(Deserialize)]
struct PretokVariant {
    pre_tokenizer: serde_json::Value,
    post_processor: serde_json::Value,
    cases: Vec<VariantCase>,
}

#[derive(Deserialize)]
struct VariantCase {
    text: String,
    add_special_tokens: bool,
    ids: Vec<u32>,
}

#[test]
fn tokenizer_encode_decode_match_transformers() {
    let tok = smollm2();
    let fx: EncodingFixture = read_fixture("encodings.json");
    assert_eq!(tok.vocab_size(), fx.vocab_size);
    assert_eq!(tok.bos_token(), fx.special["bos"].as_deref());
    assert_eq!(tok.eos_token(), fx.special["eos"].as_deref());
    assert_eq!(tok.pad_token(), fx.special["pad"].as_deref());
    assert_eq!(tok.unk_token(), fx.special["unk"].as_deref());
    let mut failures = Vec::new();
    for case in &fx.cases {
        let ids = tok
            .encode(&case.text, case.add_special_tokens)
            .unwrap_or_else(|e| panic!("{e}"));
        if ids != case.ids {
            failures.push(format!(
                "encode({:?}, {}): got {ids:?}, transformers {:?}",
                case.text, case.add_special_tokens, case.ids
            ));
        }
        let decoded = tok
            .decode(&case.ids, false)
            .unwrap_or_else(|e| panic!("{e}"));
        if decoded != case.decoded {
            failures.push(format!(
                "decode({:?}): got {decoded:?}, transformers {:?}",
                case.ids, case.decoded
            ));
        }
        let skipped = tok
            .decode(&case.ids, true)
            .unwrap_or_else(|e| panic!("{e}"));
        if skipped != case.decoded_skip_special {
            failures.push(format!(
                "decode({:?}, skip_special): got {skipped:?}, transformers {:?}",
                case.ids, case.decoded_skip_special
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The Qwen2 / Llama-3 split regexes (lookahead, `\p{L}`, case-insensitive
/// groups) give the same pieces as the Python build's regex engine, and a
/// BOS-adding post-processor applies only with `add_special_tokens`.
#[test]
fn tokenizer_pretokenizer_regexes_match_python() {
    let fx: EncodingFixture = read_fixture("encodings.json");
    let path = fixtures().join("smollm2/tokenizer.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let base: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for (name, variant) in &fx.pretokenizer_variants {
        let mut json = base.clone();
        json["pre_tokenizer"] = variant.pre_tokenizer.clone();
        if !variant.post_processor.is_null() {
            json["post_processor"] = variant.post_processor.clone();
        }
        let inner: tokenizers::Tokenizer = json
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let tok = Tokenizer::from_parts(inner, None, None, Some("<|im_end|>".into()))
            .unwrap_or_else(|e| panic!("{e}"));
        for case in &variant.cases {
            let ids = tok
                .encode(&case.text, case.add_special_tokens)
                .unwrap_or_else(|e| panic!("{e}"));
            if ids != case.ids {
                failures.push(format!(
                    "{name}: encode({:?}, {}): got {ids:?}, python {:?}",
                    case.text, case.add_special_tokens, case.ids
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The BOS-adding variant really adds one.
    let llama = &fx.pretokenizer_variants["llama3"];
    assert!(llama
        .cases
        .iter()
        .any(|c| c.add_special_tokens && c.ids.first() == Some(&1) && !c.text.starts_with('<')));
}

#[test]
fn tokenizer_special_tokens_in_text_and_roundtrip() {
    let tok = smollm2();
    let ids = tok
        .encode("<|im_start|>user\nHi<|im_end|>", false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.id_to_token(1).as_deref(), Some("<|im_start|>"));
    let text = "Mixed: café 👋 <|im_end|> x  y\n\tz";
    let ids = tok.encode(text, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        tok.decode(&ids, false).unwrap_or_else(|e| panic!("{e}")),
        text
    );
    assert!(tok
        .encode("", false)
        .unwrap_or_else(|e| panic!("{e}"))
        .is_empty());
    assert_eq!(tok.decode(&[], true).unwrap_or_else(|e| panic!("{e}")), "");
}

#[test]
fn tokenizer_decode_rejects_unknown_ids() {
    let tok = smollm2();
    let n = tok.vocab_size() as u32;
    match tok.decode(&[1, 2, n], false) {
        Err(TokenizerError::UnknownId {
            id,
            position,
            vocab_size,
        }) => {
            assert_eq!((id, position, vocab_size), (n, 2, n as usize));
        }
        other => panic!("expected UnknownId, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Loading: config forms, stop ids, errors.
// ---------------------------------------------------------------------------

#[test]
fn tokenizer_loads_fixture_with_stop_ids() {
    let tok = smollm2();
    assert_eq!(tok.eos_token_ids(), &[2]);
    assert!(tok.is_stop_id(2));
    assert!(!tok.is_stop_id(0));
    assert_eq!(tok.bos_token_id(), Some(1));
    assert_eq!(tok.eos_token_id(), Some(2));
    assert_eq!(tok.pad_token_id(), Some(2));
    assert!(tok.chat_template().is_some_and(|t| t.contains("SmolLM")));
    assert_eq!(tok.chat_template_names(), vec!["default"]);
    let debug = format!("{tok:?}");
    assert!(debug.contains("vocab_size: 49152"), "{debug}");
}

#[test]
fn tokenizer_config_forms() {
    // AddedToken objects, a list of named templates and a generation_config eos list.
    let config = r#"{
        "bos_token": {"__type": "AddedToken", "content": "<|im_start|>", "lstrip": false},
        "eos_token": {"content": "<|im_end|>", "special": true},
        "pad_token": null,
        "chat_template": [
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"},
            {"name": "tool_use", "template": "tools={{ tools | tojson }}"}
        ]
    }"#;
    let gen = r#"{"bos_token_id": 1, "eos_token_id": [2, 0, 2]}"#;
    let dir = hf_dir(
        "config_forms",
        &[
            ("tokenizer_config.json", config),
            ("generation_config.json", gen),
        ],
    );
    let tok = Tokenizer::from_hf_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tok.bos_token(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert_eq!(tok.pad_token(), None);
    assert_eq!(tok.eos_token_ids(), &[2, 0]);
    assert_eq!(tok.chat_template_names(), vec!["default", "tool_use"]);
    let out = tok
        .apply_chat_template(&[msg("user", "hi")], false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, "<|im_start|>[user]hi");
    let tools = serde_json::json!({"tools": [{"name": "f"}]});
    let out = tok
        .apply_named_chat_template("tool_use", &[], false, &tools)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, r#"tools=[{"name": "f"}]"#);
    match tok.apply_named_chat_template("nope", &[], false, &()) {
        Err(TokenizerError::UnknownChatTemplate { name, known }) => {
            assert_eq!(name, "nope");
            assert_eq!(known, vec!["default", "tool_use"]);
        }
        other => panic!("expected UnknownChatTemplate, got {other:?}"),
    }

    // A chat_template.jinja beside it wins; a plain-string template and an
    // eos known only from generation_config.json.
    let dir = hf_dir(
        "config_jinja",
        &[
            (
                "tokenizer_config.json",
                r#"{"chat_template": "from config", "bos_token": null}"#,
            ),
            ("chat_template.jinja", "from jinja\n"),
            ("generation_config.json", r#"{"eos_token_id": 2}"#),
        ],
    );
    let tok = Tokenizer::from_hf_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tok.chat_template(), Some("from jinja\n"));
    assert_eq!(
        tok.apply_chat_template(&[], false)
            .unwrap_or_else(|e| panic!("{e}")),
        "from jinja"
    );
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert_eq!(tok.eos_token_ids(), &[2]);
    assert_eq!(tok.bos_token(), None);

    // Only tokenizer.json: no template, no stop ids.
    let dir = hf_dir("config_none", &[]);
    let tok = Tokenizer::from_hf_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(tok.eos_token_ids().is_empty());
    assert!(matches!(
        tok.apply_chat_template(&[msg("user", "x")], true),
        Err(TokenizerError::NoChatTemplate { .. })
    ));
}

#[test]
fn tokenizer_load_errors_name_the_file() {
    let dir = scratch("err_missing");
    match Tokenizer::from_hf_dir(&dir) {
        Err(e @ TokenizerError::MissingFile { .. }) => {
            assert!(e.to_string().contains("tokenizer.json"), "{e}");
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }

    let dir = scratch("err_bad_tokenizer_json");
    std::fs::write(dir.join("tokenizer.json"), "{\"model\": ").unwrap_or_else(|e| panic!("{e}"));
    match Tokenizer::from_hf_dir(&dir) {
        Err(TokenizerError::Json { path, source }) => {
            assert!(path.ends_with("tokenizer.json"));
            assert_eq!(source.line(), 1);
        }
        other => panic!("expected Json, got {other:?}"),
    }

    let dir = scratch("err_not_a_tokenizer");
    std::fs::write(dir.join("tokenizer.json"), r#"{"model": {"type": "Nope"}}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        Tokenizer::from_hf_dir(&dir),
        Err(TokenizerError::Load { .. })
    ));

    let dir = hf_dir(
        "err_bad_config",
        &[("tokenizer_config.json", "{\n  \"eos_token\": ,\n}")],
    );
    match Tokenizer::from_hf_dir(&dir) {
        Err(TokenizerError::Json { path, source }) => {
            assert!(path.ends_with("tokenizer_config.json"));
            assert_eq!(source.line(), 2);
        }
        other => panic!("expected Json, got {other:?}"),
    }

    let dir = hf_dir(
        "err_eos_type",
        &[("tokenizer_config.json", r#"{"eos_token": 5}"#)],
    );
    match Tokenizer::from_hf_dir(&dir) {
        Err(TokenizerError::InvalidField { field, .. }) => assert_eq!(field, "eos_token"),
        other => panic!("expected InvalidField, got {other:?}"),
    }

    let dir = hf_dir(
        "err_unknown_eos",
        &[(
            "tokenizer_config.json",
            r#"{"eos_token": "<|not_a_token|>"}"#,
        )],
    );
    match Tokenizer::from_hf_dir(&dir) {
        Err(TokenizerError::UnknownToken { token, role }) => {
            assert_eq!(
                (token.as_str(), role.as_str()),
                ("<|not_a_token|>", "eos_token")
            );
        }
        other => panic!("expected UnknownToken, got {other:?}"),
    }

    let dir = hf_dir(
        "err_gen_config",
        &[("generation_config.json", r#"{"eos_token_id": "two"}"#)],
    );
    match Tokenizer::from_hf_dir(&dir) {
        Err(TokenizerError::InvalidField { path, field, .. }) => {
            assert!(path.ends_with("generation_config.json"));
            assert_eq!(field, "eos_token_id");
        }
        other => panic!("expected InvalidField, got {other:?}"),
    }

    let dir = hf_dir(
        "err_template_list",
        &[(
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "default"}]}"#,
        )],
    );
    match Tokenizer::from_hf_dir(&dir) {
        Err(TokenizerError::InvalidField { field, .. }) => {
            assert_eq!(field, "chat_template[0].template")
        }
        other => panic!("expected InvalidField, got {other:?}"),
    }

    let dir = hf_dir(
        "err_template_syntax",
        &[(
            "tokenizer_config.json",
            r#"{"chat_template": "{% for m in messages %}{{ m.content }}"}"#,
        )],
    );
    match Tokenizer::from_hf_dir(&dir) {
        Err(e @ TokenizerError::TemplateSyntax { .. }) => {
            assert!(e.to_string().contains("default"), "{e}");
        }
        other => panic!("expected TemplateSyntax, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Chat templates against transformers.
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct TemplateFixture {
    templates: BTreeMap<String, String>,
    conversations: BTreeMap<String, Vec<ChatMessage>>,
    cases: Vec<TemplateCase>,
    error_cases: Vec<TemplateErrorCase>,
}

#[derive(Deserialize)]
struct TemplateCase {
    template: String,
    conversation: String,
    add_generation_prompt: bool,
    /// Read as a minijinja value so maps keep their order, as Python dicts do.
    extra: minijinja::Value,
    special_tokens: BTreeMap<String, String>,
    expected: String,
}

#[derive(Deserialize)]
struct TemplateErrorCase {
    template: String,
    conversation: String,
    extra: minijinja::Value,
    special_tokens: BTreeMap<String, String>,
    message: String,
}

/// The SmolLM2 tokenizer with another template; special-token overrides become
/// template arguments, as transformers' keyword arguments do.
fn render_case(
    base: &Tokenizer,
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    extra: &minijinja::Value,
    special: &BTreeMap<String, String>,
) -> Result<String, TokenizerError> {
    let mut tok = base.clone();
    tok.set_chat_template(template)?;
    let mut args: BTreeMap<String, minijinja::Value> = BTreeMap::new();
    for (k, v) in special {
        args.insert(k.clone(), minijinja::Value::from(v.as_str()));
    }
    if !extra.is_none() && !extra.is_undefined() {
        for key in extra.try_iter().unwrap_or_else(|e| panic!("{e}")) {
            let value = extra.get_item(&key).unwrap_or_else(|e| panic!("{e}"));
            args.insert(key.to_string(), value);
        }
    }
    tok.apply_chat_template_with(messages, add_generation_prompt, &args)
}

#[test]
fn tokenizer_chat_templates_match_transformers() {
    let base = smollm2();
    let fx: TemplateFixture = read_fixture("chat_templates.json");
    assert!(
        fx.cases.len() >= 100,
        "fixture has {} cases",
        fx.cases.len()
    );
    let mut failures = Vec::new();
    for case in &fx.cases {
        let label = format!(
            "{} / {} / add_generation_prompt={} / extra={}",
            case.template, case.conversation, case.add_generation_prompt, case.extra
        );
        let template = &fx.templates[&case.template];
        let messages = &fx.conversations[&case.conversation];
        match render_case(
            &base,
            template,
            messages,
            case.add_generation_prompt,
            &case.extra,
            &case.special_tokens,
        ) {
            Ok(got) if got == case.expected => {}
            Ok(got) => failures.push(format!(
                "{label}\n--- got ---\n{got}\n--- transformers ---\n{}\n",
                case.expected
            )),
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        fx.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn tokenizer_chat_template_raise_exception() {
    let base = smollm2();
    let fx: TemplateFixture = read_fixture("chat_templates.json");
    assert!(!fx.error_cases.is_empty());
    for case in &fx.error_cases {
        let messages = &fx.conversations[&case.conversation];
        match render_case(
            &base,
            &fx.templates[&case.template],
            messages,
            false,
            &case.extra,
            &case.special_tokens,
        ) {
            Err(e @ TokenizerError::TemplateRender { .. }) => {
                assert!(e.to_string().contains(&case.message), "{e}");
            }
            other => panic!("{}: expected TemplateRender, got {other:?}", case.template),
        }
    }
}

#[test]
fn tokenizer_fixture_template_is_used_by_default() {
    // The SmolLM2 fixture's own template through the plain entry point.
    let tok = smollm2();
    let out = tok
        .apply_chat_template(&[msg("user", "Hello!")], true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
    // And the rendered prompt encodes with its special tokens as single ids.
    let ids = tok.encode(&out, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
}

#[test]
fn tokenizer_chat_template_extra_args_and_helpers() {
    let mut tok = smollm2();
    let template = r#"{{ enable_thinking }}|{{ eos_token }}|{{ tools is none }}|{{ documents is none }}|{{ {"b": 1, "a": [1.5, 1e20, "é\n\"<&>"], "c": none, "d": true} | tojson }}|{{ [] | tojson(indent=2) }}|{{ {"k": [1]} | tojson(indent=2) }}|{{ "é" | tojson(ensure_ascii=true) }}|{{ {"z": 1, "y": 2} | tojson(sort_keys=true, separators=[",", ":"]) }}|{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}|{{ "  a b  ".strip() }}|{{ "x,y".split(",") | join("+") }}|{{ {"k": "v"}.items() | list }}"#;
    tok.set_chat_template(template)
        .unwrap_or_else(|e| panic!("{e}"));
    // Expected string: what transformers' renderer gives for the same template.
    let extra = serde_json::json!({"enable_thinking": false, "eos_token": "<EOS>"});
    let out = tok
        .apply_chat_template_with(&[], false, &extra)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out,
        "False|<EOS>|True|True|{\"b\": 1, \"a\": [1.5, 1e+20, \"é\\n\\\"<&>\"], \"c\": null, \"d\": true}|[]|{\n  \"k\": [\n    1\n  ]\n}|\"\\u00e9\"|{\"y\":2,\"z\":1}|012|a b|x+y|[('k', 'v')]"
    );

    // Arguments that are not a map are refused, as are the reserved names.
    assert!(matches!(
        tok.apply_chat_template_with(&[], false, &[1, 2]),
        Err(TokenizerError::InvalidTemplateArgs { .. })
    ));
    assert!(matches!(
        tok.apply_chat_template_with(&[], false, &serde_json::json!({"messages": []})),
        Err(TokenizerError::InvalidTemplateArgs { .. })
    ));

    // A render error (undefined attribute of an undefined value) is typed and names the template.
    tok.set_chat_template("{{ nothing.attr.more }}")
        .unwrap_or_else(|e| panic!("{e}"));
    match tok.apply_chat_template(&[], false) {
        Err(e @ TokenizerError::TemplateRender { .. }) => {
            assert!(e.to_string().contains("default"), "{e}");
            assert!(e.to_string().contains("undefined"), "{e}");
        }
        other => panic!("expected TemplateRender, got {other:?}"),
    }
}

#[test]
fn tokenizer_strftime_now_and_float_repr() {
    // 2024-07-26 13:05:09 UTC, a Friday.
    let t = 1_722_000_000 - 1_722_000_000 % 86_400 + 13 * 3600 + 5 * 60 + 9;
    assert_eq!(strftime(t, "%d %b %Y"), "26 Jul 2024");
    assert_eq!(
        strftime(t, "%A %a %B %m/%d/%y %H:%M:%S %I%p %j %% %Q"),
        "Friday Fri July 07/26/24 13:05:09 01PM 208 % %Q"
    );
    assert_eq!(strftime(0, "%F %T"), "1970-01-01 00:00:00");
    assert_eq!(strftime(951_782_400, "%F"), "2000-02-29");

    let mut tok = smollm2();
    tok.set_chat_template(r#"{{ strftime_now("%Y-%m-%d") }}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = tok
        .apply_chat_template(&[], false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.len(), 10, "{out}");
    assert!(out.starts_with("20"), "{out}");

    for (f, s) in [
        (1.0, "1.0"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e16, "1e+16"),
        (123456789012345.0, "123456789012345.0"),
        (1.25e-7, "1.25e-07"),
        (0.1 + 0.2, "0.30000000000000004"),
    ] {
        assert_eq!(python_float_repr(f), s);
    }
}
