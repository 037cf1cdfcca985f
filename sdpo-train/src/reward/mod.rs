//! Rewards: scores with optional textual feedback, weighted sums, built-in verifiers.
//!
//! A [`Reward`] sees one completion at a time ([`RewardInput`]: the prompt,
//! the completion's text and token ids, and the dataset row's other fields)
//! and returns a score with optional feedback ([`RewardOutput`]). SDPO puts
//! that feedback into the teacher's prompt, so it should say *what* is wrong
//! without revealing the expected answer.
//!
//! [`Rewards`] combines several rewards with weights and never fails: a reward
//! that errors, panics or returns a non-finite score turns its sample into a
//! failure (score 0; the error in [`Scored::error`] and the log, never in the
//! teacher's feedback) that [`Scored::failed`] and the `reward/failures` metric
//! ([`RewardSummary`]) count, and training goes on.
//!
//! Built-in verifiers: [`ExactMatch`], [`NumericMatch`], [`RegexMatch`] and
//! [`CommandReward`] (any program that reads one JSON object on stdin and
//! writes `{"score": .., "feedback": ..}` on stdout). [`RewardConfig`] /
//! [`RewardSpec`] describe them in RON or JSON configs.
//!
//! ```
//! use sdpo_train::dataset::Prompt;
//! use sdpo_train::reward::{ExactMatch, Extract, NumericMatch, RewardInput, Rewards};
//!
//! let rewards = Rewards::new()
//!     .add(NumericMatch::new("answer"), 1.0)?
//!     .add(ExactMatch::new("answer").extract(Extract::Boxed), 0.5)?;
//! let prompt = Prompt::from("What is 6 * 7?");
//! let row = serde_json::json!({"answer": "42"}).as_object().unwrap().clone();
//! let input = RewardInput::new(&prompt, "6 * 7 = \\boxed{42}", &[], &row);
//! let scored = rewards.evaluate(&[input]);
//! assert_eq!(scored[0].score, 1.5);
//! assert!(!scored[0].failed);
//! # Ok::<(), sdpo_train::reward::RewardBuildError>(())
//! ```

mod command;
mod exact;
mod extract;
mod numeric;
mod pattern;
mod spec;
mod weighted;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::dataset::Prompt;

pub use command::{CommandError, CommandReward};
pub use exact::ExactMatch;
pub use extract::{find_numbers, Extract, NumberMatch};
pub use numeric::NumericMatch;
pub use pattern::RegexMatch;
pub use spec::{RewardConfig, RewardSpec};
pub use weighted::{ComponentScore, ComponentSummary, RewardSummary, Rewards, Scored};

/// Name of the metric counting failed samples per step (see [`RewardSummary`]).
pub const FAILURES_METRIC: &str = "reward/failures";

/// What a reward sees of one completion.
#[derive(Debug, Clone, Copy)]
pub struct RewardInput<'a> {
    /// The dataset row's prompt.
    pub prompt: &'a Prompt,
    /// The decoded completion (special tokens skipped).
    pub completion: &'a str,
    /// The completion's token ids.
    pub completion_ids: &'a [u32],
    /// The dataset row's fields other than `prompt` (e.g. `answer`).
    pub row: &'a Map<String, Value>,
}

impl<'a> RewardInput<'a> {
    /// An input from its parts.
    pub fn new(
        prompt: &'a Prompt,
        completion: &'a str,
        completion_ids: &'a [u32],
        row: &'a Map<String, Value>,
    ) -> Self {
        Self {
            prompt,
            completion,
            completion_ids,
            row,
        }
    }

    /// The row field `name`.
    ///
    /// # Errors
    /// [`RewardError::MissingField`] when the row has no such field.
    pub fn field(&self, name: &str) -> Result<&'a Value, RewardError> {
        self.row.get(name).ok_or_else(|| RewardError::MissingField {
            field: name.to_string(),
        })
    }
}

/// A reward's verdict on one completion.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardOutput {
    /// The score; must be finite ([`Rewards`] turns NaN or ±inf into a failure).
    pub score: f64,
    /// Feedback for the teacher prompt. Empty or whitespace-only text counts
    /// as none ([`Rewards`] drops it).
    pub feedback: Option<String>,
}

impl RewardOutput {
    /// A score without feedback.
    pub fn new(score: f64) -> Self {
        Self {
            score,
            feedback: None,
        }
    }

    /// A score with feedback (`None` when `feedback` is blank).
    pub fn with_feedback(score: f64, feedback: impl Into<String>) -> Self {
        Self {
            score,
            feedback: Some(feedback.into()),
        }
        .normalized()
    }

    /// Score 1, no feedback.
    pub fn correct() -> Self {
        Self::new(1.0)
    }

    /// Score 0 with feedback.
    pub fn incorrect(feedback: impl Into<String>) -> Self {
        Self::with_feedback(0.0, feedback)
    }

    /// The output with blank feedback replaced by `None`.
    pub fn normalized(mut self) -> Self {
        if self
            .feedback
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            self.feedback = None;
        }
        self
    }
}

/// Scores completions. Implementations must be thread-safe: [`Rewards`] calls
/// them from several threads at once.
pub trait Reward: Send + Sync {
    /// A short name (`numeric_match`), used in metrics and failure messages
    /// unless [`Rewards::add_named`] gives another.
    fn name(&self) -> &str;

    /// Scores one completion.
    ///
    /// # Errors
    /// [`RewardError`] when the completion cannot be scored (a missing row
    /// field, a crashed verifier); the sample then counts as a failure.
    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError>;
}

impl<R: Reward + ?Sized> Reward for Box<R> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
        (**self).score(input)
    }
}

/// A [`Reward`] from a closure (see [`reward_fn`]).
pub struct FnReward<F> {
    name: String,
    f: F,
}

/// A reward named `name` that calls `f`.
///
/// ```
/// use sdpo_train::reward::{reward_fn, Reward, RewardOutput};
/// let short = reward_fn("short", |input| {
///     Ok(RewardOutput::new(if input.completion.len() < 100 { 1.0 } else { 0.0 }))
/// });
/// assert_eq!(short.name(), "short");
/// ```
pub fn reward_fn<F>(name: impl Into<String>, f: F) -> FnReward<F>
where
    F: Fn(&RewardInput<'_>) -> Result<RewardOutput, RewardError> + Send + Sync,
{
    FnReward {
        name: name.into(),
        f,
    }
}

impl<F> Reward for FnReward<F>
where
    F: Fn(&RewardInput<'_>) -> Result<RewardOutput, RewardError> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
        (self.f)(input)
    }
}

impl<F> std::fmt::Debug for FnReward<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnReward")
            .field("name", &self.name)
            .finish()
    }
}

/// Why a completion could not be scored. The message follows
/// "reward `name` failed: " in [`Scored::error`] and the log; it never quotes
/// the expected answer.
#[derive(Debug, Error)]
pub enum RewardError {
    /// The dataset row lacks a field the reward reads.
    #[error("the dataset row has no field `{field}`")]
    MissingField {
        /// The field name.
        field: String,
    },
    /// A row field of the wrong kind (its value is not shown: it may be the answer).
    #[error("the dataset row's field `{field}` should be {expected}, found {found}")]
    FieldType {
        /// The field name.
        field: String,
        /// What the reward needs.
        expected: &'static str,
        /// What the row holds (a JSON type or a short description).
        found: &'static str,
    },
    /// An external command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The reward returned NaN or an infinity.
    #[error("returned a non-finite score ({score})")]
    NonFinite {
        /// The score returned.
        score: f64,
    },
    /// The reward panicked.
    #[error("panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// Any other error of a user-written reward.
    #[error("{0}")]
    Custom(Box<dyn std::error::Error + Send + Sync>),
}

impl RewardError {
    /// A custom error from a message or another error.
    pub fn custom(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        RewardError::Custom(error.into())
    }
}

/// Why a reward or a set of rewards could not be built (bad configuration).
#[derive(Debug, Error)]
pub enum RewardBuildError {
    /// A regular expression that does not compile.
    #[error("invalid regex `{pattern}`: {source}")]
    InvalidRegex {
        /// The pattern as given.
        pattern: String,
        /// The compiler's message.
        source: Box<regex::Error>,
    },
    /// An option with a value it cannot take.
    #[error("reward `{reward}`: `{field}` = {value} is invalid: {reason}")]
    Invalid {
        /// The reward's name.
        reward: String,
        /// The option.
        field: &'static str,
        /// The value given.
        value: String,
        /// What it should be.
        reason: &'static str,
    },
    /// Two rewards with the same name (metrics and messages would be ambiguous).
    #[error("two rewards are named `{name}`: give one of them another `name`")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A config with an empty list of rewards.
    #[error("no rewards are configured: add at least one to `rewards`")]
    NoRewards,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_feedback_is_none() {
        assert_eq!(RewardOutput::with_feedback(1.0, " \n\t").feedback, None);
        assert_eq!(RewardOutput::incorrect("").feedback, None);
        assert_eq!(
            RewardOutput::incorrect("bad").feedback.as_deref(),
            Some("bad")
        );
        let raw = RewardOutput {
            score: 0.0,
            feedback: Some(" ".into()),
        };
        assert_eq!(raw.normalized().feedback, None);
    }

    #[test]
    fn field_lookup_names_the_missing_field() {
        let prompt = Prompt::from("q");
        let row = Map::new();
        let input = RewardInput::new(&prompt, "c", &[], &row);
        assert_eq!(
            input.field("answer").unwrap_err().to_string(),
            "the dataset row has no field `answer`"
        );
    }
}
