//! [`Columns`]: which column of a dataset row is the prompt, the answer and the feedback.
//!
//! The defaults read both our JSONL rows and verl's parquet schema as they are: the prompt is
//! the `prompt` column (a string, or verl's list of chat messages), the answer is the row's
//! `answer` or else verl's `reward_model.ground_truth`. Every other column stays a field of
//! the row, nested columns as JSON objects (verl's `data_source`, `extra_info`), so rewards
//! (an external command's `row`, a library closure's `RewardInput::row`) see them all.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{json_type, Prompt, Row, RowProblem};

/// verl's answer column: `reward_model: {"style": "rule", "ground_truth": ...}`.
pub const VERL_ANSWER: &str = "reward_model.ground_truth";

/// Which columns a dataset row's prompt, answer and feedback come from. A name with dots
/// reaches into nested columns (`reward_model.ground_truth`) unless a column has that exact
/// name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Columns {
    /// The prompt: a string or a list of `{"role", "content"}` messages. Default `"prompt"`.
    /// Another column named here replaces a `prompt` column, which is then dropped.
    pub prompt: String,
    /// Copied to the row field `answer` (what `ExactMatch`/`NumericMatch` read by default); a
    /// row without it is an error. Default none: the row's own `answer`, else verl's
    /// `reward_model.ground_truth` when the row has it.
    pub answer: Option<String>,
    /// Copied to the row field `feedback` when present and not null (rewards see it, e.g. an
    /// external command's `row.feedback`). Default none.
    pub feedback: Option<String>,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            prompt: "prompt".into(),
            answer: None,
            feedback: None,
        }
    }
}

impl Columns {
    /// A dataset row from one record (a JSON object: a JSONL line, a parquet or Arrow row).
    ///
    /// # Errors
    /// [`RowProblem::MissingPrompt`] / [`RowProblem::Prompt`] for the `prompt` column,
    /// [`RowProblem::Column`] naming another chosen column that is missing or invalid.
    pub fn row(&self, mut object: Map<String, Value>) -> Result<Row, RowProblem> {
        let answer = match &self.answer {
            Some(column) => Some(
                lookup(&object, column)
                    .cloned()
                    .ok_or_else(|| missing(column))?,
            ),
            None if object.contains_key("answer") => None,
            None => lookup(&object, VERL_ANSWER).cloned(),
        };
        let feedback = match &self.feedback {
            Some(column) => lookup(&object, column)
                .ok_or_else(|| missing(column))?
                .clone(),
            None => Value::Null,
        };
        let prompt = if self.prompt == "prompt" {
            object.remove("prompt").ok_or(RowProblem::MissingPrompt)?
        } else {
            let value = lookup(&object, &self.prompt)
                .cloned()
                .ok_or_else(|| missing(&self.prompt))?;
            object.remove(&self.prompt);
            object.remove("prompt");
            value
        };
        let prompt = Prompt::from_json(&prompt).map_err(|e| {
            if self.prompt == "prompt" {
                RowProblem::Prompt(e)
            } else {
                RowProblem::Column {
                    column: self.prompt.clone(),
                    reason: e.to_string(),
                }
            }
        })?;
        if let Some(answer) = answer {
            object.insert("answer".into(), answer);
        }
        match feedback {
            Value::Null => {}
            Value::String(text) => {
                object.insert("feedback".into(), Value::String(text));
            }
            other => {
                return Err(RowProblem::Column {
                    column: self.feedback.clone().unwrap_or_default(),
                    reason: format!("feedback should be text, found {}", json_type(&other)),
                })
            }
        }
        Ok(Row {
            prompt,
            fields: object,
        })
    }
}

fn missing(column: &str) -> RowProblem {
    RowProblem::Column {
        column: column.to_string(),
        reason: "missing from the row".into(),
    }
}

/// The column `name`: a top-level key of that exact name, else the dotted path into nested
/// objects.
fn lookup<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = object.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = object.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn the_defaults_read_verl_rows_and_our_rows_as_they_are() {
        let verl = object(json!({
            "data_source": "gsm8k",
            "prompt": [{"role": "user", "content": "1+1?"}],
            "reward_model": {"style": "rule", "ground_truth": "2"},
            "extra_info": {"index": 0},
        }));
        let row = Columns::default().row(verl).unwrap();
        assert_eq!(row.prompt.last_user_text(), Some("1+1?"));
        assert_eq!(row.fields["answer"], json!("2"));
        assert_eq!(row.fields["extra_info"], json!({"index": 0}));
        assert_eq!(row.fields["data_source"], json!("gsm8k"));
        // A row's own answer wins over the verl column.
        let ours =
            object(json!({"prompt": "x", "answer": 7, "reward_model": {"ground_truth": "8"}}));
        assert_eq!(
            Columns::default().row(ours).unwrap().fields["answer"],
            json!(7)
        );
        let plain = object(json!({"prompt": "x"}));
        assert!(!Columns::default()
            .row(plain)
            .unwrap()
            .fields
            .contains_key("answer"));
    }

    #[test]
    fn chosen_columns_are_mapped_and_name_themselves_when_wrong() {
        let columns = Columns {
            prompt: "question".into(),
            answer: Some("meta.solution".into()),
            feedback: Some("hint".into()),
        };
        let row = columns
            .row(object(json!({"question": "2*3=", "meta": {"solution": 6}, "hint": "multiply", "prompt": "old"})))
            .unwrap();
        assert_eq!(row.prompt.last_user_text(), Some("2*3="));
        assert_eq!(row.fields["answer"], json!(6));
        assert_eq!(row.fields["feedback"], json!("multiply"));
        assert!(!row.fields.contains_key("prompt") && !row.fields.contains_key("question"));

        let err = columns
            .row(object(json!({"question": "q", "hint": "h"})))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `meta.solution`: missing from the row"
        );
        let err = columns
            .row(object(
                json!({"question": 5, "meta": {"solution": 6}, "hint": "h"}),
            ))
            .unwrap_err();
        assert!(err.to_string().starts_with("column `question`: "), "{err}");
        let err = columns
            .row(object(
                json!({"question": "q", "meta": {"solution": 6}, "hint": [1]}),
            ))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `hint`: feedback should be text, found a list"
        );
        // A null feedback is no feedback.
        let row = columns
            .row(object(
                json!({"question": "q", "meta": {"solution": 6}, "hint": null}),
            ))
            .unwrap();
        assert!(!row.fields.contains_key("feedback"));
    }
}
