//! Parquet files, Arrow files and Hugging Face `datasets` folders as records (JSON objects),
//! through the Apache `parquet`, `arrow-ipc` and `arrow-json` crates.
//!
//! A folder is read the way `datasets` wrote it:
//! - `save_to_disk` of a `DatasetDict`: `dataset_dict.json` lists the splits, each a folder;
//! - `save_to_disk` of one `Dataset`: `state.json` lists its Arrow shards (`_data_files`);
//! - `push_to_hub` / a Hub dataset repo: parquet shards named `SPLIT-00000-of-0000N.parquet`
//!   (usually under `data/`) or in a folder named after the split.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::DatasetError;

/// The files of split `split` of a `datasets` folder, in order.
///
/// # Errors
/// [`DatasetError::Format`] naming the folder, the split and the splits there are.
pub(crate) fn split_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>, DatasetError> {
    let format = |reason: String| DatasetError::Format {
        path: dir.to_path_buf(),
        reason,
    };
    let dict = dir.join("dataset_dict.json");
    if dict.is_file() {
        let splits: Vec<String> = read_json(&dict)?
            .get("splits")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !splits.iter().any(|s| s == split) {
            return Err(format(format!(
                "no split `{split}` (dataset_dict.json lists: {})",
                splits.join(", ")
            )));
        }
        return split_files(&dir.join(split), split);
    }
    let state = dir.join("state.json");
    if state.is_file() {
        let files: Vec<PathBuf> = read_json(&state)?
            .get("_data_files")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.get("filename").and_then(Value::as_str))
                    .map(|name| dir.join(name))
                    .collect()
            })
            .unwrap_or_default();
        if files.is_empty() {
            return Err(format("state.json lists no `_data_files`".into()));
        }
        return Ok(files);
    }
    let mut parquet = Vec::new();
    collect_parquet(dir, &mut parquet).map_err(|source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    parquet.sort();
    let in_split = |p: &PathBuf| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let folder = p
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy());
        name.starts_with(&format!("{split}-"))
            || name == format!("{split}.parquet")
            || folder.is_some_and(|f| f == split)
    };
    let files: Vec<PathBuf> = parquet.iter().filter(|p| in_split(p)).cloned().collect();
    if files.is_empty() {
        let found: Vec<String> = parquet
            .iter()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .map(|p| p.display().to_string())
            .collect();
        return Err(format(format!(
            "no files of split `{split}` (neither dataset_dict.json nor state.json, and no {split}-*.parquet among: {})",
            if found.is_empty() { "no parquet files".to_string() } else { found.join(", ") }
        )));
    }
    Ok(files)
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_parquet(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| DatasetError::Format {
        path: path.to_path_buf(),
        reason: format!("invalid JSON: {e}"),
    })
}

/// Every record of a parquet file.
///
/// # Errors
/// [`DatasetError::Io`] / [`DatasetError::Format`] naming the file.
#[cfg(feature = "parquet")]
pub(crate) fn read_parquet(path: &Path) -> Result<Vec<Map<String, Value>>, DatasetError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format_error(path, "parquet", e))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_error(path, "parquet", e))?;
    records(path, &batches)
}

/// Every record of an Arrow IPC file (`datasets` writes the stream format; the file format
/// is read too).
///
/// # Errors
/// As [`read_parquet`].
#[cfg(feature = "parquet")]
pub(crate) fn read_arrow(path: &Path) -> Result<Vec<Map<String, Value>>, DatasetError> {
    use arrow_ipc::reader::{FileReader, StreamReader};
    let stream =
        StreamReader::try_new(open(path)?, None).and_then(|r| r.collect::<Result<Vec<_>, _>>());
    let batches = match stream {
        Ok(batches) => batches,
        Err(stream_error) => FileReader::try_new(open(path)?, None)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|_| format_error(path, "Arrow IPC", stream_error))?,
    };
    records(path, &batches)
}

/// Without the `parquet` feature: an error saying so.
#[cfg(not(feature = "parquet"))]
pub(crate) fn read_parquet(path: &Path) -> Result<Vec<Map<String, Value>>, DatasetError> {
    Err(DatasetError::Format {
        path: path.to_path_buf(),
        reason: "sdpo-train was built without its `parquet` feature".into(),
    })
}

/// Without the `parquet` feature: an error saying so.
#[cfg(not(feature = "parquet"))]
pub(crate) fn read_arrow(path: &Path) -> Result<Vec<Map<String, Value>>, DatasetError> {
    read_parquet(path)
}

#[cfg(feature = "parquet")]
fn open(path: &Path) -> Result<std::fs::File, DatasetError> {
    std::fs::File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(feature = "parquet")]
fn format_error(path: &Path, what: &str, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Format {
        path: path.to_path_buf(),
        reason: format!("not a readable {what} file: {e}"),
    }
}

/// Record batches as JSON objects (arrow-json's writer; null fields left out).
#[cfg(feature = "parquet")]
fn records(
    path: &Path,
    batches: &[arrow_array::RecordBatch],
) -> Result<Vec<Map<String, Value>>, DatasetError> {
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    let refs: Vec<&arrow_array::RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .and_then(|()| writer.finish())
        .map_err(|e| format_error(path, "columnar", e))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| format_error(path, "columnar", e))
}
