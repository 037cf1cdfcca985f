//! TensorBoard event files for the per-step metrics, next to `metrics.jsonl` (which stays the
//! canonical record: the CLI's plots and comparisons read it back).
//!
//! The file is what TensorFlow's summary writer produces: TFRecord framing (per record a `u64`
//! little-endian length, the masked CRC-32C of those 8 bytes, the data, the masked CRC-32C of
//! the data) around protobuf `tensorboard.Event` messages. Its first record names the format
//! (`file_version: "brain.Event:2"`); every step is one event holding each metric as a
//! `simple_value` scalar tagged with the metric's name (`reward/mean` lands in TensorBoard's
//! `reward` group); the run's config is a text-plugin summary (tag `config`, a markdown code
//! block). The few messages needed are declared here by hand (field numbers as in
//! tensorboard's `event.proto`, `summary.proto`, `tensor.proto`).
//!
//! **Layout.** The file goes straight into the run folder:
//! `<run>/events.out.tfevents.<unix secs>.<host>.<pid>.sdpo`, so `tensorboard --logdir runs/`
//! lists one run per run folder, named after it (`run-1`, `run-2`, …), and `--logdir` on a
//! comparison's folder lists its runs. Only files with this pattern and the `.sdpo` suffix
//! are ever rewritten; event files of other writers in the folder are left alone.
//!
//! **Resume.** [`EventWriter::open_at`] for a run at `step` steps done first rewrites the
//! folder's event files keeping only records of steps ≤ `step` (the version record and the
//! config at step 0 stay; the config is written again only if it changed), each atomically (a temporary file in the same folder, fsync, rename), then
//! appends to the newest one. A record cut short at the end of a file (what `kill -9` in the
//! middle of a write leaves) is dropped with a warning. A checksum that does not match, or a
//! record that is not an event, stops the resume with [`TensorboardError::Corrupt`] naming
//! the file and the record's byte offset: the file is not touched, and the message says how to
//! go on (move the file away, or `train.tensorboard = false`).
//!
//! **Values.** Metrics are written as `f32` (`simple_value` is a float), so NaN and ±inf are
//! written as they are (TensorBoard reads and plots them as such), and a finite `f64` beyond
//! the `f32` range becomes ±inf. Each event is written with one `write` and flushed, so a
//! running `tensorboard` shows the steps as they come. A `tensorboard` left running across a
//! resume that rewrote the file may need a reload to drop the removed steps.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::metrics_log::Metrics;

/// The first record of every event file: the format's version.
pub const FILE_VERSION: &str = "brain.Event:2";
/// The tag of the run's config (a text-plugin summary).
pub const CONFIG_TAG: &str = "config";
/// The metric that is the event's step rather than a scalar of its own.
pub const STEP_METRIC: &str = "step";
/// The start of every event file name (TensorBoard reads files whose name has `tfevents`).
pub const FILE_PREFIX: &str = "events.out.tfevents.";
/// The end of the names of the files this module writes (and may rewrite on resume).
pub const FILE_SUFFIX: &str = ".sdpo";
/// `tensorboard.DataType.DT_STRING`.
pub const DT_STRING: i32 = 7;
/// The start of the name of a rewrite's temporary file: no `tfevents` in it, so TensorBoard
/// never reads one, and `.tmp-` as in every temporary of the run folder (a killed run's
/// leftovers are removed on the next open).
const TEMP_PREFIX: &str = "events.rewrite.tmp-";
/// Length, its checksum; after the data, the data's checksum.
const HEADER_LEN: usize = 12;
const FOOTER_LEN: usize = 4;

/// Why an event file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TensorboardError {
    /// A file or folder could not be read, written, renamed or listed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An event file holds a record that fails its checksum or is not an event.
    #[error("{}: damaged event file at byte {offset}: {reason} (move the file away to start it afresh, or set train.tensorboard = false)", path.display())]
    Corrupt {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> TensorboardError + '_ {
    move |source| TensorboardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `tensorboard.Event` (the fields this module uses).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The training step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "EventWhat", tags = "3, 5")]
    pub what: Option<EventWhat>,
}

/// `Event.what`: the file's version (first record) or a summary.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EventWhat {
    /// `file_version`, [`FILE_VERSION`].
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// `summary`: the values of one step.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorboard.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// One value per tag.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorboard.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The tag (a metric's name; `/` groups).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Which plugin reads the value (set on text summaries).
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    /// The value.
    #[prost(oneof = "ValueKind", tags = "2, 8")]
    pub value: Option<ValueKind>,
}

/// `Summary.Value.value`: a scalar or a tensor.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ValueKind {
    /// `simple_value`: a scalar.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// `tensor`: here a string tensor of the text plugin.
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

/// `tensorboard.SummaryMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// The plugin that reads the value.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// `tensorboard.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// The plugin's name (`text`).
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// The plugin's own serialized metadata (empty for `text`).
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorboard.TensorProto` (string tensors only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `tensorboard.DataType`; [`DT_STRING`].
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// The shape; no dimensions is a scalar.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// The strings.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// `tensorboard.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The dimensions (none: a scalar).
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<TensorShapeDim>,
}

/// `tensorboard.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeDim {
    /// The dimension's size.
    #[prost(int64, tag = "1")]
    pub size: i64,
}

impl Event {
    /// The scalars of this event: `(tag, value)`.
    pub fn scalars(&self) -> Vec<(&str, f32)> {
        self.values()
            .filter_map(|v| match v.value {
                Some(ValueKind::SimpleValue(x)) => Some((v.tag.as_str(), x)),
                _ => None,
            })
            .collect()
    }

    /// The text summaries of this event: `(tag, text)` (invalid UTF-8 replaced).
    pub fn texts(&self) -> Vec<(&str, String)> {
        self.values()
            .filter_map(|v| match &v.value {
                Some(ValueKind::Tensor(t)) if t.dtype == DT_STRING => {
                    let text = t
                        .string_val
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>()
                        .join("\n");
                    Some((v.tag.as_str(), text))
                }
                _ => None,
            })
            .collect()
    }

    fn values(&self) -> impl Iterator<Item = &SummaryValue> {
        match &self.what {
            Some(EventWhat::Summary(s)) => s.value.as_slice(),
            _ => &[],
        }
        .iter()
    }
}

/// TFRecord's checksum: CRC-32C, rotated and offset ("masked").
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, data, its masked CRC.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + data.len() + FOOTER_LEN);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// A file's records, checksums verified.
struct Records<'a> {
    /// `(offset, whole framed record, data)`.
    records: Vec<(u64, &'a [u8], &'a [u8])>,
    /// Where a last record cut short starts.
    torn_at: Option<u64>,
}

fn split_records<'a>(path: &Path, bytes: &'a [u8]) -> Result<Records<'a>, TensorboardError> {
    let corrupt = |offset: usize, reason: String| TensorboardError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some((header, after)) = rest.split_first_chunk::<HEADER_LEN>() else {
            return Ok(Records {
                records,
                torn_at: Some(at as u64),
            });
        };
        let (len_bytes, len_crc) = header.split_at(8);
        let len_crc = u32::from_le_bytes([len_crc[0], len_crc[1], len_crc[2], len_crc[3]]);
        if masked_crc32c(len_bytes) != len_crc {
            return Err(corrupt(at, "the length's checksum does not match".into()));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(len_bytes);
        let len = u64::from_le_bytes(len);
        let body = usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_add(FOOTER_LEN))
            .filter(|&n| n <= after.len());
        let Some(body) = body else {
            return Ok(Records {
                records,
                torn_at: Some(at as u64),
            });
        };
        let (data, crc) = after[..body].split_at(body - FOOTER_LEN);
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if masked_crc32c(data) != crc {
            return Err(corrupt(at, "the data's checksum does not match".into()));
        }
        let end = at + HEADER_LEN + body;
        records.push((at as u64, &bytes[at..end], data));
        at = end;
    }
    Ok(Records {
        records,
        torn_at: None,
    })
}

fn decode_event(path: &Path, offset: u64, data: &[u8]) -> Result<Event, TensorboardError> {
    Event::decode(data).map_err(|e| TensorboardError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: format!("not an event: {e}"),
    })
}

/// Reads every event of an event file, checksums verified.
///
/// # Errors
/// [`TensorboardError::Io`]; [`TensorboardError::Corrupt`] for a checksum that does not match,
/// a record that is not an event, or a file that ends inside a record.
pub fn read_events(path: &Path) -> Result<Vec<Event>, TensorboardError> {
    let bytes = std::fs::read(path).map_err(io_at(path))?;
    let split = split_records(path, &bytes)?;
    if let Some(offset) = split.torn_at {
        return Err(TensorboardError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: "the file ends inside this record".into(),
        });
    }
    split
        .records
        .iter()
        .map(|&(offset, _, data)| decode_event(path, offset, data))
        .collect()
}

/// The event files this module wrote in `dir`, oldest name first (a missing folder has none).
///
/// # Errors
/// [`TensorboardError::Io`] when the folder cannot be listed.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, TensorboardError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX) && entry.path().is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The config as the text plugin shows it: a markdown code block (fenced with more backticks
/// than any run of them inside, so any text stays verbatim).
pub fn config_markdown(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}\n{}\n{fence}", text.trim_end_matches('\n'))
}

/// Appends events to a run folder's event file, flushing each.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// The writer of a run at `step` steps done, in `dir` (created if missing). A folder
    /// without an event file of this module gets a new one, which starts with the version
    /// record. Otherwise every such file loses its records of steps after `step` (see the
    /// module's notes on resume) and the newest is appended to (after a version record, if it
    /// kept no record at all). `config` (as [`config_markdown`]) is written at step 0 when the
    /// files hold no config yet, and at `step` when it differs from the last config they keep
    /// (a resume with changed settings); the same config is not written again. Leftover
    /// temporaries of a killed rewrite are removed.
    ///
    /// # Errors
    /// [`TensorboardError::Io`] naming the path; [`TensorboardError::Corrupt`] for a damaged
    /// existing file (then no file is changed).
    pub fn open_at(
        dir: &Path,
        step: usize,
        config: Option<&str>,
    ) -> Result<Self, TensorboardError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        remove_leftovers(dir)?;
        let files = event_files(dir)?;
        // Check every file before changing any.
        let mut plans = Vec::with_capacity(files.len());
        let mut last_config = None;
        for path in &files {
            let plan = Truncation::plan(path, step)?;
            if plan.last_config.is_some() {
                last_config.clone_from(&plan.last_config);
            }
            plans.push(plan);
        }
        for plan in &plans {
            plan.apply(dir)?;
        }
        let (mut writer, empty) = match plans.last() {
            Some(plan) => (
                Self {
                    file: OpenOptions::new()
                        .append(true)
                        .open(&plan.path)
                        .map_err(io_at(&plan.path))?,
                    path: plan.path.clone(),
                },
                plan.records_kept == 0,
            ),
            None => {
                let path = dir.join(file_name());
                let file = OpenOptions::new()
                    .create_new(true)
                    .append(true)
                    .open(&path)
                    .map_err(io_at(&path))?;
                (Self { path, file }, true)
            }
        };
        if empty {
            writer.write_event(&Event {
                wall_time: now(),
                step: 0,
                what: Some(EventWhat::FileVersion(FILE_VERSION.into())),
            })?;
        }
        if let Some(config) = config {
            let text = config_markdown(config);
            if last_config.as_deref() != Some(text.as_str()) {
                let at = match last_config {
                    None => 0,
                    Some(_) => i64::try_from(step).unwrap_or(i64::MAX),
                };
                writer.write_text_at(at, CONFIG_TAG, &text)?;
            }
        }
        Ok(writer)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one step's metrics as one event of scalars (every metric but `step`, which is
    /// the event's step), then flushes.
    ///
    /// # Errors
    /// [`TensorboardError::Io`] naming the file.
    pub fn write_scalars(
        &mut self,
        step: usize,
        metrics: &Metrics,
    ) -> Result<(), TensorboardError> {
        let value = metrics
            .iter()
            .filter(|(name, _)| name.as_str() != STEP_METRIC)
            .map(|(name, &v)| SummaryValue {
                tag: name.clone(),
                metadata: None,
                value: Some(ValueKind::SimpleValue(v as f32)),
            })
            .collect();
        self.write_event(&Event {
            wall_time: now(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(EventWhat::Summary(Summary { value })),
        })
    }

    /// Writes `markdown` as a text summary (TensorBoard's Text tab) under `tag`, then flushes.
    ///
    /// # Errors
    /// [`TensorboardError::Io`] naming the file.
    pub fn write_text(
        &mut self,
        step: usize,
        tag: &str,
        markdown: &str,
    ) -> Result<(), TensorboardError> {
        self.write_text_at(i64::try_from(step).unwrap_or(i64::MAX), tag, markdown)
    }

    fn write_text_at(
        &mut self,
        step: i64,
        tag: &str,
        markdown: &str,
    ) -> Result<(), TensorboardError> {
        let value = SummaryValue {
            tag: tag.into(),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "text".into(),
                    content: Vec::new(),
                }),
            }),
            value: Some(ValueKind::Tensor(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShapeProto::default()),
                string_val: vec![markdown.as_bytes().to_vec()],
            })),
        };
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(EventWhat::Summary(Summary { value: vec![value] })),
        })
    }

    /// One record in one `write`, then a flush.
    fn write_event(&mut self, event: &Event) -> Result<(), TensorboardError> {
        let record = frame_record(&event.encode_to_vec());
        self.file
            .write_all(&record)
            .and_then(|()| self.file.flush())
            .map_err(io_at(&self.path))
    }
}

/// What resuming at a step does to one event file.
struct Truncation {
    path: PathBuf,
    /// The records kept, when the file changes.
    kept: Option<Vec<u8>>,
    /// The text of the last config record kept.
    last_config: Option<String>,
    /// Records left in the file.
    records_kept: usize,
}

impl Truncation {
    fn plan(path: &Path, step: usize) -> Result<Self, TensorboardError> {
        let bytes = std::fs::read(path).map_err(io_at(path))?;
        let split = split_records(path, &bytes)?;
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let mut kept = Vec::with_capacity(bytes.len());
        let mut records_kept = 0usize;
        let mut dropped = 0usize;
        let mut last_config = None;
        for &(offset, framed, data) in &split.records {
            let event = decode_event(path, offset, data)?;
            if event.step > step {
                dropped += 1;
                continue;
            }
            if let Some((_, text)) = event.texts().into_iter().find(|(t, _)| *t == CONFIG_TAG) {
                last_config = Some(text);
            }
            kept.extend_from_slice(framed);
            records_kept += 1;
        }
        if let Some(offset) = split.torn_at {
            tracing::warn!(
                "{}: dropping a record cut short at byte {offset} (a run killed while writing it)",
                path.display()
            );
        }
        if dropped > 0 {
            tracing::info!(
                "{}: removed {dropped} events of steps after {step} (resuming at step {step})",
                path.display()
            );
        }
        let changed = dropped > 0 || split.torn_at.is_some();
        Ok(Self {
            path: path.to_path_buf(),
            kept: changed.then_some(kept),
            last_config,
            records_kept,
        })
    }

    /// Replaces the file by the records kept: a temporary file in the same folder, synced,
    /// renamed over it.
    fn apply(&self, dir: &Path) -> Result<(), TensorboardError> {
        let Some(kept) = &self.kept else {
            return Ok(());
        };
        let tmp = dir.join(format!("{TEMP_PREFIX}{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(kept)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_at(&tmp)(e));
        }
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_at(&self.path)(e));
        }
        sync_dir(dir);
        Ok(())
    }
}

/// Temporary files of a rewrite that a killed run left.
fn remove_leftovers(dir: &Path) -> Result<(), TensorboardError> {
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_at(&path))?;
        }
    }
    Ok(())
}

/// Makes a rename in `dir` durable where the platform allows it (best effort).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `events.out.tfevents.<unix secs>.<host>.<pid>.sdpo`, as TensorFlow names its files.
fn file_name() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{FILE_PREFIX}{secs}.{}.{}{FILE_SUFFIX}",
        hostname(),
        std::process::id()
    )
}

/// This machine's name, reduced to characters safe in a file name.
fn hostname() -> String {
    let raw = host_name_raw().unwrap_or_default();
    let safe: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    match safe.trim_matches('.') {
        "" => "localhost".into(),
        s => s.into(),
    }
}

#[cfg(unix)]
fn host_name_raw() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into our own buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(not(unix))]
fn host_name_raw() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(step: usize, reward: f64) -> Metrics {
        let mut m = Metrics::new();
        m.insert("step".into(), step as f64);
        m.insert("reward/mean".into(), reward);
        m.insert("loss".into(), 0.25 * step as f64);
        m
    }

    /// The one event file in `dir`, read back.
    fn events_in(dir: &Path) -> Vec<Event> {
        let files = event_files(dir).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        read_events(&files[0]).unwrap()
    }

    /// The steps of the events that hold `tag`.
    fn steps_with(events: &[Event], tag: &str) -> Vec<i64> {
        events
            .iter()
            .filter(|e| e.scalars().iter().any(|(t, _)| *t == tag))
            .map(|e| e.step)
            .collect()
    }

    #[test]
    fn masked_crc_matches_tensorboard() {
        // Values of `masked_crc32c` in tensorboard's own record writer
        // (`tensorboard.compat.tensorflow_stub.pywrap_tensorflow`).
        assert_eq!(masked_crc32c(b"hello"), 0x191c_1fbb);
        assert_eq!(masked_crc32c(&5u64.to_le_bytes()), 0x3e04_b2ea);
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        let framed = frame_record(b"hello");
        assert_eq!(framed.len(), 8 + 4 + 5 + 4);
        assert_eq!(&framed[..8], &5u64.to_le_bytes());
        assert_eq!(&framed[8..12], &0x3e04_b2eau32.to_le_bytes());
        assert_eq!(&framed[12..17], b"hello");
        assert_eq!(&framed[17..], &0x191c_1fbbu32.to_le_bytes());
    }

    #[test]
    fn config_and_steps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open_at(dir.path(), 0, Some("(steps: 3,\n  seed: 0)\n")).unwrap();
        assert!(w
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(FILE_PREFIX));
        for step in 1..=3 {
            w.write_scalars(step, &metrics(step, step as f64 / 10.0))
                .unwrap();
        }
        let events = events_in(dir.path());
        assert_eq!(events.len(), 5, "version, config, 3 steps");
        assert_eq!(
            events[0].what,
            Some(EventWhat::FileVersion(FILE_VERSION.into()))
        );
        assert_eq!(events[0].step, 0);
        assert!(events[0].wall_time > 1.0e9);
        let texts = events[1].texts();
        assert_eq!(texts.len(), 1);
        assert_eq!(texts[0].0, CONFIG_TAG);
        assert_eq!(texts[0].1, "```\n(steps: 3,\n  seed: 0)\n```");
        match &events[1].what {
            Some(EventWhat::Summary(s)) => {
                let plugin = s.value[0].metadata.as_ref().unwrap().plugin_data.as_ref();
                assert_eq!(plugin.unwrap().plugin_name, "text");
            }
            other => panic!("{other:?}"),
        }
        for (i, e) in events[2..].iter().enumerate() {
            let step = i + 1;
            assert_eq!(e.step, step as i64);
            let mut scalars = e.scalars();
            scalars.sort_by(|a, b| a.0.cmp(b.0));
            assert_eq!(
                scalars,
                vec![
                    ("loss", (0.25 * step as f64) as f32),
                    ("reward/mean", (step as f64 / 10.0) as f32)
                ],
                "the step metric is the event's step, not a scalar"
            );
        }
    }

    #[test]
    fn zero_and_non_finite_values_are_written_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open_at(dir.path(), 0, None).unwrap();
        let mut m = Metrics::new();
        m.insert("zero".into(), 0.0);
        m.insert("nan".into(), f64::NAN);
        m.insert("inf".into(), f64::INFINITY);
        m.insert("big".into(), -1.0e300);
        w.write_scalars(1, &m).unwrap();
        let events = events_in(dir.path());
        assert_eq!(events.len(), 2, "version, one step; no config given");
        let s: std::collections::BTreeMap<&str, f32> = events[1].scalars().into_iter().collect();
        assert_eq!(s.len(), 4, "a zero is written, not left out");
        assert_eq!(s["zero"], 0.0);
        assert!(s["nan"].is_nan());
        assert_eq!(s["inf"], f32::INFINITY);
        assert_eq!(s["big"], f32::NEG_INFINITY);
    }

    #[test]
    fn resume_drops_later_steps_once_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open_at(dir.path(), 0, Some("cfg")).unwrap();
        for step in 1..=5 {
            w.write_scalars(step, &metrics(step, 1.0)).unwrap();
        }
        let first = w.path().to_path_buf();
        drop(w);
        // Killed after step 5; the newest checkpoint is step 3.
        let mut w = EventWriter::open_at(dir.path(), 3, Some("cfg")).unwrap();
        assert_eq!(w.path(), first, "the same file goes on");
        w.write_scalars(4, &metrics(4, 2.0)).unwrap();
        let events = events_in(dir.path());
        assert_eq!(steps_with(&events, "loss"), [1, 2, 3, 4]);
        let configs: Vec<i64> = events
            .iter()
            .filter(|e| !e.texts().is_empty())
            .map(|e| e.step)
            .collect();
        assert_eq!(configs, [0], "the same config is not written again");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e.what, Some(EventWhat::FileVersion(_))))
                .count(),
            1
        );
        let last = events.last().unwrap().scalars();
        assert!(last.contains(&("reward/mean", 2.0)), "{last:?}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temporary left"
        );

        // A resume with other settings records them at the resume step.
        drop(w);
        let w = EventWriter::open_at(dir.path(), 4, Some("cfg 2")).unwrap();
        drop(w);
        let events = events_in(dir.path());
        let texts: Vec<(i64, String)> = events
            .iter()
            .flat_map(|e| e.texts().into_iter().map(|(_, t)| (e.step, t)))
            .collect();
        assert_eq!(
            texts,
            [(0, config_markdown("cfg")), (4, config_markdown("cfg 2"))]
        );
        // Resuming at step 0 (no checkpoint) keeps the header and the first config only.
        EventWriter::open_at(dir.path(), 0, Some("cfg")).unwrap();
        let events = events_in(dir.path());
        assert_eq!(events.len(), 2);
        assert_eq!(steps_with(&events, "loss"), Vec::<i64>::new());
    }

    #[test]
    fn a_record_cut_short_is_dropped_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open_at(dir.path(), 0, None).unwrap();
        for step in 1..=2 {
            w.write_scalars(step, &metrics(step, 1.0)).unwrap();
        }
        let path = w.path().to_path_buf();
        drop(w);
        let whole = std::fs::read(&path).unwrap();
        // Half of a third step's record, as a kill in the middle of the write leaves it.
        let extra = frame_record(
            &Event {
                wall_time: 1.0,
                step: 3,
                what: None,
            }
            .encode_to_vec(),
        );
        let mut torn = whole.clone();
        torn.extend_from_slice(&extra[..extra.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("at byte {}", whole.len())) && err.contains("ends inside"),
            "{err}"
        );
        // Also a cut inside the 12-byte header.
        let mut w = EventWriter::open_at(dir.path(), 2, None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        w.write_scalars(3, &metrics(3, 1.0)).unwrap();
        drop(w);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        EventWriter::open_at(dir.path(), 3, None).unwrap();
        assert_eq!(steps_with(&events_in(dir.path()), "loss"), [1, 2, 3]);
    }

    #[test]
    fn a_checksum_mismatch_names_the_file_and_offset_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open_at(dir.path(), 0, None).unwrap();
        w.write_scalars(1, &metrics(1, 1.0)).unwrap();
        w.write_scalars(2, &metrics(2, 1.0)).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let good = std::fs::read(&path).unwrap();
        let header_len = frame_record(
            &Event {
                wall_time: 1.0, // not the default 0, which protobuf leaves out
                step: 0,
                what: Some(EventWhat::FileVersion(FILE_VERSION.into())),
            }
            .encode_to_vec(),
        )
        .len();
        // A flipped bit in step 1's data.
        let mut bad = good.clone();
        bad[header_len + HEADER_LEN + 3] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let name = path.display().to_string();
        for err in [
            read_events(&path).unwrap_err(),
            EventWriter::open_at(dir.path(), 1, None).unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(
                matches!(err, TensorboardError::Corrupt { offset, .. } if offset == header_len as u64),
                "{msg}"
            );
            assert!(msg.contains(&name), "{msg}");
            assert!(msg.contains("data's checksum"), "{msg}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), bad, "left as it was");
        // A flipped bit in the length of step 2's record.
        let mut bad = good.clone();
        let second = header_len + frame_record(&metrics_event(1)).len();
        bad[second] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let msg = read_events(&path).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("byte {second}")) && msg.contains("length's checksum"),
            "{msg}"
        );
        // Checksums right, contents not an event.
        let mut bad = good;
        bad.extend_from_slice(&frame_record(&[0xff, 0xff, 0xff]));
        std::fs::write(&path, &bad).unwrap();
        let msg = read_events(&path).unwrap_err().to_string();
        assert!(msg.contains("not an event"), "{msg}");
    }

    /// The encoded event of [`metrics`] at `step` as the writer frames it (its wall time has
    /// the same length in every event: a fixed 8-byte double).
    fn metrics_event(step: usize) -> Vec<u8> {
        let value = metrics(step, 1.0)
            .iter()
            .filter(|(n, _)| n.as_str() != STEP_METRIC)
            .map(|(n, &v)| SummaryValue {
                tag: n.clone(),
                metadata: None,
                value: Some(ValueKind::SimpleValue(v as f32)),
            })
            .collect();
        Event {
            wall_time: 1.0,
            step: step as i64,
            what: Some(EventWhat::Summary(Summary { value })),
        }
        .encode_to_vec()
    }

    #[test]
    fn other_files_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("events.out.tfevents.1.host.v2");
        std::fs::write(&foreign, b"not ours").unwrap();
        std::fs::write(dir.path().join(format!("{TEMP_PREFIX}42")), b"half").unwrap();
        let w = EventWriter::open_at(&dir.path().join("new"), 0, None).unwrap();
        assert!(w.path().starts_with(dir.path().join("new")));
        let w = EventWriter::open_at(dir.path(), 7, None).unwrap();
        assert_ne!(w.path(), foreign);
        assert_eq!(std::fs::read(&foreign).unwrap(), b"not ours");
        assert!(!dir.path().join(format!("{TEMP_PREFIX}42")).exists());
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(&format!(".{}{FILE_SUFFIX}", std::process::id())));
        assert!(!hostname().is_empty());
        assert_eq!(config_markdown("a ```b```"), "````\na ```b```\n````");
        // An empty file of ours (killed before its first record) gets the version record and
        // the config at step 0.
        let sub = dir.path().join("empty");
        std::fs::create_dir(&sub).unwrap();
        let empty = sub.join(format!("{FILE_PREFIX}5.host.1{FILE_SUFFIX}"));
        std::fs::write(&empty, b"").unwrap();
        let w = EventWriter::open_at(&sub, 4, Some("c")).unwrap();
        assert_eq!(w.path(), empty);
        let events = read_events(&empty).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].what,
            Some(EventWhat::FileVersion(FILE_VERSION.into()))
        );
        assert_eq!(
            (events[1].step, events[1].texts()[0].1.as_str()),
            (0, "```\nc\n```")
        );
        // A folder that is a file: an I/O error naming it.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let msg = EventWriter::open_at(&file, 0, None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }
}
