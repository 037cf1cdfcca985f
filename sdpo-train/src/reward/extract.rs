//! Finding the final answer in a completion: after a marker, inside the last
//! `\boxed{}`, the last line; and reading numbers written the way models and
//! people write them (`1,000`, `$5`, `5.0`, `-3`, `1e3`, `3/4`, `\frac{1}{2}`).

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Which part of a completion holds the final answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Extract {
    /// The whole completion.
    #[default]
    Whole,
    /// The content of the last `\boxed{…}` if there is one, else the text
    /// after the last `####`, else the whole completion.
    Auto,
    /// The content of the last `\boxed{…}` (nested braces allowed).
    Boxed,
    /// The rest of the line after the last occurrence of the marker
    /// (e.g. `"####"`, `"Answer:"`); the answer may start on the next line.
    AfterMarker(String),
    /// The last non-blank line.
    LastLine,
}

impl Extract {
    /// The answer part of `text`, or feedback saying why there is none
    /// (e.g. "no \boxed{} answer found").
    ///
    /// # Errors
    /// The feedback text when the completion has no answer of this kind.
    pub fn apply<'a>(&self, text: &'a str) -> Result<&'a str, String> {
        match self {
            Extract::Whole => Ok(text),
            Extract::Auto => Ok(last_boxed(text)
                .or_else(|| after_marker(text, "####"))
                .unwrap_or(text)),
            Extract::Boxed => last_boxed(text).ok_or_else(|| "no \\boxed{} answer found".into()),
            Extract::AfterMarker(marker) => after_marker(text, marker)
                .ok_or_else(|| format!("no final answer found after `{marker}`")),
            Extract::LastLine => text
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .ok_or_else(|| "the completion is empty".into()),
        }
    }
}

/// The content of the last `\boxed{…}` with balanced braces.
fn last_boxed(text: &str) -> Option<&str> {
    const OPEN: &str = "\\boxed{";
    let mut end = text.len();
    while let Some(start) = text[..end].rfind(OPEN) {
        let body = start + OPEN.len();
        let mut depth = 1usize;
        for (i, c) in text[body..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(text[body..body + i].trim());
                    }
                }
                _ => {}
            }
        }
        end = start;
    }
    None
}

/// The first non-blank line after the last `marker`, trimmed.
fn after_marker<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    if marker.is_empty() {
        return None;
    }
    let start = text.rfind(marker)? + marker.len();
    let rest = text[start..].trim_start();
    let line = rest.lines().next()?.trim();
    (!line.is_empty()).then_some(line)
}

/// A number found in text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberMatch<'a> {
    /// Its value.
    pub value: f64,
    /// The text it was read from, as written (`$1,000`, `\frac{1}{2}`).
    pub text: &'a str,
}

/// A number: `\frac{a}{b}`, or an optionally signed, optionally `$`-prefixed
/// decimal with optional thousands separators, exponent and `/denominator`.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        \\[dt]?frac\{\s*(?P<fnum>-?[0-9]+(?:\.[0-9]+)?)\s*\}\{\s*(?P<fden>-?[0-9]+(?:\.[0-9]+)?)\s*\}
        |
        (?P<sign>[-−])?\$?
        (?P<mant>(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)
        (?:[eE](?P<exp>[-+]?[0-9]+))?
        (?:\s?/\s?(?P<den>[0-9]+(?:\.[0-9]+)?))?
        ",
    )
    .expect("the number pattern is valid")
});

/// Every number in `text`, in order. A `-` right after a letter, digit or
/// closing bracket is read as a minus/hyphen, not a sign (`x-3` gives 3);
/// fractions with a zero denominator are skipped.
pub fn find_numbers(text: &str) -> Vec<NumberMatch<'_>> {
    NUMBER
        .captures_iter(text)
        .filter_map(|c| {
            let whole = c.get(0)?;
            let value = if let (Some(n), Some(d)) = (c.name("fnum"), c.name("fden")) {
                n.as_str().parse::<f64>().ok()? / d.as_str().parse::<f64>().ok()?
            } else {
                let mant = c.name("mant")?.as_str().replace(',', "");
                let exp = c.name("exp").map_or("0", |e| e.as_str());
                let mut value: f64 = format!("{mant}e{exp}").parse().ok()?;
                if let Some(d) = c.name("den") {
                    value /= d.as_str().parse::<f64>().ok()?;
                }
                let sign = c.name("sign").filter(|s| {
                    !text[..s.start()]
                        .chars()
                        .next_back()
                        .is_some_and(|p| p.is_alphanumeric() || matches!(p, ')' | ']' | '}'))
                });
                if sign.is_some() {
                    value = -value;
                }
                let start = match (c.name("sign"), sign) {
                    (Some(s), None) => s.end(),
                    _ => whole.start(),
                };
                return value.is_finite().then(|| NumberMatch {
                    value,
                    text: &text[start..whole.end()],
                });
            };
            value.is_finite().then(|| NumberMatch {
                value,
                text: whole.as_str(),
            })
        })
        .collect()
}

/// The last number in `text`.
pub fn last_number(text: &str) -> Option<NumberMatch<'_>> {
    find_numbers(text).pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(text: &str) -> Option<f64> {
        last_number(text).map(|n| n.value)
    }

    #[test]
    fn numbers_in_many_formats() {
        assert_eq!(last("The answer is 1,000."), Some(1000.0));
        assert_eq!(last("It costs $5"), Some(5.0));
        assert_eq!(last("5.0"), Some(5.0));
        assert_eq!(last("x = -3"), Some(-3.0));
        assert_eq!(last("1e3 apples"), Some(1000.0));
        assert_eq!(last("2.5E-1"), Some(0.25));
        assert_eq!(last("half is 1/2"), Some(0.5));
        assert_eq!(last("\\frac{3}{4}"), Some(0.75));
        assert_eq!(last("\\dfrac{-1}{4}"), Some(-0.25));
        assert_eq!(last("about .5"), Some(0.5));
        assert_eq!(last("-$12,345.50"), Some(-12345.5));
        assert_eq!(last("50%"), Some(50.0));
        assert_eq!(last("no digits"), None);
        assert_eq!(last("1/0"), None);
    }

    #[test]
    fn hyphens_are_not_signs() {
        assert_eq!(last("x-3"), Some(3.0));
        assert_eq!(last("10-3"), Some(3.0));
        assert_eq!(last_number("a-7").unwrap().text, "7");
        assert_eq!(last("(2)-5"), Some(5.0));
        assert_eq!(last("= -5"), Some(-5.0));
    }

    #[test]
    fn lists_are_not_thousands() {
        let all: Vec<f64> = find_numbers("1,2,3 and 1,234")
            .iter()
            .map(|n| n.value)
            .collect();
        assert_eq!(all, vec![1.0, 2.0, 3.0, 1234.0]);
    }

    #[test]
    fn extraction_modes() {
        let text = "Work: 2+2.\n#### 4\n\nso \\boxed{\\frac{1}{2}} done\n";
        assert_eq!(Extract::Whole.apply(text).unwrap(), text);
        assert_eq!(Extract::Boxed.apply(text).unwrap(), "\\frac{1}{2}");
        assert_eq!(Extract::Auto.apply(text).unwrap(), "\\frac{1}{2}");
        assert_eq!(
            Extract::AfterMarker("####".into()).apply(text).unwrap(),
            "4"
        );
        assert_eq!(
            Extract::LastLine.apply(text).unwrap(),
            "so \\boxed{\\frac{1}{2}} done"
        );
        assert_eq!(Extract::Auto.apply("a\n#### 7\n").unwrap(), "7");
        assert_eq!(Extract::Auto.apply("just 7").unwrap(), "just 7");
        assert_eq!(
            Extract::AfterMarker("Answer:".into())
                .apply("Answer:\n  12 \nmore")
                .unwrap(),
            "12"
        );
    }

    #[test]
    fn extraction_misses_give_feedback() {
        assert_eq!(
            Extract::Boxed.apply("42").unwrap_err(),
            "no \\boxed{} answer found"
        );
        assert_eq!(
            Extract::Boxed.apply("\\boxed{42").unwrap_err(),
            "no \\boxed{} answer found"
        );
        assert_eq!(
            Extract::AfterMarker("####".into())
                .apply("42 ####  ")
                .unwrap_err(),
            "no final answer found after `####`"
        );
        assert_eq!(
            Extract::LastLine.apply(" \n \n").unwrap_err(),
            "the completion is empty"
        );
        // An unclosed later box does not hide a closed earlier one.
        assert_eq!(
            Extract::Boxed.apply("\\boxed{1} then \\boxed{2").unwrap(),
            "1"
        );
    }
}
