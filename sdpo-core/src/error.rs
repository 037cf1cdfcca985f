//! [`ConfigError`]: why a configuration or template cannot be used (shared by `config` and
//! `template`, so neither imports the other for it).

/// A configuration that cannot be used, with the field, the value and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field holds a value outside its domain or contradicting another field.
    #[error("invalid `{field}` = {value:?}: {reason}")]
    Invalid {
        /// The field name, as written in a RON file.
        field: &'static str,
        /// The offending value, printed.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A RON document could not be parsed (syntax error, unknown or misspelled
    /// field, wrong type).
    #[error("{source_name}:{line}:{column}: {message}")]
    Parse {
        /// The file path, or `<string>` for in-memory text.
        source_name: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected and found.
        message: String,
    },
    /// An error of a config section (`train`, `train.sdpo`): [`ConfigError::within`] adds the
    /// section to the field's path.
    #[error("{}", nested_message(section, inner))]
    Nested {
        /// The section's path, without a trailing dot.
        section: &'static str,
        /// The section's own error.
        inner: Box<ConfigError>,
    },
    /// A config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The same error with `section.` in front of its field's path (`sampling.top_p` inside
    /// `train` becomes `train.sampling.top_p`); parse and I/O errors are returned unchanged.
    pub fn within(self, section: &'static str) -> Self {
        match self {
            ConfigError::Invalid { .. } | ConfigError::Nested { .. } => ConfigError::Nested {
                section,
                inner: Box::new(self),
            },
            other => other,
        }
    }

    /// The full dotted path of the invalid field, if this is a validation error.
    pub fn field_path(&self) -> Option<String> {
        match self {
            ConfigError::Invalid { field, .. } => Some((*field).to_string()),
            ConfigError::Nested { section, inner } => {
                inner.field_path().map(|f| format!("{section}.{f}"))
            }
            _ => None,
        }
    }
}

fn nested_message(section: &str, inner: &ConfigError) -> String {
    let mut innermost = inner;
    while let ConfigError::Nested { inner, .. } = innermost {
        innermost = inner;
    }
    match (innermost, inner.field_path()) {
        (ConfigError::Invalid { value, reason, .. }, Some(field)) => {
            format!("invalid `{section}.{field}` = {value:?}: {reason}")
        }
        _ => inner.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_prefixes_the_field_path() {
        let e = ConfigError::Invalid {
            field: "sampling.top_p",
            value: "2".into(),
            reason: "must be in (0, 1]".into(),
        }
        .within("train");
        assert_eq!(e.field_path().as_deref(), Some("train.sampling.top_p"));
        assert_eq!(
            e.to_string(),
            "invalid `train.sampling.top_p` = \"2\": must be in (0, 1]"
        );
        let twice = ConfigError::Invalid {
            field: "alpha",
            value: "2".into(),
            reason: "r".into(),
        }
        .within("sdpo")
        .within("train");
        assert_eq!(twice.field_path().as_deref(), Some("train.sdpo.alpha"));
        assert!(twice.to_string().starts_with("invalid `train.sdpo.alpha`"));
    }
}
