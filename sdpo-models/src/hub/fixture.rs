//! [`FixtureHub`]: a local HTTP server answering the Hub routes [`super::resolve`] uses, from
//! folders on disk, for tests without network (feature `hub-fixture`).
//!
//! Routes: `GET /api/models/ORG/NAME/revision/REV` (the commit and the file list),
//! `GET /api/models/ORG/NAME/tree/REV` (the file tree) and
//! `GET`/`HEAD /ORG/NAME/resolve/REV/FILE` (the file, with `Range`, `ETag`, `X-Repo-Commit`,
//! `Content-Range` as the Hub sends them; 404 with `X-Error-Code` as the Hub does), enough
//! for hf-hub and for Python's `huggingface_hub` (`scripts/check_hub_cache_python.sh`). It can
//! require a token for a repo and break the next downloads of a file midway (half the bytes,
//! then the connection closes), which is why it is a small server over `std::net` rather than
//! a general HTTP crate: the test needs control of the socket.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

/// One revision of a repo: its commit and files (relative name → contents).
#[derive(Debug, Clone)]
struct Revision {
    commit: String,
    files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    /// Repo id → revision name → revision.
    repos: BTreeMap<String, BTreeMap<String, Revision>>,
    /// Repo id → the token it requires.
    tokens: BTreeMap<String, String>,
    /// File name → how many more downloads of it break midway.
    breaks: BTreeMap<String, usize>,
    /// File name → completed or broken body downloads (not the 1-byte metadata probes).
    downloads: BTreeMap<String, usize>,
    /// Every request path, in order.
    log: Vec<String>,
}

/// A local stand-in for the Hugging Face Hub (see the [module docs](self)); it serves until
/// dropped.
#[derive(Debug)]
pub struct FixtureHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FixtureHub {
    /// Starts the server on a free local port.
    ///
    /// # Errors
    /// The error of binding the port.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::downgrade(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                // The server stops accepting once its FixtureHub is dropped.
                let Some(state) = shared.upgrade() else { break };
                if let Ok(stream) = stream {
                    std::thread::spawn(move || serve(stream, &state));
                }
            }
        });
        Ok(Self { addr, state })
    }

    /// The `HF_ENDPOINT` to use: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves the files of folder `dir` (recursively) as repo `id` at `revision`; its commit
    /// is a hash of the id, revision and contents, and it is served under that commit too.
    ///
    /// # Errors
    /// The error of reading the folder.
    pub fn add_repo(&self, id: &str, revision: &str, dir: &Path) -> std::io::Result<String> {
        let mut files = BTreeMap::new();
        collect(dir, dir, &mut files)?;
        let mut hash = Sha256::new();
        hash.update(id.as_bytes());
        hash.update(revision.as_bytes());
        for (name, bytes) in &files {
            hash.update(name.as_bytes());
            hash.update(bytes);
        }
        let commit = hex(&hash.finalize())[..40].to_string();
        let rev = Revision {
            commit: commit.clone(),
            files,
        };
        let mut state = self.lock();
        let repo = state.repos.entry(id.to_string()).or_default();
        repo.insert(revision.to_string(), rev.clone());
        repo.insert(commit.clone(), rev);
        Ok(commit)
    }

    /// Answers requests for repo `id` only with `Authorization: Bearer TOKEN` (else 401).
    pub fn require_token(&self, id: &str, token: &str) {
        self.lock().tokens.insert(id.to_string(), token.to_string());
    }

    /// The next `times` downloads of `file` (any repo) send half the bytes and close.
    pub fn break_downloads(&self, file: &str, times: usize) {
        self.lock().breaks.insert(file.to_string(), times);
    }

    /// Body downloads of `file` so far (broken ones included, 1-byte probes not).
    pub fn downloads(&self, file: &str) -> usize {
        self.lock().downloads.get(file).copied().unwrap_or(0)
    }

    /// Every request path so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path: PathBuf = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else {
            let name = path
                .strip_prefix(root)
                .map_err(std::io::Error::other)?
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(name, std::fs::read(&path)?);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A response: status, extra headers, body; `cut` sends only the first half of the body.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    cut: bool,
}

impl Answer {
    fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            headers: vec![("X-Error-Code", code.to_string())],
            body: format!("{{\"error\": \"{message}\"}}").into_bytes(),
            cut: false,
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
        }
    }
    let mut words = request_line.split_whitespace();
    let head_only = words.next() == Some("HEAD");
    let path = words.next().unwrap_or("/").to_string();
    let answer = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.log.push(path.clone());
        route(&mut state, &path, &headers, head_only)
    };
    let _ = respond(stream, answer, head_only);
}

/// Writes the answer (headers only for a `HEAD` request) and closes the connection.
fn respond(mut stream: TcpStream, answer: Answer, head_only: bool) -> std::io::Result<()> {
    let reason = match answer.status {
        200 => "OK",
        206 => "Partial Content",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let sent = if head_only {
        0
    } else if answer.cut {
        answer.body.len() / 2
    } else {
        answer.body.len()
    };
    stream.write_all(&answer.body[..sent])?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

fn route(
    state: &mut State,
    path: &str,
    headers: &BTreeMap<String, String>,
    head_only: bool,
) -> Answer {
    let path = path.replace("%2F", "/");
    let path = path.split('?').next().unwrap_or_default();
    if let Some((id, revision)) = path
        .strip_prefix("/api/models/")
        .and_then(|rest| rest.split_once("/tree/"))
    {
        // The file tree (Python's snapshot_download lists a repo this way), one page.
        return match find(state, id, revision, headers) {
            Err(answer) => answer,
            Ok(rev) => {
                let tree: Vec<serde_json::Value> = rev
                    .files
                    .iter()
                    .map(|(f, bytes)| {
                        let oid = hex(&Sha256::digest(bytes));
                        serde_json::json!({ "type": "file", "path": f, "size": bytes.len(), "oid": oid })
                    })
                    .collect();
                Answer {
                    status: 200,
                    headers: vec![("Content-Type", "application/json".into())],
                    body: serde_json::Value::from(tree).to_string().into_bytes(),
                    cut: false,
                }
            }
        };
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((id, revision)) = rest.split_once("/revision/") else {
            return Answer::error(404, "EntryNotFound", "no such route");
        };
        return match find(state, id, revision, headers) {
            Err(answer) => answer,
            Ok(rev) => {
                let siblings: Vec<serde_json::Value> = rev
                    .files
                    .keys()
                    .map(|f| serde_json::json!({ "rfilename": f }))
                    .collect();
                let body = serde_json::json!({ "id": id, "sha": rev.commit, "siblings": siblings });
                Answer {
                    status: 200,
                    headers: vec![("Content-Type", "application/json".into())],
                    body: body.to_string().into_bytes(),
                    cut: false,
                }
            }
        };
    }
    // /ORG/NAME/resolve/REV/FILE (the id may lack an organization).
    let Some((id, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return Answer::error(404, "EntryNotFound", "no such route");
    };
    let (revision, file) = rest.split_once('/').unwrap_or((rest, ""));
    let rev = match find(state, id, revision, headers) {
        Err(answer) => return answer,
        Ok(rev) => rev,
    };
    let Some(bytes) = rev.files.get(file) else {
        return Answer::error(404, "EntryNotFound", "Entry not found");
    };
    let total = bytes.len();
    let (start, end) = byte_range(headers.get("range"), total);
    let body = match bytes.get(start..=end) {
        Some(body) => body.to_vec(),
        None if total == 0 => Vec::new(),
        None => return Answer::error(416, "RangeNotSatisfiable", "bad range"),
    };
    let commit = rev.commit.clone();
    let etag = hex(&Sha256::digest(bytes));
    let probe = head_only || (end == start && start == 0 && headers.contains_key("range"));
    let mut cut = false;
    if !probe {
        *state.downloads.entry(file.to_string()).or_default() += 1;
        if let Some(left) = state.breaks.get_mut(file).filter(|n| **n > 0) {
            *left -= 1;
            cut = true;
        }
    }
    Answer {
        status: if headers.contains_key("range") {
            206
        } else {
            200
        },
        headers: vec![
            ("ETag", format!("\"{etag}\"")),
            ("X-Repo-Commit", commit),
            ("Content-Range", format!("bytes {start}-{end}/{total}")),
            ("Accept-Ranges", "bytes".into()),
        ],
        body,
        cut,
    }
}

/// The repo's revision, or the 401/404 answer the Hub would give.
fn find<'s>(
    state: &'s State,
    id: &str,
    revision: &str,
    headers: &BTreeMap<String, String>,
) -> Result<&'s Revision, Answer> {
    let Some(repo) = state.repos.get(id) else {
        return Err(Answer::error(404, "RepoNotFound", "Repository not found"));
    };
    if let Some(token) = state.tokens.get(id) {
        if headers.get("authorization") != Some(&format!("Bearer {token}")) {
            return Err(Answer::error(
                401,
                "GatedRepo",
                "Access to this repo is restricted",
            ));
        }
    }
    repo.get(revision)
        .ok_or_else(|| Answer::error(404, "RevisionNotFound", "Invalid rev id"))
}

/// `bytes=A-B` / `bytes=A-` → inclusive (A, B); no header → the whole file.
fn byte_range(header: Option<&String>, total: usize) -> (usize, usize) {
    let last = total.saturating_sub(1);
    let Some(spec) = header.and_then(|h| h.strip_prefix("bytes=")) else {
        return (0, last);
    };
    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
    let start = a.trim().parse().unwrap_or(0);
    let end = b.trim().parse().unwrap_or(last).min(last);
    (start, end)
}
