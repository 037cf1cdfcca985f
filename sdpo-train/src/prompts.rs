//! [`Prompts`]: chat messages to token ids and token ids to text, with the tokenizer's chat
//! template, the padding id and the prompt length limit of a run.

use std::collections::BTreeMap;

use sdpo_core::ChatMessage;
use sdpo_models::{Tokenizer, TokenizerError};

use crate::error::TrainError;

/// The conversions between chat messages, token ids and text that rollouts and teachers need.
#[derive(Debug, Clone)]
pub struct Prompts {
    tokenizer: Tokenizer,
    pad_id: u32,
    max_prompt_len: usize,
    template_kwargs: BTreeMap<String, serde_json::Value>,
}

/// A [`TrainError::Tokenizer`] naming what was being tokenized.
pub(crate) fn tok_err(context: impl Into<String>) -> impl FnOnce(TokenizerError) -> TrainError {
    let context = context.into();
    move |source| TrainError::Tokenizer { context, source }
}

impl Prompts {
    /// Prompts for `tokenizer`, keeping the last `max_prompt_len` tokens of a student prompt.
    /// Padding uses the tokenizer's pad token, else its first eos id, else 0.
    pub fn new(tokenizer: Tokenizer, max_prompt_len: usize) -> Self {
        let pad_id = tokenizer
            .pad_token()
            .and_then(|p| tokenizer.token_to_id(p))
            .or_else(|| tokenizer.eos_token_ids().first().copied())
            .unwrap_or(0);
        Self {
            tokenizer,
            pad_id,
            max_prompt_len,
            template_kwargs: BTreeMap::new(),
        }
    }

    /// The same, rendering chat templates with these extra variables (transformers' keyword
    /// arguments, e.g. `enable_thinking`).
    pub fn with_template_kwargs(mut self, kwargs: BTreeMap<String, serde_json::Value>) -> Self {
        self.template_kwargs = kwargs;
        self
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The messages as text: the chat template with a generation prompt, or the contents
    /// joined by newlines for a tokenizer without a template.
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`] naming `context`.
    pub fn render(&self, messages: &[ChatMessage], context: &str) -> Result<String, TrainError> {
        match self.tokenizer.chat_template() {
            Some(_) => self
                .tokenizer
                .apply_chat_template_with(messages, true, &self.template_kwargs)
                .map_err(tok_err(context)),
            None => Ok(messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n")),
        }
    }

    /// Token ids of `text` (no special tokens added: the template has them).
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`] naming `context`.
    pub fn encode(&self, text: &str, context: &str) -> Result<Vec<u32>, TrainError> {
        self.tokenizer.encode(text, false).map_err(tok_err(context))
    }

    /// A student prompt: rendered, encoded, and cut to its last `max_prompt_len` tokens.
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`] naming `context`.
    pub fn encode_prompt(
        &self,
        messages: &[ChatMessage],
        context: &str,
    ) -> Result<Vec<u32>, TrainError> {
        self.encode_prompt_within(messages, self.max_prompt_len, context)
    }

    /// As [`Self::encode_prompt`] with another length limit.
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`] naming `context`.
    pub fn encode_prompt_within(
        &self,
        messages: &[ChatMessage],
        max_len: usize,
        context: &str,
    ) -> Result<Vec<u32>, TrainError> {
        let mut ids = self.encode(&self.render(messages, context)?, context)?;
        if ids.len() > max_len {
            ids.drain(..ids.len() - max_len);
        }
        Ok(ids)
    }

    /// Each completion's text, special tokens skipped.
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`] naming the completion.
    pub fn decode_all(&self, tokens: &[Vec<u32>]) -> Result<Vec<String>, TrainError> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.tokenizer
                    .decode(t, true)
                    .map_err(tok_err(format!("completion {i}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::char_tokenizer;

    #[test]
    fn template_kwargs_reach_the_chat_template() {
        let mut tokenizer = char_tokenizer().unwrap();
        tokenizer
            .set_chat_template(
                "{% for m in messages %}{{ m.content }}{% endfor %}\
                 {% if enable_thinking is defined and not enable_thinking %}/no_think{% endif %}",
            )
            .unwrap();
        let messages = [ChatMessage::user("1+1=")];
        let plain = Prompts::new(tokenizer.clone(), 64);
        assert_eq!(plain.render(&messages, "test").unwrap(), "1+1=");
        let kwargs = BTreeMap::from([("enable_thinking".to_string(), serde_json::json!(false))]);
        let off = Prompts::new(tokenizer, 64).with_template_kwargs(kwargs);
        assert_eq!(off.render(&messages, "test").unwrap(), "1+1=/no_think");
    }

    #[test]
    fn prompts_keep_their_last_tokens() {
        let prompts = Prompts::new(char_tokenizer().unwrap(), 3);
        let messages = [ChatMessage::user("12345")];
        let all = prompts
            .encode_prompt_within(&messages, 100, "test")
            .unwrap();
        assert_eq!(
            prompts.encode_prompt(&messages, "test").unwrap(),
            all[all.len() - 3..]
        );
    }
}
