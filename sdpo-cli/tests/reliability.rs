//! What `sdpo train` guarantees when things go wrong: one run per folder, Ctrl-C and SIGTERM
//! save and say how to resume, `kill -9` at any moment resumes to the same metrics, damaged
//! checkpoints fall back, resume refuses another model or batch, failing rewards are loud, and
//! bad settings are refused before any work.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sdpo"))
}

fn sdpo_in(cwd: &Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the sdpo binary runs")
}

/// A child `sdpo` whose stderr goes to `log` (a pipe nobody reads could fill up).
fn spawn_in(cwd: &Path, args: &[&str], log: &Path) -> Child {
    bin()
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the sdpo binary starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: Output) -> String {
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status.code(),
        text(&out.stdout)
    );
    stderr
}

/// Asserts exit status 1 with an `error:` line and no panic; returns stderr.
fn fails(out: Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Polls `cond` every 20 ms for up to two minutes.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(120), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of our own child and a valid signal number.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

/// Waits for a child that was asked to stop; kills it and fails after two minutes (a signal
/// that was not handled would otherwise leave the test waiting for 100 000 steps).
fn wait_stopped(child: &mut Child) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not stop within two minutes of the signal");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Sends SIGINT once the run has two steps, then checks the clean stop: status 3 and a
/// checkpoint at the last step. Returns the run's stderr and its number of steps.
fn interrupt_after_two_steps(mut child: Child, run: &Path, log: &Path) -> (String, usize) {
    wait_for("two steps", || rows(&run.join("metrics.jsonl")).len() >= 2);
    signal(&child, libc::SIGINT);
    let status = wait_stopped(&mut child);
    let stderr = std::fs::read_to_string(log).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    let done = rows(&run.join("metrics.jsonl")).len();
    assert_eq!(
        latest(run),
        format!("step-{done}"),
        "checkpoint at the stop"
    );
    (stderr, done)
}

fn rows(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `step` of every row of a metrics or evaluation log.
fn steps_in(path: &Path) -> Vec<u64> {
    rows(path)
        .iter()
        .map(|r| r["step"].as_f64().unwrap() as u64)
        .collect()
}

/// A finished smoke run (3 steps) into `run`, with a checkpoint after every step.
fn smoke_checkpointing_every_step(cwd: &Path, run: &Path) {
    ok(sdpo_in(
        cwd,
        &[
            "train",
            "--smoke",
            "--set",
            "train.checkpoint_every=1",
            "--out",
            run.to_str().unwrap(),
        ],
    ));
}

fn latest(run: &Path) -> String {
    std::fs::read_to_string(run.join("checkpoints/latest")).unwrap()
}

/// Every path under `dir` whose name has `needle`.
fn find_names(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(needle) {
            out.push(path.clone());
        }
        if path.is_dir() {
            out.extend(find_names(&path, needle));
        }
    }
    out
}

/// A smoke run that goes on until stopped.
const LONG: [&str; 4] = ["--smoke", "--set", "train.steps=100000", "--out"];

#[test]
fn a_second_run_into_a_held_folder_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let log = tmp.path().join("a.log");
    let mut a = spawn_in(
        tmp.path(),
        &[&["train"][..], &LONG, &[run_s]].concat(),
        &log,
    );
    wait_for("the first run holds the folder", || {
        std::fs::read_to_string(run.join(".lock")).is_ok_and(|t| t.contains("pid"))
    });
    let err = fails(sdpo_in(tmp.path(), &["train", "--smoke", "--out", run_s]));
    assert!(err.contains("in use by another `sdpo train`"), "{err}");
    assert!(err.contains(&format!("pid {}", a.id())), "{err}");
    wait_for("the first run writes its config", || {
        run.join("config.ron").is_file()
    });
    let err = fails(sdpo_in(tmp.path(), &["train", "--resume", run_s]));
    assert!(err.contains("in use by another"), "{err}");
    wait_for("a step", || !rows(&run.join("metrics.jsonl")).is_empty());
    signal(&a, libc::SIGTERM);
    let status = wait_stopped(&mut a);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    // Nothing mixed: one metrics row per step, each step once, up to the last checkpoint.
    let steps: Vec<u64> = steps_in(&run.join("metrics.jsonl"));
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>());
    assert_eq!(latest(&run), format!("step-{}", steps.len()));
}

#[test]
fn runs_started_together_without_out_get_their_own_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let children: Vec<Child> = (0..2)
        .map(|i| {
            spawn_in(
                tmp.path(),
                &["train", "--smoke"],
                &tmp.path().join(format!("{i}.log")),
            )
        })
        .collect();
    for (i, mut c) in children.into_iter().enumerate() {
        let status = c.wait().unwrap();
        let log = std::fs::read_to_string(tmp.path().join(format!("{i}.log"))).unwrap();
        assert!(status.success(), "{log}");
    }
    for n in [1, 2] {
        let run = tmp.path().join(format!("runs/run-{n}"));
        assert!(run.join("config.ron").is_file(), "{}", run.display());
        assert_eq!(rows(&run.join("metrics.jsonl")).len(), 3);
    }
    assert!(!tmp.path().join("runs/run-3").exists());
}

#[test]
fn ctrl_c_finishes_the_step_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let log = tmp.path().join("train.log");
    let args = [
        &["train"][..],
        &LONG,
        &[run_s, "--set", "train.checkpoint_every=0"],
    ]
    .concat();
    let child = spawn_in(tmp.path(), &args, &log);
    let (stderr, done) = interrupt_after_two_steps(child, &run, &log);
    assert!(
        stderr.contains(&format!("interrupted after step {done}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("sdpo train --resume {run_s}")),
        "{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["runs"][0]["steps"], done);

    let more = (done + 2).to_string();
    ok(sdpo_in(
        tmp.path(),
        &["train", "--resume", run_s, "--steps", &more],
    ));
    let steps: Vec<u64> = steps_in(&run.join("metrics.jsonl"));
    assert_eq!(steps, (1..=done as u64 + 2).collect::<Vec<_>>());
}

/// A shell script's background job (`sdpo train … &`) starts with SIGINT ignored; `kill -INT`
/// and `kill -TERM` must still stop it cleanly (the handler replaces an inherited disposition).
#[test]
fn a_background_run_with_sigint_ignored_still_stops_cleanly() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let log = tmp.path().join("train.log");
    let mut cmd = bin();
    cmd.args([&["train"][..], &LONG, &[run.to_str().unwrap()]].concat())
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: signal(2) is async-signal-safe; the child only sets a disposition before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("the sdpo binary starts");
    interrupt_after_two_steps(child, &run, &log);
}

#[test]
fn a_signal_before_training_ends_the_process_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let log = tmp.path().join("train.log");
    let mut child = spawn_in(
        tmp.path(),
        &["train", "--smoke", "--out", run.to_str().unwrap()],
        &log,
    );
    wait_for("the run holds its folder", || {
        std::fs::read_to_string(run.join(".lock")).is_ok_and(|t| t.contains("pid"))
    });
    signal(&child, libc::SIGINT);
    let status = wait_stopped(&mut child);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("nothing to save"), "{stderr}");
}

/// Metrics rows without their timings and core use (which differ between runs), one line each.
fn without_times(rows: Vec<serde_json::Value>) -> Vec<String> {
    rows.into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().retain(|k, _| {
                !["time/", "cores/", "throughput/"]
                    .iter()
                    .any(|p| k.starts_with(p))
            });
            r.to_string()
        })
        .collect()
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_the_same_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = [
        "--smoke",
        "--set",
        "train.steps=8",
        "--set",
        "train.checkpoint_every=1",
        "--set",
        "eval.every=3",
    ];
    let reference = tmp.path().join("reference");
    ok(sdpo_in(
        tmp.path(),
        &[
            &["train"][..],
            &settings,
            &["--out", reference.to_str().unwrap()],
        ]
        .concat(),
    ));

    let run = tmp.path().join("killed");
    let run_s = run.to_str().unwrap();
    let fresh = [&["train"][..], &settings, &["--out", run_s]].concat();
    let resume = ["train", "--resume", run_s];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let log = tmp.path().join("killed.log");
    let finished = |run: &Path| run.join("summary.json").is_file();
    let mut interrupted = 0;
    for _ in 0..5 {
        let args: &[&str] = if run.join("config.ron").is_file() {
            &resume
        } else {
            &fresh
        };
        let mut child = spawn_in(tmp.path(), args, &log);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..4000)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            interrupted += 1;
        }
        child.wait().unwrap();
        if finished(&run) {
            break;
        }
    }
    if !finished(&run) {
        let args: &[&str] = if run.join("config.ron").is_file() {
            &resume
        } else {
            &fresh
        };
        ok(sdpo_in(tmp.path(), args));
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} kills hit a running process"
    );
    let (got, want) = (
        without_times(rows(&run.join("metrics.jsonl"))),
        without_times(rows(&reference.join("metrics.jsonl"))),
    );
    assert_eq!(got.len(), want.len(), "steps logged");
    for (step, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g,
            w,
            "step {}: metrics differ from the uninterrupted run",
            step + 1
        );
    }
    assert_eq!(
        rows(&run.join("eval.jsonl")),
        rows(&reference.join("eval.jsonl"))
    );
    assert!(find_names(&run, ".tmp-").is_empty(), "temporaries left");
    assert!(find_names(&run, ".old-").is_empty(), "temporaries left");
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    smoke_checkpointing_every_step(tmp.path(), &run);
    // Same size, other bytes.
    let model = run.join("checkpoints/step-3/model.mpk");
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&model, bytes).unwrap();
    let stderr = ok(sdpo_in(
        tmp.path(),
        &["train", "--resume", run_s, "--steps", "4"],
    ));
    assert!(
        stderr.contains("step-3/model.mpk") && stderr.contains("SHA-256"),
        "{stderr}"
    );
    assert!(stderr.contains("step-2 instead"), "{stderr}");
    let steps: Vec<u64> = steps_in(&run.join("metrics.jsonl"));
    assert_eq!(steps, [1, 2, 3, 4], "step 3 re-run once, not duplicated");
}

#[test]
fn a_folder_without_checkpoints_restarts_from_step_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    ok(sdpo_in(tmp.path(), &["train", "--smoke", "--out", run_s]));
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let stderr = ok(sdpo_in(tmp.path(), &["train", "--resume", run_s]));
    assert!(
        stderr.contains("has no checkpoint: starting the run again from step 0"),
        "{stderr}"
    );
    assert_eq!(rows(&run.join("metrics.jsonl")).len(), 3);
    assert_eq!(latest(&run), "step-3");
}

#[test]
fn resume_refuses_another_model_or_batch_and_keeps_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    ok(sdpo_in(tmp.path(), &["train", "--smoke", "--out", run_s]));
    let config = std::fs::read(run.join("config.ron")).unwrap();
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sdpo-models/src/gguf/testdata/tiny_llama.f32.gguf");
    let model = format!("model=Gguf({:?})", gguf.to_str().unwrap());
    let err = fails(sdpo_in(
        tmp.path(),
        &["train", "--resume", run_s, "--steps", "5", "--set", &model],
    ));
    assert!(err.contains("model: was Builtin, now Gguf"), "{err}");
    let err = fails(sdpo_in(
        tmp.path(),
        &[
            "train",
            "--resume",
            run_s,
            "--steps",
            "5",
            "--set",
            "train.prompts_per_step=3",
            "--set",
            "task=Some(\"addition\")",
        ],
    ));
    assert!(
        err.contains("train.prompts_per_step: was 2, now 3") && err.contains("task:"),
        "{err}"
    );
    // A bad value is refused before anything is written.
    let err = fails(sdpo_in(
        tmp.path(),
        &[
            "train",
            "--resume",
            run_s,
            "--set",
            "train.sampling.temperature=-1.0",
        ],
    ));
    assert!(err.contains("`train.sampling.temperature`"), "{err}");
    assert_eq!(std::fs::read(run.join("config.ron")).unwrap(), config);
}

#[test]
fn bad_settings_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    for (set, expected) in [
        (
            "train.sampling.temperature=-1.0",
            "`train.sampling.temperature`",
        ),
        ("train.sampling.top_p=0.0", "`train.sampling.top_p`"),
        ("train.max_prompt_len=Some(1024)", "512 positions"),
        ("eval.held_out=100000", "`eval.held_out`"),
        ("train.sdpo.alpha=2.0", "`train.sdpo.alpha`"),
    ] {
        let t0 = Instant::now();
        let err = fails(sdpo_in(tmp.path(), &["train", "--set", set]));
        assert!(err.contains(expected), "{set}: {err}");
        assert!(!err.contains("warm start"), "{set}: {err}");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{set}: slow refusal"
        );
    }
    assert!(
        !tmp.path().join("runs").exists(),
        "no folder for a refused run"
    );
    let deep = format!("train.steps={}{}", "[".repeat(30_000), "]".repeat(30_000));
    let err = fails(sdpo_in(tmp.path(), &["train", "--set", &deep]));
    assert!(err.contains("nested deeper than 64"), "{err}");
}

#[test]
fn a_reward_failing_on_every_sample_stops_the_run_loudly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.jsonl");
    let lines: String = (0..6)
        .map(|i| format!("{{\"prompt\": \"{i}+1=\", \"answer\": \"{}\"}}\n", i + 1))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let config = tmp.path().join("run.ron");
    std::fs::write(
        &config,
        format!(
            r#"(
    dataset: {data:?},
    rewards: [(reward: Command(program: "/nonexistent/verifier"))],
    train: (steps: 10, num_generations: 2, prompts_per_step: 2, sampling: (max_new_tokens: 4)),
    eval: (held_out: 0),
)"#
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    let err = fails(sdpo_in(
        tmp.path(),
        &[
            "train",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains("reward `command` failed on 4 of 4 samples this step"),
        "{err}"
    );
    assert!(
        err.contains("cannot start `/nonexistent/verifier`"),
        "{err}"
    );
    assert!(
        err.contains("reward `command` failed on every sample for 3 steps in a row"),
        "{err}"
    );
    assert_eq!(
        rows(&run.join("metrics.jsonl")).len(),
        2,
        "stopped before a third update"
    );
}

/// What `kill -9` leaves between writing a step's metrics and finishing its checkpoint: a
/// metrics row and an evaluation past the newest checkpoint and a half-written checkpoint
/// folder. Resuming removes the folder and the rows, and re-runs the step once.
#[test]
fn leftovers_of_a_killed_run_are_cleaned_and_not_duplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    smoke_checkpointing_every_step(tmp.path(), &run);
    let metrics = run.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text.push_str("{\"step\": 4, \"reward/mean\": 0.5}\n{\"step\": 5, \"rew");
    std::fs::write(&metrics, text).unwrap();
    let evals = run.join("eval.jsonl");
    let mut text = std::fs::read_to_string(&evals).unwrap();
    text.push_str("{\"step\": 4, \"held_out_success\": 0.25}\n");
    std::fs::write(&evals, text).unwrap();
    let partial = run.join("checkpoints/step-4.tmp-99999");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("model.mpk"), b"half").unwrap();
    std::fs::write(run.join("config.ron.tmp-99999"), b"(").unwrap();

    let stderr = ok(sdpo_in(
        tmp.path(),
        &["train", "--resume", run_s, "--steps", "4"],
    ));
    assert!(stderr.contains("step-4.tmp-99999"), "{stderr}");
    let steps = steps_in(&metrics);
    assert_eq!(steps, [1, 2, 3, 4]);
    let eval_steps = steps_in(&evals);
    assert_eq!(
        eval_steps.iter().filter(|&&s| s == 4).count(),
        1,
        "{eval_steps:?}"
    );
    assert!(find_names(&run, ".tmp-").is_empty());
    assert_eq!(latest(&run), "step-4");
}
