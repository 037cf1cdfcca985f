//! `{placeholder}` templates filled in one pass.
//!
//! The reference fills its reprompt templates with Python's `str.format`. This
//! module reproduces that syntax for the cases the templates use: `{name}` is a
//! placeholder, `{{` and `}}` are literal braces. Values are inserted verbatim
//! in a single pass, so braces inside prompts, solutions and feedback (code
//! answers are full of them) come through literally and are never re-read as
//! placeholders.

use crate::error::ConfigError;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Placeholder(String),
}

/// A parsed template: literal text and named placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`, accepting only the placeholder names in `allowed`.
    ///
    /// `field` names the config field in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown placeholder, an empty `{}`, or an
    /// unmatched `{` / `}` (write `{{` / `}}` for a literal brace).
    pub fn parse(field: &'static str, text: &str, allowed: &[&str]) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            field,
            value: text.to_string(),
            reason,
        };
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((pos, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, n) in chars.by_ref() {
                        if n == '}' {
                            closed = true;
                            break;
                        }
                        name.push(n);
                    }
                    if !closed {
                        return Err(invalid(format!(
                            "unmatched `{{` at byte {pos} (write `{{{{` for a literal brace)"
                        )));
                    }
                    if !allowed.contains(&name.as_str()) {
                        return Err(invalid(format!(
                            "unknown placeholder `{{{name}}}`; allowed: {}",
                            list(allowed)
                        )));
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Placeholder(name));
                }
                '}' => {
                    return Err(invalid(format!(
                        "unmatched `}}` at byte {pos} (write `}}}}` for a literal brace)"
                    )));
                }
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self { pieces })
    }

    /// Whether the template contains `{name}`.
    pub fn has(&self, name: &str) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Placeholder(n) if n == name))
    }

    /// Fills the placeholders with `values` (`(name, value)` pairs) in one pass.
    ///
    /// A placeholder without a value renders as the empty string; values are
    /// inserted verbatim (their braces are not interpreted).
    pub fn render(&self, values: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Placeholder(name) => {
                    if let Some((_, v)) = values.iter().find(|(n, _)| n == name) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_and_keeps_value_braces_literal() {
        let t = Template::parse("t", "A{x}B{y}C", &["x", "y"]).unwrap();
        assert_eq!(
            t.render(&[("x", "fn f() { {y} }"), ("y", "{}")]),
            "Afn f() { {y} }B{}C"
        );
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("t", "{{x}} {x} }}{{", &["x"]).unwrap();
        assert_eq!(t.render(&[("x", "v")]), "{x} v }{");
        assert!(t.has("x"));
    }

    #[test]
    fn unknown_placeholder_names_field_and_placeholder() {
        let err =
            Template::parse("reprompt_template", "{prompt}{answer}", &["prompt"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("reprompt_template"), "{msg}");
        assert!(msg.contains("{answer}"), "{msg}");
    }

    #[test]
    fn unmatched_braces_are_errors() {
        assert!(Template::parse("t", "a { b", &["x"]).is_err());
        assert!(Template::parse("t", "a } b", &["x"]).is_err());
        assert!(Template::parse("t", "{}", &["x"]).is_err());
    }

    #[test]
    fn missing_value_renders_empty() {
        let t = Template::parse("t", "[{x}]", &["x"]).unwrap();
        assert_eq!(t.render(&[]), "[]");
    }
}
