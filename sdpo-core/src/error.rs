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
