//! Exact match of the completion's final answer against a row field.

use serde_json::Value;

use super::extract::Extract;
use super::{Reward, RewardError, RewardInput, RewardOutput};

/// Answers longer than this many characters are not quoted back in feedback.
const QUOTE_LIMIT: usize = 100;

/// Score 1 when the completion's answer equals the row field `field`, else 0
/// with feedback ("your final answer "7" is not correct", "no \boxed{} answer
/// found"); the expected answer is never shown.
///
/// The expected value is the field's string, or a number's or boolean's JSON
/// text (`4`, `true`). Defaults: the whole completion ([`Extract::Whole`]),
/// both sides trimmed, case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactMatch {
    field: String,
    extract: Extract,
    trim: bool,
    case_insensitive: bool,
}

impl ExactMatch {
    /// Compares against the row field `field` (usually `answer`).
    pub fn new(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            extract: Extract::Whole,
            trim: true,
            case_insensitive: false,
        }
    }

    /// Where in the completion the answer is.
    pub fn extract(mut self, extract: Extract) -> Self {
        self.extract = extract;
        self
    }

    /// Whether surrounding whitespace is ignored (on both sides; default on).
    pub fn trim(mut self, on: bool) -> Self {
        self.trim = on;
        self
    }

    /// Whether letter case is ignored (default off).
    pub fn case_insensitive(mut self, on: bool) -> Self {
        self.case_insensitive = on;
        self
    }

    fn normalize(&self, text: &str) -> String {
        let text = if self.trim { text.trim() } else { text };
        if self.case_insensitive {
            text.to_lowercase()
        } else {
            text.to_string()
        }
    }
}

impl Reward for ExactMatch {
    fn name(&self) -> &str {
        "exact_match"
    }

    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
        let expected = match input.field(&self.field)? {
            Value::String(s) => s.clone(),
            v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
            other => {
                return Err(RewardError::FieldType {
                    field: self.field.clone(),
                    expected: "a string, number or boolean",
                    found: crate::dataset::json_type(other),
                })
            }
        };
        let answer = match self.extract.apply(input.completion) {
            Ok(answer) => answer,
            Err(feedback) => return Ok(RewardOutput::incorrect(feedback)),
        };
        if self.normalize(answer) == self.normalize(&expected) {
            return Ok(RewardOutput::correct());
        }
        let shown = answer.trim();
        Ok(RewardOutput::incorrect(if shown.is_empty() {
            "your answer is empty".to_string()
        } else if shown.chars().count() <= QUOTE_LIMIT && !shown.contains('\n') {
            format!("your final answer \"{shown}\" is not correct")
        } else {
            "your final answer is not correct".to_string()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Prompt;
    use serde_json::{json, Map};

    fn score(reward: &ExactMatch, completion: &str, answer: Value) -> RewardOutput {
        let prompt = Prompt::from("q");
        let mut row = Map::new();
        row.insert("answer".into(), answer);
        reward
            .score(&RewardInput::new(&prompt, completion, &[], &row))
            .unwrap()
    }

    #[test]
    fn trims_and_folds_case_on_request() {
        let r = ExactMatch::new("answer");
        assert_eq!(score(&r, " Paris\n", json!("Paris")).score, 1.0);
        assert_eq!(score(&r, "paris", json!("Paris")).score, 0.0);
        let r = r.case_insensitive(true);
        assert_eq!(score(&r, "paris", json!("PARIS ")).score, 1.0);
        let strict = ExactMatch::new("answer").trim(false);
        assert_eq!(score(&strict, "Paris ", json!("Paris")).score, 0.0);
    }

    #[test]
    fn numbers_and_booleans_compare_as_their_json_text() {
        let r = ExactMatch::new("answer");
        assert_eq!(score(&r, "4", json!(4)).score, 1.0);
        assert_eq!(score(&r, "true", json!(true)).score, 1.0);
    }

    #[test]
    fn feedback_quotes_the_answer_given_never_the_expected_one() {
        let r = ExactMatch::new("answer").extract(Extract::AfterMarker("####".into()));
        let out = score(&r, "so #### 7", json!("8"));
        assert_eq!(out.score, 0.0);
        assert_eq!(
            out.feedback.as_deref(),
            Some("your final answer \"7\" is not correct")
        );
        let out = score(&r, "no marker", json!("8"));
        assert_eq!(
            out.feedback.as_deref(),
            Some("no final answer found after `####`")
        );
        let long = "x".repeat(200);
        let out = score(&ExactMatch::new("answer"), &long, json!("8"));
        assert_eq!(
            out.feedback.as_deref(),
            Some("your final answer is not correct")
        );
        assert_eq!(score(&r, "#### 8", json!("8")), RewardOutput::correct());
    }

    #[test]
    fn unusable_fields_are_errors() {
        let prompt = Prompt::from("q");
        let row = json!({"answer": [1]}).as_object().unwrap().clone();
        let input = RewardInput::new(&prompt, "1", &[], &row);
        let err = ExactMatch::new("answer").score(&input).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the dataset row's field `answer` should be a string, number or boolean, found a list"
        );
        let err = ExactMatch::new("label").score(&input).unwrap_err();
        assert!(matches!(err, RewardError::MissingField { ref field } if field == "label"));
    }
}
