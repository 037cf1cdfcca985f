//! Rewards end to end: external commands (the scripts in `tests/data/`, run
//! with `sh`), failures that never stop evaluation, weights and feedback.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use sdpo_train::dataset::Prompt;
use sdpo_train::reward::{
    reward_fn, CommandError, CommandReward, RewardConfig, RewardError, RewardInput, RewardOutput,
    RewardSummary, Rewards,
};

fn script(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// `sh tests/data/NAME ARGS…` with a timeout.
fn sh(name: &str, args: &[&str], timeout: Duration) -> CommandReward {
    CommandReward::new("sh", timeout)
        .unwrap()
        .args([script(name)])
        .args(args.iter().copied())
}

fn row(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

#[test]
fn command_scores_and_explains() {
    let verifier = sh("verify_42.sh", &[], Duration::from_secs(10));
    let prompt = Prompt::from("What is 6 * 7?");
    let fields = row(json!({"answer": "forty-two"}));
    let right = verifier
        .run(&RewardInput::new(&prompt, "6 * 7 = 42", &[1, 2], &fields))
        .unwrap();
    assert_eq!(right, RewardOutput::new(1.0));
    let wrong = verifier
        .run(&RewardInput::new(&prompt, "6 * 7 = 36", &[1, 2], &fields))
        .unwrap();
    assert_eq!(wrong, RewardOutput::incorrect("the product is wrong"));
}

#[test]
fn command_receives_one_json_object_in_its_working_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdin.json");
    let verifier = sh("record_input.sh", &[], Duration::from_secs(10))
        .working_dir(dir.path())
        .env("SDPO_TEST_OUT", out.to_string_lossy());
    let prompt = Prompt::Messages(vec![
        sdpo_core::ChatMessage::system("Be brief."),
        sdpo_core::ChatMessage::user("Say \"hi\"\n"),
    ]);
    let fields = row(json!({"answer": 4, "tests": ["assert f(1) == 2"]}));
    let output = verifier
        .run(&RewardInput::new(
            &prompt,
            "hi \u{1F44B}",
            &[7, 8, 9],
            &fields,
        ))
        .unwrap();
    assert_eq!(output, RewardOutput::new(0.5));

    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), 1, "one JSON object on one line");
    let value: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(
        value,
        json!({
            "prompt": [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "Say \"hi\"\n"}],
            "completion": "hi \u{1F44B}",
            "completion_ids": [7, 8, 9],
            "row": {"answer": 4, "tests": ["assert f(1) == 2"]}
        })
    );
    let pwd = std::fs::read_to_string(dir.path().join("stdin.json.pwd")).unwrap();
    assert_eq!(
        std::fs::canonicalize(pwd.trim()).unwrap(),
        std::fs::canonicalize(dir.path()).unwrap()
    );
}

/// Whether a process is gone (or a zombie nobody has reaped yet).
#[cfg(target_os = "linux")]
fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the first field after the parenthesized command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn command_past_its_timeout_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let timeout = Duration::from_secs(1);
    let verifier =
        sh("sleep_in_child.sh", &[], timeout).env("SDPO_TEST_PID", pid_file.to_string_lossy());
    let prompt = Prompt::from("q");
    let fields = Map::new();
    let start = Instant::now();
    let err = verifier
        .run(&RewardInput::new(&prompt, "c", &[], &fields))
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out after 1s"), "{err}");
    // The script sleeps 60 s. Killing and reaping take milliseconds; the
    // extra second is slack for a loaded CI machine.
    assert!(
        elapsed < timeout + Duration::from_secs(1),
        "took {elapsed:?}"
    );

    // The sleeping grandchild went with its process group.
    #[cfg(target_os = "linux")]
    {
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !process_is_dead(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(process_is_dead(pid), "the child `sleep` ({pid}) survived");
    }
}

#[test]
fn background_process_holding_stdout_counts_as_a_timeout() {
    let timeout = Duration::from_millis(500);
    let verifier = sh("background_holds_stdout.sh", &[], timeout);
    let prompt = Prompt::from("q");
    let fields = Map::new();
    let start = Instant::now();
    let err = verifier
        .run(&RewardInput::new(&prompt, "c", &[], &fields))
        .unwrap_err();
    assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
    // As above: slack for a loaded machine.
    assert!(
        start.elapsed() < timeout + Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn crashing_command_quotes_its_stderr() {
    let verifier = sh("crash.sh", &[], Duration::from_secs(10));
    let prompt = Prompt::from("q");
    let fields = Map::new();
    let err = verifier
        .run(&RewardInput::new(&prompt, "c", &[], &fields))
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, CommandError::Failed { .. }), "{message}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(
        message.contains("Traceback: something broke in the verifier"),
        "{message}"
    );
}

#[test]
fn malformed_command_output_is_explained() {
    let prompt = Prompt::from("q");
    let fields = Map::new();
    let input = RewardInput::new(&prompt, "c", &[], &fields);
    for (arg, expected) in [
        ("plain", "expected value"),
        ("extra-key", "unknown field `feedbak`"),
        ("no-score", "missing field `score`"),
    ] {
        let err = sh("garbage.sh", &[arg], Duration::from_secs(10))
            .run(&input)
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, CommandError::BadOutput { .. }), "{message}");
        assert!(message.contains(expected), "{arg}: {message}");
    }
}

#[test]
fn missing_program_is_a_spawn_error() {
    let reward = CommandReward::new("/nonexistent/sdpo-verifier", Duration::from_secs(1)).unwrap();
    let prompt = Prompt::from("q");
    let fields = Map::new();
    let err = reward
        .run(&RewardInput::new(&prompt, "c", &[], &fields))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot start `/nonexistent/sdpo-verifier`"),
        "{err}"
    );
}

#[test]
fn panics_errors_and_nan_fail_only_their_samples() {
    let picky = reward_fn("picky", |input| match input.completion {
        "panic" => panic!("verifier bug on purpose"),
        "nan" => Ok(RewardOutput::new(f64::NAN)),
        "error" => Err(RewardError::custom("cannot parse the completion")),
        _ => Ok(RewardOutput::new(1.0)),
    });
    let rewards = Rewards::new()
        .add(picky, 1.0)
        .unwrap()
        .add(
            reward_fn("length", |_| {
                Ok(RewardOutput::with_feedback(0.5, "too long"))
            }),
            2.0,
        )
        .unwrap()
        .with_parallelism(NonZeroUsize::new(3).unwrap());
    let prompt = Prompt::from("q");
    let fields = Map::new();
    let completions = ["fine", "panic", "nan", "error", "fine"];
    let inputs: Vec<RewardInput<'_>> = completions
        .iter()
        .map(|c| RewardInput::new(&prompt, c, &[], &fields))
        .collect();
    let scored = rewards.evaluate(&inputs);

    assert_eq!(scored.len(), 5);
    for i in [0, 4] {
        assert!(!scored[i].failed);
        assert_eq!(scored[i].score, 1.0 + 2.0 * 0.5);
        assert_eq!(scored[i].feedback.as_deref(), Some("too long"));
    }
    let expected = [
        (
            1,
            "reward `picky` failed: panicked: verifier bug on purpose",
        ),
        (
            2,
            "reward `picky` failed: returned a non-finite score (NaN)",
        ),
        (3, "reward `picky` failed: cannot parse the completion"),
    ];
    for (i, message) in expected {
        let s = &scored[i];
        assert!(s.failed, "{i}");
        assert_eq!(s.score, 0.0, "a failure scores 0");
        // The error is for the log, not for the teacher: only real feedback remains.
        assert_eq!(s.feedback.as_deref(), Some("too long"));
        assert_eq!(s.error.as_deref(), Some(message));
        assert_eq!(
            s.errors().map(|(name, _)| name).collect::<Vec<_>>(),
            vec!["picky"]
        );
    }
    assert!(matches!(
        scored[1].components[0].outcome,
        Err(RewardError::Panicked { .. })
    ));
    assert!(matches!(
        scored[2].components[0].outcome,
        Err(RewardError::NonFinite { .. })
    ));
    assert_eq!(RewardSummary::of(&scored).failures, 3);
}

#[test]
fn command_failures_are_errors_not_feedback() {
    let rewards = RewardConfig::build_all(&[serde_json::from_value(json!({
        "reward": {"Command": {"program": "sh", "args": [script("sleep_in_child.sh")],
                               "timeout_secs": 0.3,
                               "env": {"SDPO_TEST_PID": "/dev/null"}}},
        "name": "tests"
    }))
    .unwrap()])
    .unwrap();
    let prompt = Prompt::from("q");
    let fields = Map::new();
    let scored = rewards.evaluate(&[RewardInput::new(&prompt, "loop {}", &[], &fields)]);
    assert!(scored[0].failed);
    assert_eq!(scored[0].feedback, None);
    assert_eq!(
        scored[0].error.as_deref(),
        Some("reward `tests` failed: `sh` timed out after 300ms and was killed")
    );
}

#[test]
fn configured_rewards_combine_with_weights() {
    let configs: Vec<RewardConfig> = serde_json::from_value(json!([
        {"reward": {"NumericMatch": {}}},
        {"reward": {"Regex": {"pattern": "\\\\boxed\\{", "feedback": "put the final answer in \\boxed{}"}},
         "weight": 0.25, "name": "format"},
        {"reward": {"Command": {"program": "sh", "args": [script("verify_42.sh")]}}, "weight": 0.5}
    ]))
    .unwrap();
    let rewards = RewardConfig::build_all(&configs).unwrap();
    let prompt = Prompt::from("What is 6 * 7?");
    let fields = row(json!({"answer": "#### 42"}));
    let completions = ["so \\boxed{42}", "it is 42", "\\boxed{41}"];
    let inputs: Vec<RewardInput<'_>> = completions
        .iter()
        .map(|c| RewardInput::new(&prompt, c, &[], &fields))
        .collect();
    let scored = rewards.evaluate(&inputs);
    let scores: Vec<f64> = scored.iter().map(|s| s.score).collect();
    assert_eq!(scores, vec![1.0 + 0.25 + 0.5, 1.0 + 0.5, 0.25]);
    assert_eq!(scored[0].feedback, None);
    assert_eq!(
        scored[1].feedback.as_deref(),
        Some("put the final answer in \\boxed{}")
    );
    assert_eq!(
        scored[2].feedback.as_deref(),
        Some("your final answer 41 is not correct\n\nthe product is wrong")
    );
    let metrics = RewardSummary::of(&scored).metrics();
    assert!(metrics.contains(&("reward/failures".to_string(), 0.0)));
    assert!(metrics.contains(&("reward/format/mean".to_string(), 2.0 / 3.0)));
}

/// Counts the calls running at once; each call waits (up to 5 s) until
/// `target` calls overlap, so the peak is reached without relying on timing.
struct Overlap {
    state: Mutex<(usize, usize)>,
    changed: Condvar,
    target: usize,
}

impl Overlap {
    fn call(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        state.1 = state.1.max(state.0);
        self.changed.notify_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.1 < self.target && Instant::now() < deadline {
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        state.0 -= 1;
    }
}

#[test]
fn evaluation_runs_in_parallel_up_to_the_bound() {
    for threads in [1usize, 2, 4] {
        let overlap = std::sync::Arc::new(Overlap {
            state: Mutex::new((0, 0)),
            changed: Condvar::new(),
            target: threads,
        });
        let seen = overlap.clone();
        let rewards = Rewards::new()
            .add(
                reward_fn("overlap", move |_| {
                    seen.call();
                    Ok(RewardOutput::new(1.0))
                }),
                1.0,
            )
            .unwrap()
            .with_parallelism(NonZeroUsize::new(threads).unwrap());
        let prompt = Prompt::from("q");
        let fields = Map::new();
        let names: Vec<String> = (0..9).map(|i| i.to_string()).collect();
        let inputs: Vec<RewardInput<'_>> = names
            .iter()
            .map(|c| RewardInput::new(&prompt, c, &[], &fields))
            .collect();
        let scored = rewards.evaluate(&inputs);
        assert!(scored.iter().all(|s| s.score == 1.0));
        let peak = overlap.state.lock().unwrap().1;
        assert_eq!(
            peak, threads,
            "at most {threads} at once, and that many reached"
        );
    }
}

/// The README's external-command example (`examples/rewards/python_tests_reward.py`): a
/// passing solution scores 1, a failing assert becomes the feedback, an endless loop is cut
/// by the script's own 5 s timeout (inside the trainer's 30 s one).
#[test]
fn python_tests_reward_example_scores_explains_and_times_out() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/rewards/python_tests_reward.py")
        .to_string_lossy()
        .into_owned();
    let reward = CommandReward::new("python3", Duration::from_secs(30))
        .unwrap()
        .args([script]);
    let prompt = Prompt::from("Write add(a, b).");
    let fields = row(json!({"tests": ["assert add(1, 2) == 3", "assert add(-4, 4) == 0"]}));
    let run = |completion: &str| {
        reward
            .run(&RewardInput::new(&prompt, completion, &[], &fields))
            .unwrap()
    };
    let right = run("Here:\n```python\ndef add(a, b):\n    return a + b\n```\n");
    assert_eq!(right, RewardOutput::new(1.0));
    let wrong = run("```python\ndef add(a, b):\n    return a - b\n```");
    assert_eq!(wrong.score, 0.0);
    assert_eq!(
        wrong.feedback.as_deref(),
        Some("failed: assert add(1, 2) == 3")
    );
    let broken = run("def add(a, b) return a");
    assert_eq!(broken.score, 0.0);
    assert!(
        broken
            .feedback
            .as_deref()
            .unwrap_or("")
            .contains("SyntaxError"),
        "{broken:?}"
    );
    let t0 = Instant::now();
    let endless = run("def add(a, b):\n    while True:\n        pass\n");
    assert_eq!(endless.score, 0.0);
    assert!(
        endless
            .feedback
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 5 s"),
        "{endless:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(25));
}
