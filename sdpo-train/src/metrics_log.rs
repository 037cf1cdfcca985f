//! Per-step metrics files in the run folder: `metrics.jsonl` (one JSON object per step) or
//! `metrics.csv` (columns fixed by the first row). Appends, so a resumed run continues the file;
//! every row is flushed as it is written.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::config::MetricsFormat;

/// One step's metrics, by name (the names are in `sdpo_core::metrics`).
pub type Metrics = BTreeMap<String, f64>;

/// Appends one row of metrics per step.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
    format: MetricsFormat,
    columns: Option<Vec<String>>,
}

impl MetricsWriter {
    /// Opens (creating or appending to) `dir/metrics.jsonl` or `dir/metrics.csv`.
    ///
    /// # Errors
    /// The I/O error, with the path in its message.
    pub fn open(dir: &Path, format: MetricsFormat) -> std::io::Result<Self> {
        let name = match format {
            MetricsFormat::Jsonl => "metrics.jsonl",
            MetricsFormat::Csv => "metrics.csv",
        };
        let path = dir.join(name);
        let with_path =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(with_path)?;
        // A CSV being appended to keeps the header it has.
        let columns = match format {
            MetricsFormat::Csv if path.exists() => {
                BufReader::new(File::open(&path).map_err(with_path)?)
                    .lines()
                    .next()
                    .transpose()
                    .map_err(with_path)?
                    .map(|h| h.split(',').map(str::to_string).collect())
            }
            _ => None,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(with_path)?;
        Ok(Self {
            path,
            file,
            format,
            columns,
        })
    }

    /// [`Self::open`] for a run at `step` steps done: rows of later steps (written by a run
    /// that was killed after its last checkpoint and is now resumed from it) are removed first,
    /// so every step appears once.
    ///
    /// # Errors
    /// As [`Self::open`] and [`truncate_after_step`].
    pub fn open_at(dir: &Path, format: MetricsFormat, step: usize) -> std::io::Result<Self> {
        let name = match format {
            MetricsFormat::Jsonl => "metrics.jsonl",
            MetricsFormat::Csv => "metrics.csv",
        };
        truncate_after_step(&dir.join(name), step)?;
        Self::open(dir, format)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one step's metrics.
    ///
    /// # Errors
    /// The I/O error, with the path in its message.
    pub fn write(&mut self, metrics: &Metrics) -> std::io::Result<()> {
        let line = match self.format {
            MetricsFormat::Jsonl => {
                let obj: serde_json::Map<String, serde_json::Value> = metrics
                    .iter()
                    .map(|(k, v)| {
                        let v = serde_json::Number::from_f64(*v)
                            .map(serde_json::Value::Number)
                            .unwrap_or(serde_json::Value::Null);
                        (k.clone(), v)
                    })
                    .collect();
                format!("{}\n", serde_json::Value::Object(obj))
            }
            MetricsFormat::Csv => {
                let mut out = String::new();
                if self.columns.is_none() {
                    let cols: Vec<String> = metrics.keys().cloned().collect();
                    out.push_str(&cols.join(","));
                    out.push('\n');
                    self.columns = Some(cols);
                }
                let cols = self.columns.as_deref().unwrap_or_default();
                let row: Vec<String> = cols
                    .iter()
                    .map(|c| metrics.get(c).map(|v| v.to_string()).unwrap_or_default())
                    .collect();
                out.push_str(&row.join(","));
                out.push('\n');
                out
            }
        };
        let path = self.path.display().to_string();
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))
    }
}

/// Removes the rows of steps after `step` from a per-step log (`.jsonl` objects or `.csv`
/// rows with a `step` field), and a last line cut short by a killed process; the file is
/// replaced atomically. A missing file is left missing. Returns the rows removed.
///
/// # Errors
/// The I/O error, with the path in its message.
pub fn truncate_after_step(path: &Path, step: usize) -> std::io::Result<usize> {
    let with_path =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(with_path(e)),
    };
    let csv = path.extension().is_some_and(|e| e == "csv");
    let mut lines: Vec<&str> = text.lines().collect();
    let torn = !text.is_empty() && !text.ends_with('\n');
    let header = if csv && !lines.is_empty() {
        Some(lines.remove(0))
    } else {
        None
    };
    let step_column = header.and_then(|h| h.split(',').position(|c| c == "step"));
    let step_of = |line: &str| -> Option<f64> {
        match step_column {
            Some(k) => line.split(',').nth(k)?.parse().ok(),
            None => serde_json::from_str::<serde_json::Value>(line)
                .ok()?
                .get("step")?
                .as_f64(),
        }
    };
    let last = lines.len().saturating_sub(1);
    let mut kept = Vec::with_capacity(lines.len());
    let mut removed = 0;
    for (i, line) in lines.iter().enumerate() {
        let drop = match step_of(line) {
            Some(s) => s > step as f64,
            None => torn && i == last,
        };
        if drop {
            removed += 1;
        } else {
            kept.push(*line);
        }
    }
    if removed == 0 && !torn {
        return Ok(0);
    }
    let mut out = String::new();
    for line in header.into_iter().chain(kept) {
        out.push_str(line);
        out.push('\n');
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, out).map_err(with_path)?;
    std::fs::rename(&tmp, path).map_err(with_path)?;
    Ok(removed)
}

/// Reads a `metrics.jsonl` file back (for plots, reports and tests).
///
/// # Errors
/// The I/O or JSON error with the path and line number.
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<Metrics>> {
    let file = File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let obj: BTreeMap<String, Option<f64>> = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: {e}", path.display(), i + 1),
            )
        })?;
        rows.push(
            obj.into_iter()
                .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
                .collect(),
        );
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_after_the_resumed_step_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("metrics.jsonl");
        std::fs::write(
            &j,
            "{\"step\":1,\"a\":1}\n{\"step\":2,\"a\":2}\n{\"step\":3,\"a\":3}\n{\"step\":4,\"a",
        )
        .unwrap();
        assert_eq!(truncate_after_step(&j, 2).unwrap(), 2);
        let rows = read_jsonl(&j).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["step"], 2.0);
        assert_eq!(truncate_after_step(&j, 2).unwrap(), 0);
        let c = dir.path().join("metrics.csv");
        std::fs::write(&c, "a,step\n1,1\n2,2\n3,3\n").unwrap();
        assert_eq!(truncate_after_step(&c, 1).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&c).unwrap(), "a,step\n1,1\n");
        assert_eq!(
            truncate_after_step(&dir.path().join("none.jsonl"), 1).unwrap(),
            0
        );
    }

    #[test]
    fn jsonl_and_csv_append_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Metrics::new();
        m.insert("loss".into(), 0.5);
        m.insert("reward/mean".into(), 1.0);
        let mut w = MetricsWriter::open(dir.path(), MetricsFormat::Jsonl).unwrap();
        w.write(&m).unwrap();
        m.insert("loss".into(), f64::NAN);
        w.write(&m).unwrap();
        let rows = read_jsonl(w.path()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["loss"], 0.5);
        assert!(rows[1]["loss"].is_nan());

        let mut c = MetricsWriter::open(dir.path(), MetricsFormat::Csv).unwrap();
        c.write(&m).unwrap();
        drop(c);
        let mut c = MetricsWriter::open(dir.path(), MetricsFormat::Csv).unwrap();
        m.insert("new".into(), 2.0); // not in the header: dropped, columns stay aligned
        c.write(&m).unwrap();
        let text = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "loss,reward/mean");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], "NaN,1");
    }
}
