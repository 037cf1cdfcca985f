//! Models by Hugging Face Hub id: `Qwen/Qwen2.5-0.5B-Instruct`, at a revision, or one GGUF
//! file of a repo.
//!
//! [`resolve`] turns a [`HubModel`] into a local path that [`crate::load`] reads: the
//! repo's snapshot folder (config, tokenizer files, safetensors, all shards of a sharded
//! checkpoint) or the GGUF file. Downloads go through the `hf-hub` crate (the Hub's Rust
//! client) into the cache layout Python's `huggingface_hub` uses (`models--ORG--NAME/` with
//! `blobs/`, `snapshots/COMMIT/` and `refs/REVISION`), so both share one cache.
//!
//! [`HubSettings::from_env`] reads what Python reads:
//!
//! | variable | effect |
//! | --- | --- |
//! | `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub` | the cache |
//! | `HF_ENDPOINT` | a mirror instead of `https://huggingface.co` |
//! | `HF_TOKEN`, else the token file `huggingface-cli login` writes | gated and private repos |
//! | `HF_HUB_OFFLINE=1` | the cache only; a missing file is an error naming it |
//! | `HF_HUB_DISABLE_PROGRESS_BARS=1` | no progress bar per file |
//!
//! Online, one request lists the repo at the revision (its commit and files); files already in
//! that commit's snapshot are not downloaded again. A download goes to a `.part` file next to
//! its blob and is renamed when complete, so an interrupted download never leaves a
//! half-written file in a snapshot; it is retried from where it stopped ([`HubSettings::retries`]
//! times) and a later run resumes the `.part` file.

#[cfg(any(test, feature = "hub-fixture"))]
mod fixture;

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[cfg(any(test, feature = "hub-fixture"))]
pub use fixture::FixtureHub;

use crate::hf::{INDEX_FILE, SINGLE_FILE};

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";
/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Files of a Hugging Face model folder besides the weights; the first two are required.
const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];
const OPTIONAL_FILES: [&str; 5] = [
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.json",
    "chat_template.jinja",
];
/// Extra chat templates (`additional_chat_templates/NAME.jinja`).
const EXTRA_TEMPLATES: &str = "additional_chat_templates/";

/// A model on the Hub: a repo id, an optional revision (branch, tag or commit) and, for a
/// repo of GGUF files, the file.
///
/// Written as one string everywhere (run configs and the command line):
/// `ORG/NAME[:FILE][@REVISION]`, e.g. `Qwen/Qwen2.5-0.5B-Instruct`,
/// `Qwen/Qwen2.5-0.5B-Instruct@v1.0`,
/// `bartowski/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct-Q4_K_M.gguf`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubModel {
    /// The repo id (`ORG/NAME`, or `NAME` for the few repos without an organization).
    pub id: String,
    /// Branch, tag or commit; `None` is [`DEFAULT_REVISION`].
    pub revision: Option<String>,
    /// One file of the repo to load (a `.gguf` file); `None` loads the repo as a Hugging Face
    /// model folder.
    pub file: Option<String>,
}

impl HubModel {
    /// Parses `ORG/NAME[:FILE][@REVISION]`.
    ///
    /// # Errors
    /// [`HubError::InvalidId`] saying which part is malformed.
    pub fn parse(text: &str) -> Result<Self, HubError> {
        let invalid = |reason: &str| HubError::InvalidId {
            id: text.to_string(),
            reason: reason.to_string(),
        };
        let (rest, revision) = match text.rsplit_once('@') {
            Some((rest, rev)) if !rev.is_empty() && !rev.chars().any(char::is_whitespace) => {
                (rest, Some(rev.to_string()))
            }
            Some(_) => return Err(invalid("the revision after `@` is empty or has spaces")),
            None => (text, None),
        };
        let (id, file) = match rest.split_once(':') {
            Some((id, file)) => (id, Some(file.to_string())),
            None => (rest, None),
        };
        let segments: Vec<&str> = id.split('/').collect();
        if segments.len() > 2 {
            return Err(invalid(
                "a repo id has at most one `/` (ORG/NAME); name a file inside it as ORG/NAME:FILE",
            ));
        }
        if let Some(bad) = segments.iter().find(|s| !valid_segment(s)) {
            return Err(invalid(&format!(
                "`{bad}` is not a valid repo name part (letters, digits, `-`, `_`, `.`; not starting or ending with `-` or `.`, no `--` or `..`)"
            )));
        }
        if let Some(file) = &file {
            let bad = file.is_empty()
                || file.starts_with('/')
                || file
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..");
            if bad {
                return Err(invalid(
                    "the file after `:` must be a relative path inside the repo",
                ));
            }
        }
        Ok(Self {
            id: id.to_string(),
            revision,
            file,
        })
    }

    /// The revision to fetch ([`DEFAULT_REVISION`] when none is given).
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    fn repo(&self, revision: &str) -> Repo {
        Repo::with_revision(self.id.clone(), RepoType::Model, revision.to_string())
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
        && !s.contains("--")
        && !s.contains("..")
}

impl std::fmt::Display for HubModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.id)?;
        if let Some(file) = &self.file {
            write!(f, ":{file}")?;
        }
        if let Some(rev) = &self.revision {
            write!(f, "@{rev}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for HubModel {
    type Err = HubError;
    fn from_str(s: &str) -> Result<Self, HubError> {
        Self::parse(s)
    }
}

impl Serialize for HubModel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HubModel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where and how [`resolve`] fetches: endpoint, cache, token, offline mode, progress bars,
/// retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The Hub's address (`HF_ENDPOINT`), without a trailing `/`.
    pub endpoint: String,
    /// The cache folder (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Access token for gated and private repos (`HF_TOKEN`, or the login token file).
    pub token: Option<String>,
    /// Use only the cache (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// A progress bar per downloaded file (on a terminal).
    pub progress: bool,
    /// How many times an interrupted download is resumed before giving up.
    pub retries: usize,
}

/// Python's reading of a boolean environment variable (`1`, `ON`, `YES`, `TRUE`).
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl HubSettings {
    /// The settings `huggingface_hub` would use in this environment (see the
    /// [module docs](self)); 3 retries.
    pub fn from_env() -> Self {
        let hf_home = env_path("HF_HOME").unwrap_or_else(|| {
            env_path("XDG_CACHE_HOME")
                .or_else(|| env_path("HOME").map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache_dir = env_path("HF_HUB_CACHE").unwrap_or_else(|| hf_home.join("hub"));
        let token = std::env::var("HF_TOKEN")
            .ok()
            .or_else(|| {
                let file = env_path("HF_TOKEN_PATH").unwrap_or_else(|| hf_home.join("token"));
                std::fs::read_to_string(file).ok()
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self {
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            cache_dir,
            token,
            offline: env_flag("HF_HUB_OFFLINE"),
            progress: !env_flag("HF_HUB_DISABLE_PROGRESS_BARS"),
            retries: 3,
        }
    }

    /// Settings for `endpoint` with cache `cache_dir`: no token, online, no progress bars,
    /// 3 retries.
    pub fn new(endpoint: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            cache_dir: cache_dir.into(),
            token: None,
            offline: false,
            progress: false,
            retries: 3,
        }
    }
}

/// Why a Hub model could not be resolved; every variant names the repo, and the file where
/// there is one.
#[derive(Debug, Error)]
pub enum HubError {
    /// Not of the form `ORG/NAME[:FILE][@REVISION]`.
    #[error("`{id}` is not a Hub model id: {reason}")]
    InvalidId {
        /// What was given.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The repo, revision or file does not exist (HTTP 404).
    #[error("{what} not found on the Hub ({url}: HTTP 404{code})")]
    NotFound {
        /// `repo ORG/NAME`, `revision R of repo ORG/NAME` or `FILE in repo ORG/NAME at revision R`.
        what: String,
        /// The address asked.
        url: String,
        /// The Hub's `X-Error-Code`, as `, CODE`.
        code: String,
    },
    /// The repo needs a token or the token lacks access (HTTP 401/403).
    #[error("repo {repo} is gated or private ({url}: HTTP {status}); {hint}")]
    Unauthorized {
        /// The repo id.
        repo: String,
        /// The address asked.
        url: String,
        /// 401 or 403.
        status: u16,
        /// What to do.
        hint: String,
    },
    /// Any other HTTP error status.
    #[error("{url}: HTTP {status}: {message}")]
    Http {
        /// The address asked.
        url: String,
        /// The status.
        status: u16,
        /// The start of the answer's body.
        message: String,
    },
    /// No answer (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the Hub at {url}: {message} (set HF_HUB_OFFLINE=1 to use the cache only, or HF_ENDPOINT for a mirror)")]
    Unreachable {
        /// The address asked.
        url: String,
        /// The transport error.
        message: String,
    },
    /// A download failed after its retries; nothing was added to the snapshot (the partial
    /// `.part` file next to the blob is resumed next time).
    #[error("downloading {file} of repo {repo} failed: {message}")]
    Download {
        /// The repo id.
        repo: String,
        /// The file.
        file: String,
        /// What failed last.
        message: String,
    },
    /// Offline mode and the cache lacks something.
    #[error("HF_HUB_OFFLINE is set and {what} is not in the cache ({}); run once online or unset HF_HUB_OFFLINE", path.display())]
    NotCached {
        /// What is missing.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The repo at this revision is not a loadable model.
    #[error("repo {repo} at revision {revision}: {reason}")]
    NotAModel {
        /// The repo id.
        repo: String,
        /// The revision.
        revision: String,
        /// What is missing, and what the repo has instead.
        reason: String,
    },
    /// A cache file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The repo's shard index is not valid JSON of the expected form.
    #[error("{}: invalid shard index: {source}", path.display())]
    Index {
        /// The index file in the cache.
        path: PathBuf,
        /// The parser error.
        source: serde_json::Error,
    },
}

/// Where [`resolve`] put a model: the path to load and the commit it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The snapshot folder (a Hugging Face model folder) or the GGUF file in it.
    pub path: PathBuf,
    /// The commit the revision pointed at.
    pub commit: String,
}

/// Fetches what `model` needs into the cache (or, offline, finds it there) and returns the
/// local path to load.
///
/// # Errors
/// [`HubError`] naming the repo and file: not found, gated, unreachable, a failed download,
/// not in the cache when offline, or a repo that is not a model.
pub fn resolve(model: &HubModel, settings: &HubSettings) -> Result<Resolved, HubError> {
    let cache = Cache::new(settings.cache_dir.clone());
    let repo_dir = settings
        .cache_dir
        .join(model.repo(model.revision()).folder_name());
    if settings.offline {
        return resolve_offline(model, &repo_dir);
    }
    let api = ApiBuilder::from_cache(cache)
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(settings.progress)
        .with_retries(settings.retries)
        .build()
        .map_err(|e| HubError::Unreachable {
            url: settings.endpoint.clone(),
            message: e.to_string(),
        })?;
    let listing = api.repo(model.repo(model.revision()));
    let info_url = format!(
        "{}/api/models/{}/revision/{}",
        settings.endpoint,
        model.id,
        model.revision()
    );
    let info = listing.info().map_err(|e| {
        http_error(e, &info_url, model, || {
            format!("revision {} of repo {}", model.revision(), model.id)
        })
    })?;
    let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    // Download from the commit itself, so every file comes from the same one even if the
    // branch moves meanwhile.
    let pinned = Pinned {
        api: api.repo(model.repo(&info.sha)),
        model,
        snapshot: repo_dir.join("snapshots").join(&info.sha),
        settings,
        commit: &info.sha,
    };
    let path = match &model.file {
        Some(file) => {
            if !files.contains(file) {
                return Err(not_a_model(
                    model,
                    format!("it has no file {file} (it has: {})", short_list(&files)),
                ));
            }
            pinned.fetch(file)?
        }
        None => {
            for file in model_files(model, &files, |index| pinned.fetch(index))? {
                pinned.fetch(&file)?;
            }
            pinned.snapshot.clone()
        }
    };
    record_ref(&repo_dir, model.revision(), &info.sha)?;
    Ok(Resolved {
        path,
        commit: info.sha,
    })
}

/// One repo at one commit, and its snapshot folder in the cache.
struct Pinned<'a> {
    api: ApiRepo,
    model: &'a HubModel,
    snapshot: PathBuf,
    settings: &'a HubSettings,
    commit: &'a str,
}

impl Pinned<'_> {
    /// The file's path in the snapshot, downloaded unless it is there already.
    fn fetch(&self, file: &str) -> Result<PathBuf, HubError> {
        let local = self.snapshot.join(file);
        if local.is_file() {
            return Ok(local);
        }
        let url = format!(
            "{}/{}/resolve/{}/{file}",
            self.settings.endpoint, self.model.id, self.commit
        );
        self.api.download(file).map_err(|e| match e {
            ApiError::TooManyRetries(last) => HubError::Download {
                repo: self.model.id.clone(),
                file: file.to_string(),
                message: format!("{} retries, the last: {last}", self.settings.retries),
            },
            ApiError::IoError(source) => HubError::Download {
                repo: self.model.id.clone(),
                file: file.to_string(),
                message: source.to_string(),
            },
            other => http_error(other, &url, self.model, || {
                format!(
                    "{file} in repo {} at revision {}",
                    self.model.id,
                    self.model.revision()
                )
            }),
        })
    }
}

/// The files a Hugging Face model folder needs, from the repo's listing: config, tokenizer,
/// the optional tokenizer and generation files, and the weights (a single file, or the index
/// and every shard it names; `fetch_index` fetches the index to read it).
fn model_files(
    model: &HubModel,
    files: &[String],
    fetch_index: impl Fn(&str) -> Result<PathBuf, HubError>,
) -> Result<Vec<String>, HubError> {
    let has = |name: &str| files.iter().any(|f| f == name);
    if let Some(missing) = REQUIRED_FILES.iter().find(|f| !has(f)) {
        let ggufs: Vec<&String> = files.iter().filter(|f| f.ends_with(".gguf")).collect();
        let hint = match ggufs.first() {
            Some(first) => format!(
                "; it has GGUF files, name one: {}:{first}{} (GGUF files: {})",
                model.id,
                model
                    .revision
                    .as_ref()
                    .map(|r| format!("@{r}"))
                    .unwrap_or_default(),
                short_list(&ggufs)
            ),
            None => format!(" (it has: {})", short_list(files)),
        };
        return Err(not_a_model(model, format!("no {missing}{hint}")));
    }
    let mut wanted: Vec<String> = REQUIRED_FILES.iter().map(|f| f.to_string()).collect();
    wanted.extend(
        OPTIONAL_FILES
            .iter()
            .filter(|f| has(f))
            .map(|f| f.to_string()),
    );
    wanted.extend(
        files
            .iter()
            .filter(|f| f.starts_with(EXTRA_TEMPLATES))
            .cloned(),
    );
    if has(INDEX_FILE) {
        wanted.push(INDEX_FILE.to_string());
        wanted.extend(shard_names(&fetch_index(INDEX_FILE)?)?);
    } else if has(SINGLE_FILE) {
        wanted.push(SINGLE_FILE.to_string());
    } else {
        let others: Vec<&String> = files
            .iter()
            .filter(|f| f.ends_with(".bin") || f.ends_with(".pt") || f.ends_with(".gguf"))
            .collect();
        return Err(not_a_model(
            model,
            format!("no {SINGLE_FILE} or {INDEX_FILE} (weights found: {}); only safetensors checkpoints load", short_list(&others)),
        ));
    }
    Ok(wanted)
}

/// The shard files a safetensors index names, in order, each once.
fn shard_names(index: &Path) -> Result<Vec<String>, HubError> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|source| HubError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let parsed: Index = serde_json::from_str(&text).map_err(|source| HubError::Index {
        path: index.to_path_buf(),
        source,
    })?;
    let shards: std::collections::BTreeSet<String> = parsed.weight_map.into_values().collect();
    Ok(shards.into_iter().collect())
}

/// Offline: the commit `refs/REVISION` names (or the revision itself when it is a commit),
/// and the files of that snapshot.
fn resolve_offline(model: &HubModel, repo_dir: &Path) -> Result<Resolved, HubError> {
    let revision = model.revision();
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        let ref_file = repo_dir.join("refs").join(revision);
        std::fs::read_to_string(&ref_file)
            .map_err(|_| HubError::NotCached {
                what: format!("revision {revision} of repo {}", model.id),
                path: ref_file.clone(),
            })?
            .trim()
            .to_string()
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    let cached = |file: &str| -> Result<PathBuf, HubError> {
        let path = snapshot.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(HubError::NotCached {
                what: format!("{file} of repo {} (revision {revision})", model.id),
                path,
            })
        }
    };
    let path = match &model.file {
        Some(file) => cached(file)?,
        None => {
            for file in REQUIRED_FILES {
                cached(file)?;
            }
            if snapshot.join(INDEX_FILE).is_file() {
                for shard in shard_names(&snapshot.join(INDEX_FILE))? {
                    cached(&shard)?;
                }
            } else {
                cached(SINGLE_FILE)?;
            }
            snapshot
        }
    };
    Ok(Resolved { path, commit })
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// Points `refs/REVISION` at `commit` (as `huggingface_hub` does), written atomically; drops
/// the `refs/COMMIT` file hf-hub writes for a download by commit, which Python never has.
fn record_ref(repo_dir: &Path, revision: &str, commit: &str) -> Result<(), HubError> {
    let refs = repo_dir.join("refs");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HubError::Io { path, source }
    };
    if revision != commit {
        let by_commit = refs.join(commit);
        if by_commit.is_file() {
            std::fs::remove_file(&by_commit).map_err(io(&by_commit))?;
        }
    }
    if is_commit(revision) {
        return Ok(());
    }
    let target = refs.join(revision);
    let parent = target.parent().unwrap_or(&refs);
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".{}.{}.tmp", commit, std::process::id()));
    std::fs::write(&tmp, commit).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &target).map_err(io(&target))
}

fn not_a_model(model: &HubModel, reason: String) -> HubError {
    HubError::NotAModel {
        repo: model.id.clone(),
        revision: model.revision().to_string(),
        reason,
    }
}

/// An hf-hub error as a [`HubError`]; `what` names what a 404 means.
fn http_error(error: ApiError, url: &str, model: &HubModel, what: impl Fn() -> String) -> HubError {
    let ApiError::RequestError(request) = error else {
        return HubError::Http {
            url: url.to_string(),
            status: 0,
            message: format!("unexpected answer: {error} (is {url} a Hugging Face Hub?)"),
        };
    };
    match *request {
        ureq::Error::Status(status, response) => {
            let code = response.header("X-Error-Code").map(str::to_string);
            let message: String = response
                .into_string()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            match status {
                404 => HubError::NotFound {
                    what: match code.as_deref() {
                        Some("RepoNotFound") => format!("repo {}", model.id),
                        Some("RevisionNotFound") => {
                            format!("revision {} of repo {}", model.revision(), model.id)
                        }
                        _ => what(),
                    },
                    url: url.to_string(),
                    code: code.map(|c| format!(", {c}")).unwrap_or_default(),
                },
                401 | 403 => HubError::Unauthorized {
                    repo: model.id.clone(),
                    url: url.to_string(),
                    status,
                    hint: if status == 401 {
                        "set HF_TOKEN to a token with access (or run `huggingface-cli login`)"
                            .into()
                    } else {
                        "the token has no access: accept the repo's terms on its Hub page".into()
                    },
                },
                _ => HubError::Http {
                    url: url.to_string(),
                    status,
                    message,
                },
            }
        }
        ureq::Error::Transport(transport) => HubError::Unreachable {
            url: url.to_string(),
            message: transport.to_string(),
        },
    }
}

fn short_list<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 8;
    if names.is_empty() {
        return "nothing".into();
    }
    let mut list: Vec<&str> = names.iter().take(SHOWN).map(AsRef::as_ref).collect();
    let more = names.len().saturating_sub(SHOWN);
    let more_text = format!("{more} more");
    if more > 0 {
        list.push(&more_text);
    }
    list.join(", ")
}

#[cfg(test)]
mod tests;
