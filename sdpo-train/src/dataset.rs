//! Datasets: prompts (text or chat messages) with any other fields, seeded shuffling.
//!
//! [`Dataset::open`] reads JSONL, parquet (verl's files), Arrow files and Hugging Face
//! `datasets` folders (`save_to_disk`, `push_to_hub`'s parquet shards), with [`Columns`]
//! saying which column is the prompt, the answer and the feedback; its defaults read our
//! JSONL rows and verl's schema as they are. The JSONL form:
//!
//! One JSON object per line; `prompt` is a string or a list of
//! `{"role", "content"}` messages ([`Prompt`]); every other field is kept in
//! [`Row::fields`] and handed to the rewards (e.g. `answer` for the
//! exact-match and numeric rewards). Blank lines are skipped.
//!
//! ```text
//! {"prompt": "What is 6 * 7?", "answer": "42"}
//! {"prompt": [{"role": "system", "content": "Answer with a number."},
//!             {"role": "user", "content": "What is 2 + 2?"}], "answer": 4}
//! ```
//! (each object on one line in the file.)
//!
//! Batches of prompt indices come from a [`PromptSampler`]: seeded, one
//! shuffle per epoch, infinite, resumable from its [`SamplerState`].

mod columnar;
mod columns;
mod prompt;
mod sampler;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use thiserror::Error;

pub use columns::{Columns, VERL_ANSWER};
pub(crate) use prompt::json_type;
pub use prompt::{Prompt, PromptError};
pub use sampler::{epoch_order, BatchPrompt, PromptBatch, PromptSampler, SampleSlot, SamplerState};

/// One dataset row: the prompt and the row's other fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The prompt.
    pub prompt: Prompt,
    /// Every field of the row except `prompt` (e.g. `answer`), for the rewards.
    pub fields: Map<String, Value>,
}

impl Row {
    /// A row with a prompt and no other fields.
    pub fn new(prompt: impl Into<Prompt>) -> Self {
        Self {
            prompt: prompt.into(),
            fields: Map::new(),
        }
    }

    /// The row with one more field (replacing a field of the same name).
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// A row from a JSON object: `prompt` is taken out and checked, the rest
    /// kept as fields.
    ///
    /// # Errors
    /// [`RowProblem`] when `prompt` is missing or invalid.
    pub fn from_json(mut object: Map<String, Value>) -> Result<Self, RowProblem> {
        let prompt = object.remove("prompt").ok_or(RowProblem::MissingPrompt)?;
        Ok(Self {
            prompt: Prompt::from_json(&prompt)?,
            fields: object,
        })
    }
}

/// Where a bad row is: a line of a file or a position in a list of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowLocation {
    /// 1-based line `line` of the file `path`.
    Line {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// 0-based position in the rows given to [`Dataset::from_rows`].
    Index(usize),
    /// 0-based row `row` of a parquet or Arrow file (as `datasets` and pandas count).
    Record {
        /// The file.
        path: PathBuf,
        /// 0-based row index within the file.
        row: usize,
    },
}

impl std::fmt::Display for RowLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowLocation::Line { path, line } => write!(f, "{}:{line}", path.display()),
            RowLocation::Index(i) => write!(f, "row {i}"),
            RowLocation::Record { path, row } => write!(f, "{} row {row}", path.display()),
        }
    }
}

/// What is wrong with one row.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RowProblem {
    /// The line is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The line is JSON but not an object.
    #[error("a row should be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// No `prompt` field.
    #[error("the row has no `prompt` field")]
    MissingPrompt,
    /// A `prompt` field that is not a valid prompt.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// [`Row::fields`] holds a `prompt` key, which would shadow the prompt
    /// when the row is handed to rewards.
    #[error("the row's other fields contain a `prompt` key")]
    PromptInFields,
    /// A column chosen by [`Columns`] is missing or holds the wrong kind of value.
    #[error("column `{column}`: {reason}")]
    Column {
        /// The column (a dotted path for nested columns).
        column: String,
        /// What is wrong.
        reason: String,
    },
}

/// Errors of loading, building, splitting and sampling datasets.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// The file could not be opened or read.
    #[error("cannot read dataset `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (invalid UTF-8 included).
        source: std::io::Error,
    },
    /// A parquet or Arrow file, or a `datasets` folder, that cannot be read.
    #[error("cannot read dataset `{}`: {reason}", path.display())]
    Format {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// One row is invalid.
    #[error("{at}: {problem}")]
    Row {
        /// File and line, or row index.
        at: RowLocation,
        /// What is wrong.
        problem: RowProblem,
    },
    /// The file or list holds no rows (blank lines do not count).
    #[error("dataset {source_name} has no rows")]
    NoRows {
        /// `` `path` `` or `(rows)` for [`Dataset::from_rows`].
        source_name: String,
    },
    /// A train/held-out split that would leave one side empty.
    #[error("cannot hold out {held_out} of {len} rows: both parts need at least one row")]
    InvalidSplit {
        /// Rows asked for.
        held_out: usize,
        /// Rows in the dataset.
        len: usize,
    },
    /// A held-out fraction outside `(0, 1)` or not finite.
    #[error("held-out fraction should be in (0, 1), found {fraction}")]
    InvalidFraction {
        /// The fraction given.
        fraction: f64,
    },
    /// A sampler that cannot be built or resumed.
    #[error("invalid sampler: {reason}")]
    InvalidSampler {
        /// What is inconsistent.
        reason: String,
    },
}

/// A non-empty list of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    rows: Vec<Row>,
}

/// A deterministic train/held-out split (see [`Dataset::split`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The rows kept for training, in their original order.
    pub train: Dataset,
    /// The held-out rows, in their original order.
    pub held_out: Dataset,
}

impl Dataset {
    /// Reads a JSONL file (see the [module docs](self) for the format).
    ///
    /// # Errors
    /// [`DatasetError::Io`] when the file cannot be read,
    /// [`DatasetError::Row`] naming the file and line of the first bad row,
    /// [`DatasetError::NoRows`] when it holds no rows.
    pub fn from_jsonl(path: impl AsRef<Path>) -> Result<Self, DatasetError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_jsonl_reader(BufReader::new(file), path)
    }

    /// Reads a dataset in any of the forms in the [module docs](self), chosen by its path: a
    /// folder is a `datasets` folder (its split `split`), `*.parquet` a parquet file,
    /// `*.arrow` an Arrow file, anything else JSONL; `columns` picks the prompt, answer and
    /// feedback.
    ///
    /// # Errors
    /// [`DatasetError::Io`] / [`DatasetError::Format`] naming the file or folder,
    /// [`DatasetError::Row`] naming the file, the row (JSONL: line) and the column,
    /// [`DatasetError::NoRows`].
    pub fn open(
        path: impl AsRef<Path>,
        columns: &Columns,
        split: &str,
    ) -> Result<Self, DatasetError> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Self::open_file(path, columns);
        }
        // A split may have empty shards; only the split as a whole must have rows.
        let mut rows = Vec::new();
        for file in columnar::split_files(path, split)? {
            rows.extend(Self::columnar_rows(&file, columns)?);
        }
        Self::non_empty(rows, path)
    }

    fn open_file(path: &Path, columns: &Columns) -> Result<Self, DatasetError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet" | "arrow") => Self::non_empty(Self::columnar_rows(path, columns)?, path),
            _ => {
                let file = File::open(path).map_err(|source| DatasetError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::jsonl(BufReader::new(file), path, columns)
            }
        }
    }

    /// The rows of a parquet or Arrow file (possibly none).
    fn columnar_rows(path: &Path, columns: &Columns) -> Result<Vec<Row>, DatasetError> {
        let records = match path.extension().and_then(|e| e.to_str()) {
            Some("arrow") => columnar::read_arrow(path)?,
            _ => columnar::read_parquet(path)?,
        };
        records
            .into_iter()
            .enumerate()
            .map(|(row, record)| {
                columns.row(record).map_err(|problem| DatasetError::Row {
                    at: RowLocation::Record {
                        path: path.to_path_buf(),
                        row,
                    },
                    problem,
                })
            })
            .collect()
    }

    /// `rows` as a dataset, or [`DatasetError::NoRows`] naming `source`.
    fn non_empty(rows: Vec<Row>, source: &Path) -> Result<Self, DatasetError> {
        if rows.is_empty() {
            return Err(DatasetError::NoRows {
                source_name: format!("`{}`", source.display()),
            });
        }
        Ok(Self { rows })
    }

    /// Reads JSONL from any reader; `path` names the source in errors.
    ///
    /// # Errors
    /// As [`Dataset::from_jsonl`].
    pub fn from_jsonl_reader(reader: impl BufRead, path: &Path) -> Result<Self, DatasetError> {
        Self::jsonl(reader, path, &Columns::default())
    }

    fn jsonl(reader: impl BufRead, path: &Path, columns: &Columns) -> Result<Self, DatasetError> {
        let mut rows = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let at = || RowLocation::Line {
                path: path.to_path_buf(),
                line: i + 1,
            };
            let line = line.map_err(|source| DatasetError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(source.kind(), format!("line {}: {source}", i + 1)),
            })?;
            // A UTF-8 byte-order mark may start the first line.
            let text = line.trim_start_matches('\u{feff}').trim();
            if text.is_empty() {
                continue;
            }
            let row = parse_row(text, columns)
                .map_err(|problem| DatasetError::Row { at: at(), problem })?;
            rows.push(row);
        }
        Self::non_empty(rows, path)
    }

    /// A dataset from rows built in code (built-in tasks); checks each prompt.
    ///
    /// # Errors
    /// [`DatasetError::Row`] with the index of the first invalid row,
    /// [`DatasetError::NoRows`] for an empty list.
    pub fn from_rows(rows: Vec<Row>) -> Result<Self, DatasetError> {
        if rows.is_empty() {
            return Err(DatasetError::NoRows {
                source_name: "(rows)".into(),
            });
        }
        for (i, row) in rows.iter().enumerate() {
            let problem = if row.fields.contains_key("prompt") {
                Some(RowProblem::PromptInFields)
            } else {
                row.prompt.validate().err().map(RowProblem::from)
            };
            if let Some(problem) = problem {
                return Err(DatasetError::Row {
                    at: RowLocation::Index(i),
                    problem,
                });
            }
        }
        Ok(Self { rows })
    }

    /// Number of rows (at least 1).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Always `false`: every constructor rejects an empty dataset.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row at `index`, if any.
    pub fn get(&self, index: usize) -> Option<&Row> {
        self.rows.get(index)
    }

    /// All rows, in file order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// A sampler of `batch_size` prompts per batch over this dataset.
    ///
    /// # Errors
    /// [`DatasetError::InvalidSampler`] when `batch_size` is 0.
    pub fn sampler(&self, batch_size: usize, seed: u64) -> Result<PromptSampler, DatasetError> {
        PromptSampler::new(self.len(), batch_size, seed)
    }

    /// Resumes a sampler saved in a checkpoint, checking it was made for a
    /// dataset of this length.
    ///
    /// # Errors
    /// [`DatasetError::InvalidSampler`] on a length mismatch or an inconsistent state.
    pub fn resume_sampler(&self, state: SamplerState) -> Result<PromptSampler, DatasetError> {
        if state.dataset_len != self.len() {
            return Err(DatasetError::InvalidSampler {
                reason: format!(
                    "the saved sampler was made for {} rows, this dataset has {}",
                    state.dataset_len,
                    self.len()
                ),
            });
        }
        PromptSampler::from_state(state)
    }

    /// Splits off `held_out` rows chosen by a seeded shuffle; both parts keep
    /// the original row order. The same `(dataset, held_out, seed)` always
    /// gives the same split.
    ///
    /// # Errors
    /// [`DatasetError::InvalidSplit`] unless `1 <= held_out < len`.
    pub fn split(&self, held_out: usize, seed: u64) -> Result<Split, DatasetError> {
        let len = self.len();
        if held_out == 0 || held_out >= len {
            return Err(DatasetError::InvalidSplit { held_out, len });
        }
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut is_held_out = vec![false; len];
        for &i in &order[..held_out] {
            is_held_out[i] = true;
        }
        let (mut train, mut held) = (Vec::new(), Vec::new());
        for (row, is_held) in self.rows.iter().zip(is_held_out) {
            if is_held {
                held.push(row.clone());
            } else {
                train.push(row.clone());
            }
        }
        Ok(Split {
            train: Dataset { rows: train },
            held_out: Dataset { rows: held },
        })
    }

    /// [`Dataset::split`] with `round(fraction * len)` held-out rows, at least 1.
    ///
    /// # Errors
    /// [`DatasetError::InvalidFraction`] unless `0 < fraction < 1`;
    /// [`DatasetError::InvalidSplit`] when a part would be empty.
    pub fn split_fraction(&self, fraction: f64, seed: u64) -> Result<Split, DatasetError> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(DatasetError::InvalidFraction { fraction });
        }
        let held_out = ((fraction * self.len() as f64).round() as usize).max(1);
        self.split(held_out, seed)
    }
}

fn parse_row(text: &str, columns: &Columns) -> Result<Row, RowProblem> {
    let value: Value = serde_json::from_str(text).map_err(|e| RowProblem::Json(e.to_string()))?;
    match value {
        Value::Object(object) => columns.row(object),
        other => Err(RowProblem::NotAnObject {
            found: json_type(&other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(text: &str) -> Result<Dataset, DatasetError> {
        Dataset::from_jsonl_reader(text.as_bytes(), Path::new("mem.jsonl"))
    }

    #[test]
    fn rows_keep_other_fields_and_skip_blank_lines() {
        let d = load("\u{feff}{\"prompt\": \"q1\", \"answer\": 4, \"id\": \"a\"}\n\n  \r\n{\"prompt\": \"q2\"}\r\n")
            .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d.rows()[0].prompt, Prompt::Text("q1".into()));
        assert_eq!(d.rows()[0].fields.get("answer"), Some(&json!(4)));
        assert!(!d.rows()[0].fields.contains_key("prompt"));
        assert!(d.rows()[1].fields.is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let err = load("{\"prompt\": \"q\"}\n\n{\"prompt\": 1}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mem.jsonl:3: `prompt` should be a string or a list of {\"role\", \"content\"} messages, found a number"
        );
        let err = load("{\"prompt\": \"q\"}\n{\"answer\": 1}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mem.jsonl:2: the row has no `prompt` field"
        );
        let err = load("[1]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mem.jsonl:1: a row should be a JSON object, found a list"
        );
        let err = load("{\"prompt\": \n").unwrap_err();
        assert!(
            err.to_string().starts_with("mem.jsonl:1: invalid JSON: "),
            "{err}"
        );
        let err = load("\n \n").unwrap_err();
        assert_eq!(err.to_string(), "dataset `mem.jsonl` has no rows");
    }

    #[test]
    fn from_rows_checks_prompts() {
        assert!(matches!(
            Dataset::from_rows(vec![]),
            Err(DatasetError::NoRows { .. })
        ));
        let err = Dataset::from_rows(vec![Row::new("ok"), Row::new("")]).unwrap_err();
        assert_eq!(err.to_string(), "row 1: `prompt` is empty");
        let err = Dataset::from_rows(vec![Row::new("ok").with_field("prompt", "x")]).unwrap_err();
        assert!(err.to_string().contains("`prompt` key"), "{err}");
        let d = Dataset::from_rows(vec![Row::new("q").with_field("answer", 3)]).unwrap();
        assert_eq!(d.get(0).unwrap().fields["answer"], json!(3));
        assert!(d.get(1).is_none());
    }

    #[test]
    fn split_is_deterministic_disjoint_and_ordered() {
        let rows: Vec<Row> = (0..20)
            .map(|i| Row::new(format!("q{i}")).with_field("i", i))
            .collect();
        let d = Dataset::from_rows(rows).unwrap();
        let a = d.split(5, 3).unwrap();
        assert_eq!(a, d.split(5, 3).unwrap());
        assert_ne!(a, d.split(5, 4).unwrap());
        assert_eq!((a.train.len(), a.held_out.len()), (15, 5));
        let ids = |d: &Dataset| -> Vec<i64> {
            d.rows()
                .iter()
                .map(|r| r.fields["i"].as_i64().unwrap())
                .collect()
        };
        let (train, held) = (ids(&a.train), ids(&a.held_out));
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        assert!(held.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<i64> = train.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..20).collect::<Vec<_>>());

        assert_eq!(d.split_fraction(0.1, 3).unwrap().held_out.len(), 2);
        assert!(d.split(0, 3).is_err());
        assert!(d.split(20, 3).is_err());
        assert!(d.split_fraction(1.0, 3).is_err());
        assert!(d.split_fraction(f64::NAN, 3).is_err());
    }

    #[test]
    fn resume_checks_the_dataset_length() {
        let d = Dataset::from_rows(vec![Row::new("a"), Row::new("b")]).unwrap();
        let mut state = d.sampler(1, 0).unwrap().state();
        assert!(d.resume_sampler(state).is_ok());
        state.dataset_len = 3;
        let err = d.resume_sampler(state).unwrap_err().to_string();
        assert!(err.contains("made for 3 rows"), "{err}");
    }
}
