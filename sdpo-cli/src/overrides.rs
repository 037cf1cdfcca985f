//! `--set key=value` overrides and config layering on a RON syntax tree.
//!
//! `ron::Value` forgets enum variant names (`HfDir("m")` and `("m")` read the same), so
//! overrides work on a small lossless syntax tree instead: [`Node`] keeps every name and
//! every value's text. A config is layered as tree operations and only then deserialized:
//!
//! 1. the typed defaults are serialized and parsed into a tree,
//! 2. the user's file is [merged](Node::merge) over it (struct fields recursively, anything
//!    else replaced), so a file that sets `train: (steps: 20)` keeps every other default,
//! 3. each `--set a.b.c=VALUE` [sets](Node::set_path) one field, VALUE parsed as RON; a path
//!    segment that names no field of the struct it walks into is an error naming the path
//!    and the fields that exist.
//!
//! [`Node`]'s `Display` prints RON that `ron` reads back into the typed config.

use std::fmt;

/// A RON value as written, names and all.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A number, string, char, bool or bare identifier (`None`, `Builtin`), as written.
    Atom(String),
    /// `(a: 1, b: 2)` or `Name(a: 1)`: fields by name.
    Fields {
        /// The struct or variant name, when written.
        name: Option<String>,
        /// The fields in order.
        fields: Vec<(String, Node)>,
    },
    /// `(1, 2)`, `()`, `Some(x)`, `HfDir("m")`: positional items.
    Tuple {
        /// The tuple struct or variant name, when written.
        name: Option<String>,
        /// The items in order.
        items: Vec<Node>,
    },
    /// `[a, b]`.
    List(Vec<Node>),
    /// `{k: v}`.
    Map(Vec<(Node, Node)>),
}

/// Why RON text could not be read into a [`Node`] or a path could not be set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreeError {
    /// The text is not RON.
    #[error("column {column}: {message}")]
    Syntax {
        /// 1-based character column in the text.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// A path segment names no field of the struct at that point.
    #[error("unknown field `{path}`: {known}")]
    UnknownField {
        /// The path up to and including the unknown segment.
        path: String,
        /// The fields that exist there.
        known: String,
    },
    /// A path walks into something that has no fields.
    #[error("`{path}` is {found}, which has no field `{segment}`{hint}")]
    NotAStruct {
        /// The path up to the value walked into.
        path: String,
        /// The segment that could not be followed.
        segment: String,
        /// What the value is.
        found: String,
        /// How to set it instead.
        hint: String,
    },
    /// An empty path or an empty segment.
    #[error("`{0}` is not a field path (expected names joined by dots, e.g. `train.steps`)")]
    BadPath(String),
}

impl Node {
    /// Parses RON text (one value, comments allowed).
    ///
    /// # Errors
    /// [`TreeError::Syntax`] with the column of the first problem.
    pub fn parse(text: &str) -> Result<Self, TreeError> {
        let mut p = Parser {
            chars: text.chars().collect(),
            pos: 0,
            depth: 0,
        };
        p.skip_ws()?;
        if p.peek() == Some('#') {
            return Err(p.error("RON extension attributes (`#![...]`) are not supported here"));
        }
        let node = p.value()?;
        p.skip_ws()?;
        if p.pos < p.chars.len() {
            return Err(p.error("unexpected text after the value"));
        }
        Ok(node)
    }

    /// Overlays `other` on `self`: where both are unnamed field lists (plain structs), fields
    /// are merged recursively (fields only in `other` are added); anywhere else `other`
    /// replaces `self`.
    pub fn merge(&mut self, other: Node) {
        match (self, other) {
            (
                Node::Fields {
                    name: None,
                    fields: mine,
                },
                Node::Fields {
                    name: None,
                    fields: theirs,
                },
            ) => {
                for (key, value) in theirs {
                    match mine.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, slot)) => slot.merge(value),
                        None => mine.push((key, value)),
                    }
                }
            }
            (me, other) => *me = other,
        }
    }

    /// Replaces the value at the dotted `path` (`train.sdpo.alpha`) with `value`. Segments walk
    /// struct fields, `Some(..)` wrappers and list indices (`rewards.0.weight`).
    ///
    /// # Errors
    /// [`TreeError`] naming the path when a segment names nothing that exists.
    pub fn set_path(&mut self, path: &str, value: Node) -> Result<(), TreeError> {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(TreeError::BadPath(path.to_string()));
        }
        let segments: Vec<&str> = path.split('.').collect();
        let mut node = self;
        for (i, seg) in segments.iter().enumerate() {
            let here = segments[..i].join(".");
            let full = segments[..=i].join(".");
            node = node.unwrap_some();
            node = match node {
                Node::Fields { fields, .. } => {
                    let known: Vec<String> = fields.iter().map(|(k, _)| format!("`{k}`")).collect();
                    match fields.iter_mut().find(|(k, _)| k == seg) {
                        Some((_, v)) => v,
                        None => {
                            return Err(TreeError::UnknownField {
                                path: full,
                                known: if here.is_empty() {
                                    format!("the config has {}", known.join(", "))
                                } else {
                                    format!("`{here}` has {}", known.join(", "))
                                },
                            })
                        }
                    }
                }
                Node::List(items) => {
                    let len = items.len();
                    match seg.parse::<usize>().ok().and_then(|n| items.get_mut(n)) {
                        Some(v) => v,
                        None => {
                            return Err(TreeError::NotAStruct {
                                path: here,
                                segment: seg.to_string(),
                                found: format!("a list of {len} items"),
                                hint: format!(" (use an index below {len}, or set the whole list)"),
                            })
                        }
                    }
                }
                other => {
                    return Err(TreeError::NotAStruct {
                        path: here.clone(),
                        segment: seg.to_string(),
                        found: format!("`{other}`"),
                        hint: format!(" (set `{here}` as a whole, e.g. `{here}=Some((...))`)"),
                    })
                }
            };
        }
        *node = value;
        Ok(())
    }

    /// The value inside `Some(..)` (repeatedly), or `self`.
    fn unwrap_some(&mut self) -> &mut Node {
        let is_some = matches!(
            self,
            Node::Tuple { name: Some(n), items } if n == "Some" && items.len() == 1
        );
        if !is_some {
            return self;
        }
        match self {
            Node::Tuple { items, .. } => items[0].unwrap_some(),
            other => other,
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T>(
            f: &mut fmt::Formatter<'_>,
            items: &[T],
            each: impl Fn(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
        ) -> fmt::Result {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                each(f, item)?;
            }
            Ok(())
        }
        match self {
            Node::Atom(text) => f.write_str(text),
            Node::Fields { name, fields } => {
                write!(f, "{}(", name.as_deref().unwrap_or(""))?;
                list(f, fields, |f, (k, v)| write!(f, "{k}: {v}"))?;
                f.write_str(")")
            }
            Node::Tuple { name, items } => {
                write!(f, "{}(", name.as_deref().unwrap_or(""))?;
                list(f, items, |f, v| write!(f, "{v}"))?;
                f.write_str(")")
            }
            Node::List(items) => {
                f.write_str("[")?;
                list(f, items, |f, v| write!(f, "{v}"))?;
                f.write_str("]")
            }
            Node::Map(entries) => {
                f.write_str("{")?;
                list(f, entries, |f, (k, v)| write!(f, "{k}: {v}"))?;
                f.write_str("}")
            }
        }
    }
}

/// Splits `key=value` at the first `=`.
///
/// # Errors
/// [`TreeError::BadPath`] when there is no `=` or the key is empty.
pub fn split_assignment(arg: &str) -> Result<(&str, &str), TreeError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v.trim())),
        _ => Err(TreeError::BadPath(arg.to_string())),
    }
}

/// Deepest nesting of lists, maps, structs and tuples a value may have (a config needs a
/// handful; the parser recurses, so unbounded nesting would overflow the stack).
pub const MAX_DEPTH: usize = 64;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    /// Values being read, outermost first.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn error(&self, message: impl Into<String>) -> TreeError {
        TreeError::Syntax {
            column: self.pos + 1,
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) -> Result<(), TreeError> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if c.is_whitespace() => self.pos += 1,
                (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos;
                    self.pos += 2;
                    let mut depth = 1;
                    while depth > 0 {
                        match (self.peek(), self.peek_at(1)) {
                            (Some('*'), Some('/')) => {
                                depth -= 1;
                                self.pos += 2;
                            }
                            (Some('/'), Some('*')) => {
                                depth += 1;
                                self.pos += 2;
                            }
                            (Some(_), _) => self.pos += 1,
                            (None, _) => {
                                self.pos = start;
                                return Err(self.error("unterminated block comment"));
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn expect(&mut self, c: char) -> Result<(), TreeError> {
        self.skip_ws()?;
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!(
                "expected `{c}`, found {}",
                self.peek()
                    .map(|c| format!("`{c}`"))
                    .unwrap_or_else(|| "the end".into())
            )))
        }
    }

    /// An identifier; a raw one (`r#sort-digits`) may hold `-`, `.` and `+`, as in `ron`.
    /// A bare `sort-digits` (a syntax error in RON, which has no arithmetic) is read as the
    /// raw identifier, so `--set task=sort-digits` works.
    fn ident(&mut self) -> Option<String> {
        let start = self.pos;
        let raw = self.peek() == Some('r')
            && self.peek_at(1) == Some('#')
            && self.peek_at(2).is_some_and(is_raw_ident_char);
        if raw {
            self.pos += 2;
            while self.peek().is_some_and(is_raw_ident_char) {
                self.pos += 1;
            }
            return Some(self.chars[start..self.pos].iter().collect());
        }
        if !self.peek().is_some_and(is_ident_start) {
            return None;
        }
        while self.peek().is_some_and(is_ident_char) {
            self.pos += 1;
        }
        let mut dashed = false;
        while self.peek() == Some('-') && self.peek_at(1).is_some_and(is_ident_char) {
            dashed = true;
            self.pos += 1;
            while self.peek().is_some_and(is_ident_char) {
                self.pos += 1;
            }
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        Some(if dashed { format!("r#{name}") } else { name })
    }

    fn value(&mut self) -> Result<Node, TreeError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let node = self.value_here();
        self.depth -= 1;
        node
    }

    fn value_here(&mut self) -> Result<Node, TreeError> {
        self.skip_ws()?;
        match self.peek() {
            None => Err(self.error("expected a value, found the end")),
            Some('"') => self.quoted('"').map(Node::Atom),
            Some('\'') => self.quoted('\'').map(Node::Atom),
            Some('r')
                if matches!(self.peek_at(1), Some('"') | Some('#')) && self.raw_string_ahead() =>
            {
                self.raw_string()
            }
            Some('b') if self.peek_at(1) == Some('"') => {
                self.pos += 1;
                Ok(Node::Atom(format!("b{}", self.quoted('"')?)))
            }
            Some('[') => {
                self.pos += 1;
                let items = self.seq(']', Self::value)?;
                Ok(Node::List(items))
            }
            Some('{') => {
                self.pos += 1;
                let entries = self.seq('}', |p| {
                    let k = p.value()?;
                    p.expect(':')?;
                    let v = p.value()?;
                    Ok((k, v))
                })?;
                Ok(Node::Map(entries))
            }
            Some('(') => self.parens(None),
            Some(c) if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number(),
            Some(c) if is_ident_start(c) => {
                let Some(name) = self.ident() else {
                    return Err(self.error("expected an identifier"));
                };
                self.skip_ws()?;
                if self.peek() == Some('(') {
                    self.parens(Some(name))
                } else {
                    Ok(Node::Atom(name))
                }
            }
            Some(c) => Err(self.error(format!("unexpected `{c}`"))),
        }
    }

    /// After a name (or none): `(field: v, ..)` or `(v, ..)`.
    fn parens(&mut self, name: Option<String>) -> Result<Node, TreeError> {
        self.expect('(')?;
        self.skip_ws()?;
        let save = self.pos;
        let is_fields = match self.ident() {
            Some(_) => {
                self.skip_ws()?;
                self.peek() == Some(':') && self.peek_at(1) != Some(':')
            }
            None => false,
        };
        self.pos = save;
        if is_fields {
            let fields = self.seq(')', |p| {
                p.skip_ws()?;
                let key = p.ident().ok_or_else(|| p.error("expected a field name"))?;
                p.expect(':')?;
                Ok((key, p.value()?))
            })?;
            Ok(Node::Fields { name, fields })
        } else {
            let items = self.seq(')', Self::value)?;
            Ok(Node::Tuple { name, items })
        }
    }

    /// Comma-separated items up to `close` (trailing comma allowed); the opener is consumed.
    fn seq<T>(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<T, TreeError>,
    ) -> Result<Vec<T>, TreeError> {
        let mut out = Vec::new();
        loop {
            self.skip_ws()?;
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(out);
            }
            out.push(item(self)?);
            self.skip_ws()?;
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.error(format!("expected `,` or `{close}`"))),
            }
        }
    }

    fn quoted(&mut self, quote: char) -> Result<String, TreeError> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => {
                    self.pos = start;
                    return Err(self.error("unterminated string or char"));
                }
                Some('\\') => self.pos += 2,
                Some(c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some(_) => self.pos += 1,
            }
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn raw_string_ahead(&self) -> bool {
        let mut i = 1;
        while self.peek_at(i) == Some('#') {
            i += 1;
        }
        self.peek_at(i) == Some('"')
    }

    fn raw_string(&mut self) -> Result<Node, TreeError> {
        let start = self.pos;
        self.pos += 1;
        let mut hashes = 0;
        while self.peek() == Some('#') {
            hashes += 1;
            self.pos += 1;
        }
        self.pos += 1; // opening quote
        loop {
            match self.peek() {
                None => {
                    self.pos = start;
                    return Err(self.error("unterminated raw string"));
                }
                Some('"') if (1..=hashes).all(|k| self.peek_at(k) == Some('#')) => {
                    self.pos += 1 + hashes;
                    break;
                }
                Some(_) => self.pos += 1,
            }
        }
        Ok(Node::Atom(self.chars[start..self.pos].iter().collect()))
    }

    fn number(&mut self) -> Result<Node, TreeError> {
        let start = self.pos;
        if matches!(self.peek(), Some('-') | Some('+')) {
            self.pos += 1;
        }
        // `-inf`, `+NaN`.
        if let Some(word) = self.ident() {
            return Ok(Node::Atom(format!(
                "{}{word}",
                self.chars[start..start + 1].iter().collect::<String>()
            )));
        }
        while let Some(c) = self.peek() {
            let exponent_sign = matches!(c, '-' | '+')
                && matches!(self.chars.get(self.pos - 1), Some('e') | Some('E'));
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exponent_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start || (self.pos == start + 1 && !self.chars[start].is_ascii_digit()) {
            return Err(self.error("expected a number"));
        }
        Ok(Node::Atom(self.chars[start..self.pos].iter().collect()))
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_raw_ident_char(c: char) -> bool {
    is_ident_char(c) || matches!(c, '-' | '.' | '+')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Node {
        Node::parse(text).unwrap()
    }

    #[test]
    fn parses_and_prints_every_shape() {
        let text = r##"(model: HfDir("m/x"), lora: Some((rank: 4, alpha: 8.0)), tags: ["a", 'b'],
            // a comment
            map: {"k": -1e-5}, unit: (), t: (1, r#"raw "q""#), n: None, /* block */ x: -inf)"##;
        let node = n(text);
        assert_eq!(
            node.to_string(),
            r##"(model: HfDir("m/x"), lora: Some((rank: 4, alpha: 8.0)), tags: ["a", 'b'], map: {"k": -1e-5}, unit: (), t: (1, r#"raw "q""#), n: None, x: -inf)"##
        );
        assert_eq!(n(&node.to_string()), node);
    }

    #[test]
    fn dashed_names_are_raw_identifiers() {
        assert_eq!(n("sort-digits"), Node::Atom("r#sort-digits".into()));
        assert_eq!(n("r#sort-digits"), Node::Atom("r#sort-digits".into()));
        assert_eq!(
            n("(task: Some(r#sort-digits))").to_string(),
            "(task: Some(r#sort-digits))"
        );
    }

    #[test]
    fn syntax_errors_give_a_column() {
        let err = Node::parse("(a: 1,, b: 2)").unwrap_err();
        assert!(matches!(err, TreeError::Syntax { column: 7, .. }), "{err}");
        assert!(Node::parse("(a: \"open)").is_err());
        assert!(Node::parse("(a: 1) trailing").is_err());
    }

    #[test]
    fn merge_overlays_structs_and_replaces_the_rest() {
        let mut base = n("(train: (steps: 60, lr: 0.001), lora: None, rewards: [1, 2])");
        base.merge(n(
            "(train: (steps: 5), lora: Some((rank: 4)), rewards: [3], extra: 1)",
        ));
        assert_eq!(
            base.to_string(),
            "(train: (steps: 5, lr: 0.001), lora: Some((rank: 4)), rewards: [3], extra: 1)"
        );
    }

    #[test]
    fn set_path_walks_fields_some_and_indices() {
        let mut cfg =
            n("(train: (sdpo: (alpha: 0.5), lora: Some((rank: 8))), rewards: [(weight: 1.0)])");
        cfg.set_path("train.sdpo.alpha", n("1.0")).unwrap();
        cfg.set_path("train.lora.rank", n("4")).unwrap();
        cfg.set_path("rewards.0.weight", n("0.5")).unwrap();
        assert_eq!(
            cfg.to_string(),
            "(train: (sdpo: (alpha: 1.0), lora: Some((rank: 4))), rewards: [(weight: 0.5)])"
        );
    }

    #[test]
    fn unknown_paths_are_named_with_the_fields_that_exist() {
        let mut cfg = n("(train: (steps: 1, lora: None))");
        let err = cfg.set_path("train.stesp", n("2")).unwrap_err().to_string();
        assert!(
            err.contains("`train.stesp`") && err.contains("`steps`"),
            "{err}"
        );
        let err = cfg.set_path("trian.steps", n("2")).unwrap_err().to_string();
        assert!(err.contains("`trian`") && err.contains("`train`"), "{err}");
        let err = cfg
            .set_path("train.lora.rank", n("2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`train.lora` is `None`"), "{err}");
        assert!(matches!(
            cfg.set_path("a..b", n("1")),
            Err(TreeError::BadPath(_))
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
        let err = Node::parse(&deep).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Node::parse(&ok).is_ok());
    }

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(split_assignment("a.b=x=y").unwrap(), ("a.b", "x=y"));
        assert!(split_assignment("novalue").is_err());
        assert!(split_assignment("=1").is_err());
    }
}
