//! Built-in verifiable tasks, small enough for the built-in model:
//!
//! - [`Task::Addition`] — `"a+b="` with a binary reward: the model can only learn from
//!   its peers' successes (SDPO's demonstration path).
//! - [`Task::SortDigits`] — `"sort 3142"` → `"1234"`, with rich feedback that says *what*
//!   is wrong (a digit missing or extra, the order broken at a position, a wrong length)
//!   without giving the answer away (SDPO's feedback path).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use serde_json::{Map, Value};

use crate::dataset::Row;
use crate::reward::{Reward, RewardError, RewardInput, RewardOutput};

impl Reward for Task {
    fn name(&self) -> &str {
        Task::name(*self)
    }

    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
        input.field("answer")?;
        let (score, feedback) = self.check_fields(input.row, input.completion);
        Ok(match feedback {
            Some(f) => RewardOutput::with_feedback(score, f),
            None => RewardOutput::new(score),
        })
    }
}

/// A built-in task. The default is `sort-digits`: the built-in model learns it well enough
/// to generalize to held-out problems, and its feedback exercises SDPO's feedback path.
///
/// Written as a string in configs (`task: Some("sort-digits")`), like `SdpoConfig`'s enums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Task {
    /// Two-number addition, binary reward.
    Addition,
    /// Sort a string of digits, feedback on failure.
    #[default]
    SortDigits,
}

impl Task {
    /// Every task, in a fixed order.
    pub const ALL: [Task; 2] = [Task::SortDigits, Task::Addition];

    /// The task's name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Task::Addition => "addition",
            Task::SortDigits => "sort-digits",
        }
    }

    /// The task named `name` (as [`Self::name`] writes it).
    ///
    /// # Errors
    /// A message listing the task names.
    pub fn from_name(name: &str) -> Result<Task, String> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Task::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "unknown task `{name}`, expected one of: {}",
                    names.join(", ")
                )
            })
    }

    /// Every problem of the task (deterministic order), as dataset rows with an `answer`
    /// field (and `digits` for sorting).
    pub fn problems(self) -> Vec<Row> {
        match self {
            Task::Addition => {
                let mut rows = Vec::new();
                for a in 0..20u32 {
                    for b in 0..20u32 {
                        rows.push(
                            Row::new(format!("{a}+{b}=")).with_field("answer", (a + b).to_string()),
                        );
                    }
                }
                rows
            }
            Task::SortDigits => {
                let mut rng = ChaCha8Rng::seed_from_u64(7);
                let mut rows = Vec::new();
                let mut seen = std::collections::BTreeSet::new();
                while rows.len() < 400 {
                    let len = rng.random_range(3..=5);
                    let digits: String = (0..len)
                        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                        .collect();
                    if !seen.insert(digits.clone()) {
                        continue;
                    }
                    let mut sorted: Vec<char> = digits.chars().collect();
                    sorted.sort_unstable();
                    let answer: String = sorted.into_iter().collect();
                    rows.push(
                        Row::new(format!("sort {digits}"))
                            .with_field("answer", answer)
                            .with_field("digits", digits),
                    );
                }
                rows
            }
        }
    }

    /// `(train, held_out)` rows: a seeded shuffle of [`Self::problems`], `held_out` rows
    /// kept aside.
    pub fn split(self, held_out: usize, seed: u64) -> (Vec<Row>, Vec<Row>) {
        let mut rows = self.problems();
        rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let held_out = held_out.min(rows.len().saturating_sub(1));
        let train = rows.split_off(held_out);
        (train, rows)
    }

    /// Score (1 or 0) and feedback for a completion of `row`.
    pub fn check(self, row: &Row, completion: &str) -> (f64, Option<String>) {
        self.check_fields(&row.fields, completion)
    }

    /// [`Self::check`] given the row's fields (`answer`, and `digits` for sorting).
    pub fn check_fields(
        self,
        fields: &Map<String, Value>,
        completion: &str,
    ) -> (f64, Option<String>) {
        let answer = text_field(fields, "answer");
        let given = completion.trim();
        if given == answer {
            return (1.0, None);
        }
        match self {
            Task::Addition => (0.0, None),
            Task::SortDigits => {
                let digits = text_field(fields, "digits");
                (0.0, Some(sort_feedback(digits, given)))
            }
        }
    }
}

/// The string field `name` of a task row (`answer`, `digits`); empty when missing or not a
/// string.
pub(crate) fn text_field<'a>(fields: &'a Map<String, Value>, name: &str) -> &'a str {
    fields
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

impl Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Task::from_name(&name).map_err(serde::de::Error::custom)
    }
}

/// Explains why `given` is not `digits` sorted, without writing the sorted string. Short,
/// because the built-in model reads it one character at a time.
fn sort_feedback(digits: &str, given: &str) -> String {
    if given.is_empty() {
        return "Empty answer: write the input's digits in increasing order.".to_string();
    }
    if let Some(c) = given.chars().find(|c| !c.is_ascii_digit()) {
        return format!("The answer contains {c:?}, which is not a digit.");
    }
    if given.len() != digits.len() {
        return format!(
            "The answer has {} digits, the input {}: use each input digit once.",
            given.len(),
            digits.len()
        );
    }
    let count = |s: &str, d: char| s.chars().filter(|&c| c == d).count();
    for d in '0'..='9' {
        let (want, got) = (count(digits, d), count(given, d));
        if got != want {
            return format!("The input has {want} of the digit {d}, the answer {got}.");
        }
    }
    let chars: Vec<char> = given.chars().collect();
    for i in 1..chars.len() {
        if chars[i] < chars[i - 1] {
            return format!(
                "Out of order: {} comes right after {} (positions {} and {}).",
                chars[i],
                chars[i - 1],
                i,
                i + 1
            );
        }
    }
    "The answer is not the input's digits in increasing order.".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_deterministic_and_split_is_disjoint() {
        for task in Task::ALL {
            assert_eq!(task.problems(), task.problems());
            let (train, held) = task.split(50, 1);
            assert_eq!(held.len(), 50);
            assert_eq!(train.len() + held.len(), task.problems().len());
            for h in &held {
                assert!(!train.contains(h));
            }
        }
    }

    #[test]
    fn task_names_are_strings() {
        for task in Task::ALL {
            let text = ron::to_string(&task).unwrap();
            assert_eq!(text, format!("{:?}", task.name()));
            assert_eq!(ron::from_str::<Task>(&text).unwrap(), task);
            assert_eq!(
                serde_json::from_str::<Task>(&serde_json::to_string(&task).unwrap()).unwrap(),
                task
            );
        }
        let err = ron::from_str::<Task>("\"sorting\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sort-digits, addition"), "{err}");
    }

    #[test]
    fn checks_and_feedback_never_reveal_the_answer() {
        let rows = Task::Addition.problems();
        let row = &rows[21]; // 1+1=
        assert_eq!(Task::Addition.check(row, " 2 "), (1.0, None));
        assert_eq!(Task::Addition.check(row, "3"), (0.0, None));
        for row in Task::SortDigits.problems().iter().take(100) {
            let answer = row.fields["answer"].as_str().unwrap();
            assert_eq!(Task::SortDigits.check(row, answer).0, 1.0);
            let digits = row.fields["digits"].as_str().unwrap();
            for wrong in [
                digits.to_string(),
                String::new(),
                format!("{answer}9"),
                "x".repeat(3),
            ] {
                if wrong == answer {
                    continue;
                }
                let (score, fb) = Task::SortDigits.check(row, &wrong);
                assert_eq!(score, 0.0);
                let fb = fb.unwrap();
                assert!(
                    !fb.contains(answer) || answer.len() == 1,
                    "{fb} reveals {answer}"
                );
            }
        }
        assert!(sort_feedback("312", "132").contains("positions 2 and 3"));
        assert!(sort_feedback("312", "12").contains("2 digits"));
        assert_eq!(
            sort_feedback("312", "113"),
            "The input has 1 of the digit 1, the answer 2."
        );
    }
}
