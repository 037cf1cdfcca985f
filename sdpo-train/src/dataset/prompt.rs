//! A dataset row's prompt: plain text or a list of chat messages.

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use sdpo_core::ChatMessage;

/// The prompt of one dataset row, as written in the JSONL file.
///
/// In JSON it is either a string (`"prompt": "What is 2+2?"`) or a list of
/// chat messages (`"prompt": [{"role": "system", "content": ".."},
/// {"role": "user", "content": ".."}]`). It serializes back to the same shape,
/// which is what an external-command reward receives.
///
/// A valid prompt (every constructor in this crate checks it) is non-empty and,
/// when it is a message list, ends with a `user` message: reprompting replaces
/// that last message with the teacher's reprompt, so any message after the last
/// question would be lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    /// A single user message.
    Text(String),
    /// A conversation; the last message is the user's question.
    Messages(Vec<ChatMessage>),
}

/// Why a JSON value is not a valid prompt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PromptError {
    /// Neither a string nor a list.
    #[error("`prompt` should be a string or a list of {{\"role\", \"content\"}} messages, found {found}")]
    WrongType {
        /// The JSON type found (`a number`, `an object`, …).
        found: &'static str,
    },
    /// An empty (or whitespace-only) prompt text.
    #[error("`prompt` is empty")]
    EmptyText,
    /// An empty message list.
    #[error("`prompt` is an empty list of messages")]
    NoMessages,
    /// A list element that is not an object.
    #[error("`prompt[{index}]` should be a {{\"role\", \"content\"}} object, found {found}")]
    MessageNotObject {
        /// Position of the message in the list.
        index: usize,
        /// The JSON type found.
        found: &'static str,
    },
    /// A message whose `role` or `content` is missing or not a string.
    #[error("`prompt[{index}].{field}` should be a string, found {found}")]
    MessageField {
        /// Position of the message in the list.
        index: usize,
        /// `role` or `content`.
        field: &'static str,
        /// The JSON type found (`nothing` when the key is missing).
        found: &'static str,
    },
    /// A message list whose last message is not from the user.
    #[error(
        "the last message of `prompt` should have role `user` (the question that reprompting \
         rewrites), found role `{role}`"
    )]
    LastNotUser {
        /// The role of the last message.
        role: String,
    },
}

impl Prompt {
    /// Parses and checks a prompt from its JSON form (a string or a list of
    /// `{"role", "content"}` objects; other keys of a message are ignored).
    ///
    /// # Errors
    /// [`PromptError`] naming what is wrong and where in the list.
    pub fn from_json(value: &Value) -> Result<Self, PromptError> {
        let prompt = match value {
            Value::String(text) => Prompt::Text(text.clone()),
            Value::Array(items) => Prompt::Messages(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| message_from_json(index, item))
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(PromptError::WrongType {
                    found: json_type(other),
                })
            }
        };
        prompt.validate()?;
        Ok(prompt)
    }

    /// Checks the invariants every dataset prompt satisfies: non-empty text,
    /// or a non-empty message list ending with a `user` message.
    ///
    /// # Errors
    /// [`PromptError::EmptyText`], [`PromptError::NoMessages`] or
    /// [`PromptError::LastNotUser`].
    pub fn validate(&self) -> Result<(), PromptError> {
        match self {
            Prompt::Text(text) if text.trim().is_empty() => Err(PromptError::EmptyText),
            Prompt::Text(_) => Ok(()),
            Prompt::Messages(messages) => match messages.last() {
                None => Err(PromptError::NoMessages),
                Some(last) if last.role != "user" => Err(PromptError::LastNotUser {
                    role: last.role.clone(),
                }),
                Some(_) => Ok(()),
            },
        }
    }

    /// The prompt as chat messages: `Text(s)` is one `user` message.
    pub fn to_messages(&self) -> Vec<ChatMessage> {
        match self {
            Prompt::Text(text) => vec![ChatMessage::user(text.as_str())],
            Prompt::Messages(messages) => messages.clone(),
        }
    }

    /// The text of the last `user` message (the question); `None` only for a
    /// message list without a user message, which [`Prompt::validate`] rejects.
    pub fn last_user_text(&self) -> Option<&str> {
        match self {
            Prompt::Text(text) => Some(text),
            Prompt::Messages(messages) => messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.as_str()),
        }
    }
}

impl From<&str> for Prompt {
    fn from(text: &str) -> Self {
        Prompt::Text(text.to_string())
    }
}

impl From<String> for Prompt {
    fn from(text: String) -> Self {
        Prompt::Text(text)
    }
}

impl From<Vec<ChatMessage>> for Prompt {
    fn from(messages: Vec<ChatMessage>) -> Self {
        Prompt::Messages(messages)
    }
}

fn message_from_json(index: usize, item: &Value) -> Result<ChatMessage, PromptError> {
    let Value::Object(object) = item else {
        return Err(PromptError::MessageNotObject {
            index,
            found: json_type(item),
        });
    };
    let field = |field: &'static str| match object.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(PromptError::MessageField {
            index,
            field,
            found: other.map_or("nothing", json_type),
        }),
    };
    Ok(ChatMessage::new(field("role")?, field("content")?))
}

/// The JSON type of a value, with an article, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_prompt_is_one_user_message() {
        let p = Prompt::from_json(&json!("What is 2+2?")).unwrap();
        assert_eq!(p.to_messages(), vec![ChatMessage::user("What is 2+2?")]);
        assert_eq!(p.last_user_text(), Some("What is 2+2?"));
    }

    #[test]
    fn message_prompt_keeps_history_and_finds_the_question() {
        let p = Prompt::from_json(&json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second", "name": "ignored"}
        ]))
        .unwrap();
        assert_eq!(p.to_messages().len(), 4);
        assert_eq!(p.last_user_text(), Some("second"));
        assert_eq!(
            serde_json::to_value(&p).unwrap()[3],
            json!({"role": "user", "content": "second"})
        );
    }

    #[test]
    fn bad_prompts_say_what_is_wrong() {
        let err = |v: Value| Prompt::from_json(&v).unwrap_err().to_string();
        assert!(err(json!(3)).contains("found a number"));
        assert!(err(json!("  ")).contains("empty"));
        assert!(err(json!([])).contains("empty list"));
        assert!(err(json!(["hi"])).contains("`prompt[0]`"));
        assert!(err(json!([{"role": "user"}]))
            .contains("`prompt[0].content` should be a string, found nothing"));
        assert!(err(
            json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
        )
        .contains("found role `assistant`"));
    }
}
