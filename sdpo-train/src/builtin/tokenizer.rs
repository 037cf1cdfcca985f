//! A character-level tokenizer for the built-in model: one token per printable ASCII
//! character and newline, plus `<pad>`, `<eos>` and `<unk>`, built as a `tokenizers` BPE
//! model without merges (so it is an ordinary [`Tokenizer`] with a chat template).

use sdpo_models::{Tokenizer, TokenizerError};

/// The padding token.
pub const PAD: &str = "<pad>";
/// The end-of-sequence token (the stop id of generation).
pub const EOS: &str = "<eos>";
/// The unknown-character token.
pub const UNK: &str = "<unk>";

/// The chat template: system and user messages as plain lines, assistant turns after `> `
/// and ended by `<eos>`; the generation prompt is `> `.
pub const CHAT_TEMPLATE: &str = "{% for m in messages %}{% if m.role == 'assistant' %}> {{ m.content }}<eos>\n{% else %}{{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}> {% endif %}";

/// The characters of the vocabulary after the three special tokens, in id order.
pub fn alphabet() -> Vec<char> {
    let mut chars: Vec<char> = (b' '..=b'~').map(char::from).collect();
    chars.push('\n');
    chars
}

/// The built-in tokenizer (vocabulary: 3 specials + 96 characters).
///
/// # Errors
/// Never for the built-in definition; the `Result` carries the tokenizer crate's checks.
pub fn char_tokenizer() -> Result<Tokenizer, TokenizerError> {
    let mut vocab = serde_json::Map::new();
    let specials = [PAD, EOS, UNK];
    for (i, s) in specials.iter().enumerate() {
        vocab.insert(s.to_string(), i.into());
    }
    for (i, c) in alphabet().into_iter().enumerate() {
        vocab.insert(c.to_string(), (i + specials.len()).into());
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": UNK, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    let inner: tokenizers::Tokenizer =
        json.to_string()
            .parse()
            .map_err(|e: tokenizers::Error| TokenizerError::Encode {
                len: 0,
                start: "<built-in tokenizer>".to_string(),
                message: e.to_string(),
            })?;
    Tokenizer::from_parts(
        inner,
        Some(CHAT_TEMPLATE.to_string()),
        None,
        Some(EOS.to_string()),
    )?
    .with_pad_token(PAD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdpo_core::ChatMessage;

    #[test]
    fn one_token_per_character_and_round_trip() {
        let tok = char_tokenizer().unwrap();
        assert_eq!(tok.vocab_size(), 99);
        let text = "12+7=19\nok";
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(ids.len(), text.len());
        assert_eq!(tok.decode(&ids, true).unwrap(), text);
        let eos = tok.eos_token_ids()[0];
        let mut with_eos = ids.clone();
        with_eos.push(eos);
        assert_eq!(tok.decode(&with_eos, true).unwrap(), text);
        assert_eq!(
            tok.encode("a<eos>", false).unwrap(),
            vec![ids_of(&tok, 'a'), eos]
        );
    }

    fn ids_of(tok: &Tokenizer, c: char) -> u32 {
        tok.token_to_id(&c.to_string()).unwrap()
    }

    #[test]
    fn chat_template_renders_turns() {
        let tok = char_tokenizer().unwrap();
        let msgs = [
            ChatMessage::user("3+4="),
            ChatMessage::assistant("7"),
            ChatMessage::user("1+1="),
        ];
        assert_eq!(
            tok.apply_chat_template(&msgs, true).unwrap(),
            "3+4=\n> 7<eos>\n1+1=\n> "
        );
    }
}
