//! Numeric-answer match: the completion's final number against a row field,
//! tolerant of how the number is written.

use serde_json::Value;

use super::extract::{last_number, Extract};
use super::{Reward, RewardBuildError, RewardError, RewardInput, RewardOutput};

/// Score 1 when the last number of the completion's answer equals the row
/// field `field` within tolerance, else 0 with feedback ("your final answer 12
/// is not correct", "no number found in the answer"); the expected value is
/// never shown.
///
/// Numbers are read by [`find_numbers`](super::find_numbers): `1,000`, `$5`,
/// `5.0`, `-3`, `1e3`, `3/4`, `\frac{3}{4}`. The expected field is a JSON
/// number, or a string read the same way as the completion (its
/// [`Extract::Auto`] part's last number, so a GSM8K `"… #### 72"` gives 72).
///
/// Two numbers match when `|answer - expected| <= max(abs_tol, rel_tol * |expected|)`.
/// Defaults: [`Extract::Auto`], `abs_tol = 1e-6`, `rel_tol = 1e-9`.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericMatch {
    field: String,
    extract: Extract,
    abs_tol: f64,
    rel_tol: f64,
}

impl NumericMatch {
    /// Default absolute tolerance.
    pub const DEFAULT_ABS_TOL: f64 = 1e-6;
    /// Default relative tolerance.
    pub const DEFAULT_REL_TOL: f64 = 1e-9;

    /// Compares against the row field `field` (usually `answer`).
    pub fn new(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            extract: Extract::Auto,
            abs_tol: Self::DEFAULT_ABS_TOL,
            rel_tol: Self::DEFAULT_REL_TOL,
        }
    }

    /// Where in the completion the answer is; its last number is the answer.
    pub fn extract(mut self, extract: Extract) -> Self {
        self.extract = extract;
        self
    }

    /// Sets the absolute and relative tolerances.
    ///
    /// # Errors
    /// [`RewardBuildError::Invalid`] when either is negative or not finite.
    pub fn tolerance(mut self, abs_tol: f64, rel_tol: f64) -> Result<Self, RewardBuildError> {
        for (field, value) in [("abs_tol", abs_tol), ("rel_tol", rel_tol)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(RewardBuildError::Invalid {
                    reward: "numeric_match".into(),
                    field,
                    value: value.to_string(),
                    reason: "a tolerance must be finite and >= 0",
                });
            }
        }
        self.abs_tol = abs_tol;
        self.rel_tol = rel_tol;
        Ok(self)
    }

    fn expected(&self, input: &RewardInput<'_>) -> Result<f64, RewardError> {
        let wrong = |found| RewardError::FieldType {
            field: self.field.clone(),
            expected: "a number or a string holding one",
            found,
        };
        match input.field(&self.field)? {
            Value::Number(n) => n.as_f64().ok_or_else(|| wrong("a number out of range")),
            Value::String(s) => Extract::Auto
                .apply(s)
                .ok()
                .and_then(last_number)
                .map(|n| n.value)
                .ok_or_else(|| wrong("a string with no number")),
            other => Err(wrong(crate::dataset::json_type(other))),
        }
    }
}

impl Reward for NumericMatch {
    fn name(&self) -> &str {
        "numeric_match"
    }

    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
        let expected = self.expected(input)?;
        let answer = match self.extract.apply(input.completion) {
            Ok(answer) => answer,
            Err(feedback) => return Ok(RewardOutput::incorrect(feedback)),
        };
        let Some(number) = last_number(answer) else {
            return Ok(RewardOutput::incorrect("no number found in the answer"));
        };
        let tolerance = self.abs_tol.max(self.rel_tol * expected.abs());
        if (number.value - expected).abs() <= tolerance {
            Ok(RewardOutput::correct())
        } else {
            Ok(RewardOutput::incorrect(format!(
                "your final answer {} is not correct",
                number.text
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Prompt;
    use serde_json::{json, Map};

    fn run(
        reward: &NumericMatch,
        completion: &str,
        answer: Value,
    ) -> Result<RewardOutput, RewardError> {
        let prompt = Prompt::from("q");
        let mut row = Map::new();
        row.insert("answer".into(), answer);
        reward.score(&RewardInput::new(&prompt, completion, &[], &row))
    }

    #[test]
    fn formats_that_match() {
        let r = NumericMatch::new("answer");
        for (completion, answer) in [
            ("The total is 1,000 dollars", json!(1000)),
            ("It costs $5.", json!("5")),
            ("x = 5.0", json!(5)),
            ("so -3", json!(-3)),
            ("1e3", json!(1000)),
            ("first 7, finally \\boxed{42} (not 43)", json!(42)),
            ("\\boxed{\\frac{1}{2}}", json!(0.5)),
            ("3/4", json!("0.75")),
            (
                "Step 1: 48/2 = 24\n#### 72",
                json!("Natalia sold 48/2 = 24 clips.\n#### 72"),
            ),
        ] {
            let out = run(&r, completion, answer.clone()).unwrap();
            assert_eq!(out.score, 1.0, "{completion:?} vs {answer}");
        }
    }

    #[test]
    fn tolerance_is_relative_and_absolute() {
        let r = NumericMatch::new("answer");
        assert_eq!(run(&r, "0.3333333", json!(1.0 / 3.0)).unwrap().score, 1.0);
        assert_eq!(run(&r, "1000001", json!(1_000_000)).unwrap().score, 0.0);
        let loose = NumericMatch::new("answer").tolerance(0.0, 0.01).unwrap();
        assert_eq!(run(&loose, "101", json!(100)).unwrap().score, 1.0);
        assert_eq!(run(&loose, "102", json!(100)).unwrap().score, 0.0);
        assert!(NumericMatch::new("a").tolerance(-1.0, 0.0).is_err());
        assert!(NumericMatch::new("a").tolerance(0.0, f64::NAN).is_err());
    }

    #[test]
    fn feedback_names_the_given_answer_only() {
        let r = NumericMatch::new("answer");
        let out = run(&r, "I think it is 12", json!(13)).unwrap();
        assert_eq!(out.score, 0.0);
        assert_eq!(
            out.feedback.as_deref(),
            Some("your final answer 12 is not correct")
        );
        let out = run(&r, "no idea", json!(13)).unwrap();
        assert_eq!(
            out.feedback.as_deref(),
            Some("no number found in the answer")
        );
        let boxed = NumericMatch::new("answer").extract(Extract::Boxed);
        let out = run(&boxed, "12", json!(13)).unwrap();
        assert_eq!(out.feedback.as_deref(), Some("no \\boxed{} answer found"));
    }

    #[test]
    fn unusable_expected_values_are_errors_without_the_value() {
        let r = NumericMatch::new("answer");
        let err = run(&r, "1", json!("secret words")).unwrap_err().to_string();
        assert_eq!(
            err,
            "the dataset row's field `answer` should be a number or a string holding one, found a string with no number"
        );
        assert!(!err.contains("secret"));
        assert!(run(&r, "1", json!(null)).is_err());
    }
}
