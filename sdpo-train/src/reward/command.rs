//! External-command rewards: any program (a unit-test runner, a compiler, a
//! proof checker) scores a completion and explains what went wrong.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;
use wait_timeout::ChildExt;

use super::{Reward, RewardBuildError, RewardError, RewardInput, RewardOutput};
use crate::dataset::Prompt;

/// Largest stdout accepted (one JSON object should be far smaller).
const MAX_STDOUT: usize = 1 << 20;
/// Bytes of stderr kept (the end of it); the error message quotes the last
/// [`STDERR_QUOTE`] characters.
const MAX_STDERR: usize = 64 << 10;
/// Characters of stderr quoted in errors.
const STDERR_QUOTE: usize = 2000;
/// Characters of a bad stdout quoted in errors.
const STDOUT_QUOTE: usize = 500;

/// Runs an external program per completion. Thread-safe: each call starts
/// its own process.
///
/// # Protocol
/// The program receives ONE JSON object on stdin, followed by a newline:
///
/// ```text
/// {"prompt": "…" | [{"role": "…", "content": "…"}, …],
///  "completion": "…", "completion_ids": [1, 2, …], "row": {"answer": …, …}}
/// ```
///
/// (`prompt` as in the dataset, `row` the dataset row's other fields) and
/// writes ONE JSON object on stdout, nothing else:
///
/// ```text
/// {"score": 0.0, "feedback": "test_parse failed: expected 3, got 2"}
/// ```
///
/// `feedback` may be `null` or left out; other keys are an error. The program
/// must exit with status 0: a failed check is a low score with feedback, a
/// non-zero exit is a crash of the verifier (a sample failure whose message
/// quotes the end of stderr). After `timeout` the program is killed — on Unix
/// with every process of its process group, so test runners' children go too —
/// and the sample fails with "timed out after …". A background process that
/// keeps stdout or stderr open past the timeout counts as a timeout as well.
///
/// A minimal verifier in Python:
///
/// ```text
/// import json, sys
/// task = json.load(sys.stdin)
/// ok = task["completion"].strip() == str(task["row"]["answer"])
/// print(json.dumps({"score": 1.0 if ok else 0.0,
///                   "feedback": None if ok else "the answer is not correct"}))
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandReward {
    program: PathBuf,
    args: Vec<String>,
    working_dir: Option<PathBuf>,
    env: BTreeMap<String, String>,
    timeout: Duration,
}

/// Why an external command gave no score.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The program could not be started.
    #[error("cannot start `{}`{}: {source}", program.display(), in_dir(working_dir.as_deref()))]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Its working directory, if set.
        working_dir: Option<PathBuf>,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("waiting for `{}` failed: {source}", program.display())]
    Wait {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The input could not be encoded as JSON.
    #[error("cannot encode the input of `{}` as JSON: {source}", program.display())]
    Encode {
        /// The program.
        program: PathBuf,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// The program ran past its timeout and was killed.
    #[error("`{}` timed out after {timeout:?} and was killed", program.display())]
    Timeout {
        /// The program.
        program: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// The program exited with a non-zero status or was killed by a signal.
    #[error("`{}` failed ({status}); stderr: {stderr}", program.display())]
    Failed {
        /// The program.
        program: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its stderr (empty if none).
        stderr: String,
    },
    /// The program's stdout is not one `{"score": number, "feedback": string|null}` object.
    #[error(
        "`{}` should print one JSON object {{\"score\": number, \"feedback\": string|null}}: \
         {reason}; stdout: {stdout:?}",
        program.display()
    )]
    BadOutput {
        /// The program.
        program: PathBuf,
        /// What is wrong.
        reason: String,
        /// The beginning of its stdout.
        stdout: String,
    },
}

fn in_dir(dir: Option<&Path>) -> String {
    dir.map(|d| format!(" in `{}`", d.display()))
        .unwrap_or_default()
}

/// The JSON object written on the program's stdin.
#[derive(Serialize)]
struct CommandInput<'a> {
    prompt: &'a Prompt,
    completion: &'a str,
    completion_ids: &'a [u32],
    row: &'a Map<String, Value>,
}

/// The JSON object read from the program's stdout.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandOutput {
    score: f64,
    #[serde(default)]
    feedback: Option<String>,
}

impl CommandReward {
    /// Runs `program` (found on `PATH` when it has no `/`) with a timeout.
    ///
    /// # Errors
    /// [`RewardBuildError::Invalid`] for an empty program or a zero timeout.
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Result<Self, RewardBuildError> {
        let program = program.into();
        let invalid = |field, value: String, reason| RewardBuildError::Invalid {
            reward: "command".into(),
            field,
            value,
            reason,
        };
        if program.as_os_str().is_empty() {
            return Err(invalid("program", "\"\"".into(), "name a program to run"));
        }
        if timeout.is_zero() {
            return Err(invalid(
                "timeout",
                format!("{timeout:?}"),
                "the timeout must be positive",
            ));
        }
        Ok(Self {
            program,
            args: Vec::new(),
            working_dir: None,
            env: BTreeMap::new(),
            timeout,
        })
    }

    /// Appends command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the program in `dir` (default: the trainer's working directory).
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Sets an environment variable for the program (on top of the trainer's).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs the program on one completion.
    ///
    /// # Errors
    /// [`CommandError`]: it could not start, timed out, exited non-zero or
    /// printed something other than one score object.
    pub fn run(&self, input: &RewardInput<'_>) -> Result<RewardOutput, CommandError> {
        let mut payload = serde_json::to_vec(&CommandInput {
            prompt: input.prompt,
            completion: input.completion,
            completion_ids: input.completion_ids,
            row: input.row,
        })
        .map_err(|source| CommandError::Encode {
            program: self.program.clone(),
            source,
        })?;
        payload.push(b'\n');

        let start = Instant::now();
        let mut child = self.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            // A program that exits without reading its input closes the pipe;
            // that is its business, so write errors are ignored.
            thread::spawn(move || {
                let _ = stdin.write_all(&payload);
            });
        }
        let stdout = capture(child.stdout.take(), MAX_STDOUT, Keep::Head);
        let stderr = capture(child.stderr.take(), MAX_STDERR, Keep::Tail);

        let status = match child.wait_timeout(self.timeout) {
            Ok(Some(status)) => status,
            Ok(None) => {
                kill_process_group(&mut child);
                return Err(self.timed_out());
            }
            Err(source) => {
                kill_process_group(&mut child);
                return Err(CommandError::Wait {
                    program: self.program.clone(),
                    source,
                });
            }
        };
        // The pipes close when the program exits, unless a process it left
        // running holds them; wait for that no longer than the timeout.
        let deadline = start + self.timeout;
        let (Some(stdout), Some(stderr)) = (receive(&stdout, deadline), receive(&stderr, deadline))
        else {
            kill_group_of(&child);
            return Err(self.timed_out());
        };

        if !status.success() {
            return Err(CommandError::Failed {
                program: self.program.clone(),
                status,
                stderr: quote_tail(&stderr.bytes, STDERR_QUOTE),
            });
        }
        self.parse(&stdout)
    }

    fn spawn(&self) -> Result<Child, CommandError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group, so a timeout kills its children too.
            command.process_group(0);
        }
        command.spawn().map_err(|source| CommandError::Spawn {
            program: self.program.clone(),
            working_dir: self.working_dir.clone(),
            source,
        })
    }

    fn parse(&self, stdout: &Captured) -> Result<RewardOutput, CommandError> {
        let bad = |reason: String| CommandError::BadOutput {
            program: self.program.clone(),
            reason,
            stdout: quote_head(&stdout.bytes, STDOUT_QUOTE),
        };
        if stdout.total > MAX_STDOUT {
            return Err(bad(format!(
                "stdout is {} bytes, more than the {MAX_STDOUT} accepted",
                stdout.total
            )));
        }
        let output: CommandOutput =
            serde_json::from_slice(&stdout.bytes).map_err(|e| bad(e.to_string()))?;
        Ok(RewardOutput {
            score: output.score,
            feedback: output.feedback,
        }
        .normalized())
    }

    fn timed_out(&self) -> CommandError {
        CommandError::Timeout {
            program: self.program.clone(),
            timeout: self.timeout,
        }
    }
}

impl Reward for CommandReward {
    fn name(&self) -> &str {
        "command"
    }

    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
        Ok(self.run(input)?)
    }
}

/// Which part of a stream to keep when it is longer than the limit.
#[derive(Clone, Copy)]
enum Keep {
    Head,
    Tail,
}

/// What a reader thread collected.
struct Captured {
    /// The kept bytes (at most the limit).
    bytes: Vec<u8>,
    /// All bytes read.
    total: usize,
}

/// Reads a pipe to its end on a thread (so the program never blocks on a full
/// pipe), keeping at most `limit` bytes.
fn capture<R: Read + Send + 'static>(
    pipe: Option<R>,
    limit: usize,
    keep: Keep,
) -> Receiver<Captured> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut captured = Captured {
            bytes: Vec::new(),
            total: 0,
        };
        if let Some(mut pipe) = pipe {
            let mut buf = [0u8; 8192];
            loop {
                let n = match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                captured.total += n;
                match keep {
                    Keep::Head => {
                        let room = limit.saturating_sub(captured.bytes.len());
                        captured.bytes.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Keep::Tail => {
                        captured.bytes.extend_from_slice(&buf[..n]);
                        if captured.bytes.len() > 2 * limit {
                            captured.bytes.drain(..captured.bytes.len() - limit);
                        }
                    }
                }
            }
        }
        if let Keep::Tail = keep {
            let excess = captured.bytes.len().saturating_sub(limit);
            captured.bytes.drain(..excess);
        }
        let _ = tx.send(captured);
    });
    rx
}

fn receive(rx: &Receiver<Captured>, deadline: Instant) -> Option<Captured> {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Kills the program and its process group, then reaps it. The program is
/// not yet reaped, so its process-group id cannot belong to anyone else.
fn kill_process_group(child: &mut Child) {
    kill_group_of(child);
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGKILL to the child's process group (Unix; a no-op elsewhere).
///
/// The standard library cannot signal a process group, so this runs the
/// POSIX `kill` utility; `child.kill()` still ends the program itself if
/// `kill` is missing.
fn kill_group_of(child: &Child) {
    #[cfg(unix)]
    {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// The first `chars` characters of `bytes` (lossy UTF-8), with `…` if cut.
fn quote_head(bytes: &[u8], chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The last `chars` characters of `bytes` (lossy UTF-8), with `…` if cut.
fn quote_tail(bytes: &[u8], chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let count = text.chars().count();
    if count <= chars {
        return text.to_string();
    }
    let cut = text.char_indices().nth(count - chars).map_or(0, |(i, _)| i);
    format!("…{}", &text[cut..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_cut_on_char_boundaries() {
        assert_eq!(quote_head("  héllo ".as_bytes(), 2), "hé…");
        assert_eq!(quote_head(b"ab", 2), "ab");
        assert_eq!(quote_tail("éa\nbé\n".as_bytes(), 2), "…bé");
        assert_eq!(quote_tail(b"ab", 5), "ab");
    }

    #[test]
    fn construction_checks_program_and_timeout() {
        assert!(CommandReward::new("", Duration::from_secs(1)).is_err());
        let err = CommandReward::new("sh", Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "reward `command`: `timeout` = 0ns is invalid: the timeout must be positive"
        );
        let r = CommandReward::new("sh", Duration::from_millis(1500)).unwrap();
        assert_eq!(r.timeout(), Duration::from_millis(1500));
    }

    #[test]
    fn tail_capture_keeps_the_end() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let rx = capture(Some(std::io::Cursor::new(data.clone())), 1000, Keep::Tail);
        let c = rx.recv().unwrap();
        assert_eq!(c.total, 50_000);
        assert_eq!(c.bytes, data[49_000..]);
        let rx = capture(Some(std::io::Cursor::new(data.clone())), 1000, Keep::Head);
        let c = rx.recv().unwrap();
        assert_eq!(c.bytes, data[..1000]);
    }
}
