//! A regular-expression check on the completion (format rewards).

use regex::Regex;

use super::{Reward, RewardBuildError, RewardError, RewardInput, RewardOutput};

/// Score 1 when the completion matches `pattern` (anywhere, or as a whole
/// with [`RegexMatch::full_match`]), else 0 with the optional feedback text.
/// Patterns use the [`regex`] crate's syntax; flags such as `(?s)` or `(?i)`
/// go inside the pattern.
#[derive(Debug, Clone)]
pub struct RegexMatch {
    /// Matches anywhere.
    find: Regex,
    /// The same pattern anchored at both ends.
    full: Regex,
    full_match: bool,
    feedback: Option<String>,
}

impl RegexMatch {
    /// A reward that looks for `pattern` anywhere in the completion.
    ///
    /// # Errors
    /// [`RewardBuildError::InvalidRegex`] when the pattern does not compile.
    pub fn new(pattern: impl Into<String>) -> Result<Self, RewardBuildError> {
        let pattern = pattern.into();
        Ok(Self {
            find: compile(&pattern, &pattern)?,
            full: compile(&format!(r"\A(?:{pattern})\z"), &pattern)?,
            full_match: false,
            feedback: None,
        })
    }

    /// Whether the whole completion must match (default: a match anywhere).
    pub fn full_match(mut self, on: bool) -> Self {
        self.full_match = on;
        self
    }

    /// Feedback given when the completion does not match (e.g. "put the
    /// final answer in \boxed{}"); blank text means none.
    pub fn feedback(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        self.feedback = (!text.trim().is_empty()).then_some(text);
        self
    }
}

fn compile(source: &str, pattern: &str) -> Result<Regex, RewardBuildError> {
    Regex::new(source).map_err(|e| RewardBuildError::InvalidRegex {
        pattern: pattern.to_string(),
        source: Box::new(e),
    })
}

impl Reward for RegexMatch {
    fn name(&self) -> &str {
        "regex"
    }

    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
        let regex = if self.full_match {
            &self.full
        } else {
            &self.find
        };
        Ok(if regex.is_match(input.completion) {
            RewardOutput::correct()
        } else {
            RewardOutput {
                score: 0.0,
                feedback: self.feedback.clone(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Prompt;
    use serde_json::Map;

    fn score(r: &RegexMatch, completion: &str) -> RewardOutput {
        let prompt = Prompt::from("q");
        let row = Map::new();
        r.score(&RewardInput::new(&prompt, completion, &[], &row))
            .unwrap()
    }

    #[test]
    fn finds_or_fully_matches() {
        let r = RegexMatch::new(r"<answer>\d+</answer>").unwrap();
        assert_eq!(score(&r, "so <answer>4</answer>.").score, 1.0);
        assert_eq!(score(&r, "so 4").score, 0.0);
        assert_eq!(score(&r, "so 4").feedback, None);
        let full = r
            .full_match(true)
            .feedback("answer only with <answer>N</answer>");
        assert_eq!(score(&full, "<answer>4</answer>").score, 1.0);
        let out = score(&full, "so <answer>4</answer>");
        assert_eq!(out.score, 0.0);
        assert_eq!(
            out.feedback.as_deref(),
            Some("answer only with <answer>N</answer>")
        );
        // An alternation stays anchored as a whole.
        let alt = RegexMatch::new("a|b").unwrap().full_match(true);
        assert_eq!(score(&alt, "ab").score, 0.0);
        assert_eq!(score(&alt, "b").score, 1.0);
    }

    #[test]
    fn bad_patterns_are_build_errors() {
        let err = RegexMatch::new("(unclosed").unwrap_err().to_string();
        assert!(err.starts_with("invalid regex `(unclosed`"), "{err}");
    }
}
