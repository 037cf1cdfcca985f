//! End-to-end tests of the `sdpo` binary: the smoke run and its run folder, resume, export,
//! inspect, generate, eval, the example configs, and the errors a user meets first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::backend::NdArray;
use burn::module::Module;
use sdpo_models::CausalLm;
use sdpo_train::builtin::{char_tokenizer, tiny_model_config};

fn sdpo(args: &[&str]) -> Output {
    sdpo_in(&workspace_root(), args)
}

fn sdpo_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sdpo"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the sdpo binary runs")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sdpo-cli sits in the workspace")
        .to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns (stdout, stderr).
fn ok(out: Output) -> (String, String) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    (stdout, stderr)
}

/// Asserts exit status 1 and returns stderr.
fn fails(out: Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn smoke_run_writes_the_run_folder_then_exports_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let (stdout, _) = ok(sdpo(&["train", "--smoke", "--out", run_s]));
    assert!(stdout.contains("held-out success before→after"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("sdpo ")), "{stdout}");

    for file in [
        "config.ron",
        "metrics.jsonl",
        "eval.jsonl",
        "plot.svg",
        "summary.json",
        "base_model.mpk",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    let metrics = lines(&run.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 3);
    assert!(metrics.iter().all(|m| m["reward/mean"].is_number()));
    let evals = lines(&run.join("eval.jsonl"));
    let steps: Vec<u64> = evals.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 2, 3], "before, every 2 steps, after");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["runs"][0]["steps"], 3);
    assert!(summary["runs"][0]["held_out_success_after"].is_number());
    assert!(summary["wall_time_secs"].as_f64().unwrap() > 0.0);
    let svg = std::fs::read_to_string(run.join("plot.svg")).unwrap();
    assert!(svg.contains("sdpo train reward") && svg.contains("sdpo held-out success"));
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-3");
    assert!(run.join("checkpoints/step-3/model.mpk").is_file());
    // The resolved config reads back as a config.
    let config = std::fs::read_to_string(run.join("config.ron")).unwrap();
    assert!(
        config.contains("steps: 3") && config.contains("task: Some(\"sort-digits\")"),
        "{config}"
    );

    // Export: a Hugging Face folder that loads again.
    let hf = tmp.path().join("hf");
    ok(sdpo(&["export", run_s, hf.to_str().unwrap()]));
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(hf.join(file).is_file(), "export lacks {file}");
    }
    let (inspected, _) = ok(sdpo(&["inspect", hf.to_str().unwrap()]));
    assert!(
        inspected.contains("architecture             llama"),
        "{inspected}"
    );
    // Exporting onto a non-empty folder is refused.
    let err = fails(sdpo(&["export", run_s, hf.to_str().unwrap()]));
    assert!(err.contains("already exists"), "{err}");

    // Eval of the run folder on its own held-out set.
    let (report, _) = ok(sdpo(&["eval", run_s, "--max-new-tokens", "6"]));
    assert!(
        report.contains("pass@1:") && report.contains("(8 problems"),
        "{report}"
    );

    // Resume: a finished run needs a larger budget, then continues from step 3.
    let err = fails(sdpo(&["train", "--resume", run_s]));
    assert!(err.contains("--steps"), "{err}");
    ok(sdpo(&["train", "--resume", run_s, "--steps", "5"]));
    let metrics = lines(&run.join("metrics.jsonl"));
    let steps: Vec<f64> = metrics
        .iter()
        .map(|m| m["step"].as_f64().unwrap())
        .collect();
    assert_eq!(steps, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-5");
    let evals = lines(&run.join("eval.jsonl"));
    assert_eq!(evals.last().unwrap()["step"], 5);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["runs"][0]["steps"], 5);
}

#[test]
fn compare_grpo_runs_both_algorithms_from_one_warm_start() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("cmp");
    let (stdout, _) = ok(sdpo(&[
        "train",
        "--smoke",
        "--compare-grpo",
        "--out",
        run.to_str().unwrap(),
    ]));
    assert!(stdout.lines().any(|l| l.starts_with("sdpo ")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("grpo ")), "{stdout}");
    for algo in ["sdpo", "grpo"] {
        assert_eq!(
            lines(&run.join(algo).join("metrics.jsonl")).len(),
            3,
            "{algo}"
        );
        assert!(
            run.join(algo).join("checkpoints/latest").is_file(),
            "{algo}"
        );
    }
    let grpo_cfg = std::fs::read_to_string(run.join("grpo/config.ron")).unwrap();
    assert!(grpo_cfg.contains("distillation_weight: 0.0"), "{grpo_cfg}");
    // Same seed and starting weights: the first step's rollouts are the same samples.
    let first = |algo: &str| lines(&run.join(algo).join("metrics.jsonl"))[0]["reward/mean"].clone();
    assert_eq!(first("sdpo"), first("grpo"));
    let svg = std::fs::read_to_string(run.join("plot.svg")).unwrap();
    assert!(svg.contains("sdpo train reward") && svg.contains("grpo train reward"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["runs"].as_array().unwrap().len(), 2);
}

#[test]
fn compare_trains_every_arm_rate_and_seed_from_one_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cmp");
    let (stdout, _) = ok(sdpo(&[
        "compare",
        "--smoke",
        "--learning-rates",
        "1e-3",
        "--seeds",
        "0,1",
        "--arm",
        "sdpo",
        "--arm",
        "grpo: train.sdpo.distillation_weight=0.0",
        "--out",
        dir.to_str().unwrap(),
    ]));
    assert!(stdout.contains("| sdpo * | 1e-3 | 2 |"), "{stdout}");
    assert!(stdout.contains("| grpo * | 1e-3 | 2 |"), "{stdout}");
    for file in [
        "compare.md",
        "compare.json",
        "compare.svg",
        "base_model.mpk",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 4);
    // One start and one held-out set: every run's first evaluation is the same.
    let runs = [
        "sdpo-lr1e-3-s0",
        "sdpo-lr1e-3-s1",
        "grpo-lr1e-3-s0",
        "grpo-lr1e-3-s1",
    ];
    let first: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| lines(&dir.join("runs").join(r).join("eval.jsonl"))[0].clone())
        .collect();
    assert!(first.iter().all(|f| *f == first[0]), "{first:?}");
    let cfg = std::fs::read_to_string(dir.join("runs/grpo-lr1e-3-s1/config.ron")).unwrap();
    for field in [
        "seed: 1,",
        "learning_rate: 0.001,",
        "distillation_weight: 0.0,",
    ] {
        assert!(cfg.contains(field), "{field} not in {cfg}");
    }
    assert_eq!(
        lines(&dir.join("runs/sdpo-lr1e-3-s0/metrics.jsonl")).len(),
        3
    );
}

#[test]
fn compare_names_a_bad_arm_before_any_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sdpo(&[
        "compare",
        "--arm",
        "typo: train.sdpo.alpah=1.0",
        "--out",
        tmp.path().join("c").to_str().unwrap(),
    ]);
    let stderr = fails(out);
    assert!(stderr.contains("alpah"), "{stderr}");
    assert!(
        !tmp.path().join("c").exists(),
        "no folder is made for a bad comparison"
    );
    let out = sdpo(&["compare", "--arm", "a", "--arm", "a: train.sdpo.alpha=1.0"]);
    assert!(fails(out).contains("two arms are named `a`"));
}

#[test]
fn lora_run_from_a_config_file_exports_merged_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = workspace_root().join("examples/configs/grpo-builtin.ron");
    ok(sdpo(&[
        "train",
        config.to_str().unwrap(),
        "--smoke",
        "--set",
        "train.lora=Some((rank: 4))",
        "--set",
        "train.optimizer.learning_rate=0.01",
        "--out",
        run.to_str().unwrap(),
    ]));
    let cfg = std::fs::read_to_string(run.join("config.ron")).unwrap();
    assert!(
        cfg.contains("distillation_weight: 0.0") && cfg.contains("rank: 4"),
        "{cfg}"
    );
    assert!(run.join("checkpoints/step-3/adapters.mpk").is_file());
    let hf = tmp.path().join("hf");
    ok(sdpo(&[
        "export",
        run.to_str().unwrap(),
        hf.to_str().unwrap(),
    ]));
    assert!(hf.join("model.safetensors").is_file());
    // The merged export and the run folder generate the same greedy text.
    let from_run = ok(sdpo(&[
        "generate",
        run.to_str().unwrap(),
        "3+4=",
        "--max-new-tokens",
        "6",
    ]))
    .0;
    let from_hf = ok(sdpo(&[
        "generate",
        hf.to_str().unwrap(),
        "3+4=",
        "--max-new-tokens",
        "6",
    ]))
    .0;
    assert_eq!(from_run, from_hf);
}

#[test]
fn misspelled_config_field_fails_with_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.ron");
    std::fs::write(&path, "(\n  train: (\n    stpes: 3,\n  ),\n)\n").unwrap();
    let err = fails(sdpo(&["train", path.to_str().unwrap()]));
    let at = format!("{}:3:", path.display());
    assert!(err.contains(&at), "{err}");
    assert!(err.contains("stpes") && err.contains("`steps`"), "{err}");
    assert!(
        !err.contains("warm start"),
        "failed before any model work: {err}"
    );
}

#[test]
fn unknown_set_path_is_named() {
    let err = fails(sdpo(&["train", "--set", "train.sdpo.alpah=1.0"]));
    assert!(err.contains("train.sdpo.alpah"), "{err}");
    assert!(
        err.contains("`alpha`"),
        "lists the fields that exist: {err}"
    );
    let err = fails(sdpo(&["train", "--set", "train.steps=lots"]));
    assert!(err.contains("--set train.steps=lots"), "{err}");
    // A value out of its domain is named before the warm start begins.
    let err = fails(sdpo(&["train", "--set", "warm_start.plain_mistakes=1.5"]));
    assert!(
        err.contains("warm_start.plain_mistakes") && err.contains("[0, 1]"),
        "{err}"
    );
    assert!(
        !err.contains("warm start "),
        "failed before any model work: {err}"
    );
}

/// The smoke run on the GPU code path (CI: Mesa's lavapipe): train on Wgpu, then resume there.
/// Prints the run's stderr, where cubecl names the adapter wgpu picked.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_smoke_run_trains_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let (stdout, stderr) = ok(sdpo(&[
        "--backend",
        "wgpu",
        "train",
        "--smoke",
        "--out",
        run_s,
    ]));
    eprintln!("{stderr}");
    assert!(stdout.contains("held-out success before→after"), "{stdout}");
    let metrics = lines(&run.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 3);
    for m in &metrics {
        assert!(m["loss"].as_f64().is_some_and(f64::is_finite), "{m}");
    }
    let config = std::fs::read_to_string(run.join("config.ron")).unwrap();
    assert!(config.contains("backend: wgpu"), "{config}");
    ok(sdpo(&[
        "--backend",
        "wgpu",
        "train",
        "--resume",
        run_s,
        "--steps",
        "5",
    ]));
    assert_eq!(lines(&run.join("metrics.jsonl")).len(), 5);
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-5");
}

#[test]
fn a_backend_not_compiled_in_names_its_feature() {
    if cfg!(feature = "cuda") {
        return;
    }
    let err = fails(sdpo(&["--backend", "cuda", "train", "--smoke"]));
    assert!(
        err.contains("backend `cuda` is not compiled in: rebuild with `cargo build --release -p sdpo-cli --features cuda`"),
        "{err}"
    );
}

#[test]
fn inspect_builtin_prints_the_parameter_count() {
    let (stdout, _) = ok(sdpo(&["inspect", "builtin"]));
    let vocab = char_tokenizer().unwrap().vocab_size();
    let model = CausalLm::<NdArray<f32>>::new(&tiny_model_config(vocab), &Default::default());
    let expected = format!("parameters               {} ", model.num_params());
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(
        stdout.contains("stop ids                 1 \"<eos>\""),
        "{stdout}"
    );
}

#[test]
fn generate_builtin_prints_a_completion() {
    let (stdout, _) = ok(sdpo(&[
        "generate",
        "builtin",
        "1+1=",
        "--max-new-tokens",
        "5",
    ]));
    let completion = stdout.strip_suffix('\n').unwrap_or(&stdout);
    let n = completion.chars().count();
    // One character per token, at most 5 tokens; the untrained model does not stop at once.
    assert!((1..=5).contains(&n), "{completion:?}");
}

#[test]
fn eval_reports_pass_at_k_on_a_task() {
    let (stdout, _) = ok(sdpo(&[
        "eval",
        "builtin",
        "--task",
        "addition",
        "--limit",
        "4",
        "-k",
        "2",
        "--samples",
        "3",
        "--max-new-tokens",
        "4",
    ]));
    assert!(
        stdout.contains("pass@2: ") && stdout.contains("(4 problems, 3 samples each)"),
        "{stdout}"
    );
    assert!(stdout.contains("mean reward: "), "{stdout}");
    let err = fails(sdpo(&["eval", "builtin"]));
    assert!(err.contains("--task"), "{err}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let err = fails(sdpo(&["inspect", "/no/such/model"]));
    assert!(err.contains("/no/such/model"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("model.bin");
    std::fs::write(&junk, b"not a model").unwrap();
    let err = fails(sdpo(&["generate", junk.to_str().unwrap(), "hi"]));
    assert!(err.contains("cannot load model"), "{err}");
    let err = fails(sdpo(&["train", "--resume", tmp.path().to_str().unwrap()]));
    assert!(err.contains("not a run folder"), "{err}");
}

#[test]
fn a_precision_the_device_cannot_run_is_refused_by_every_command() {
    // NdArray does general arithmetic in f32 and f64 only (Flex, the CPU default, has all three).
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let nd = ["--backend", "ndarray"];
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                nd[0],
                nd[1],
                "generate",
                "builtin",
                "1+1=",
                "--precision",
                "f16",
            ],
            "f16",
        ),
        (
            &[
                nd[0],
                nd[1],
                "eval",
                "builtin",
                "--task",
                "addition",
                "--precision",
                "bf16",
            ],
            "bf16",
        ),
        (
            &[
                nd[0],
                nd[1],
                "train",
                "--smoke",
                "--precision",
                "f16",
                "--set",
                "train.lora=Some((rank: 4))",
                "--out",
                out.to_str().unwrap(),
            ],
            "f16",
        ),
    ];
    for (args, precision) in cases {
        let err = fails(sdpo(args));
        assert!(
            err.contains(&format!("precision `{precision}` is not supported by"))
                && err.contains("choose f32"),
            "{args:?}: {err}"
        );
    }
    // An unknown name is a usage error (clap's exit status 2), naming the value.
    let out = sdpo(&["generate", "builtin", "hi", "--precision", "f8"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("f8") && !err.contains("panicked"), "{err}");
}

#[test]
fn example_smollm2_configs_read_data_and_rewards_before_the_model() {
    // The model files are not in the repository: each run gets as far as loading them.
    let tmp = tempfile::tempdir().unwrap();
    for config in [
        "examples/configs/smollm2-lora.ron",
        "examples/configs/smollm2-lora-addition.ron",
    ] {
        let out = tmp.path().join("run");
        let err = fails(sdpo(&["train", config, "--out", out.to_str().unwrap()]));
        assert!(
            err.contains("cannot load model") && err.contains("SmolLM2-135M-Instruct"),
            "{config}: {err}"
        );
    }
}

#[test]
fn gguf_model_with_dataset_rewards_and_lora_trains_resumes_and_exports() {
    // The tiny Llama GGUF fixture of sdpo-models (tokenizer and chat template in its metadata).
    let gguf = workspace_root().join("sdpo-models/src/gguf/testdata/tiny_llama.f32.gguf");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.jsonl");
    let rows: String = (0..6)
        .map(|i| format!("{{\"prompt\": \"{i}+1=\", \"answer\": \"{}\"}}\n", i + 1))
        .collect();
    std::fs::write(&data, rows).unwrap();
    let config = tmp.path().join("run.ron");
    std::fs::write(
        &config,
        format!(
            r#"(
    model: Gguf({gguf:?}),
    dataset: {data:?},
    rewards: [(reward: NumericMatch(field: "answer")), (reward: Regex(pattern: "^[0-9]+$", feedback: Some("answer with digits only")), weight: 0.5, name: Some("format"))],
    train: (steps: 2, num_generations: 2, prompts_per_step: 2, checkpoint_every: 1,
            lora: (rank: 2, alpha: 4.0), sdpo: (teacher_mode: "lora-ema", distillation_topk: Some(8)),
            sampling: (max_new_tokens: 4), optimizer: (learning_rate: 0.01)),
    eval: (held_out: 2, every: 1),
)"#
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    ok(sdpo(&["train", config.to_str().unwrap(), "--out", run_s]));
    assert!(
        !run.join("base_model.mpk").exists(),
        "the GGUF file is the base"
    );
    assert!(run.join("checkpoints/step-2/adapters.mpk").is_file());
    assert_eq!(
        lines(&run.join("eval.jsonl")).len(),
        3,
        "before, step 1, after"
    );
    let metrics = lines(&run.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 2);
    assert!(metrics[0]["reward/mean"].as_f64().unwrap() <= 1.5);

    ok(sdpo(&["train", "--resume", run_s, "--steps", "3"]));
    assert_eq!(lines(&run.join("metrics.jsonl")).len(), 3);

    let hf = tmp.path().join("hf");
    ok(sdpo(&["export", run_s, hf.to_str().unwrap()]));
    let args = ["--max-new-tokens", "4"];
    let from_run = ok(sdpo(&[&["generate", run_s, "2+1="][..], &args].concat())).0;
    let from_hf = ok(sdpo(
        &[&["generate", hf.to_str().unwrap(), "2+1="][..], &args].concat(),
    ))
    .0;
    assert_eq!(from_run, from_hf);
    let (report, _) = ok(sdpo(&["eval", run_s]));
    assert!(report.contains("(2 problems"), "{report}");
}

/// `sdpo` with extra environment variables (the Hub's `HF_*`).
fn sdpo_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sdpo"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("HF_TOKEN")
        .current_dir(workspace_root())
        .output()
        .expect("the sdpo binary runs")
}

/// The tiny Llama GGUF fixture of sdpo-models.
fn tiny_gguf() -> PathBuf {
    workspace_root().join("sdpo-models/src/gguf/testdata/tiny_llama.f32.gguf")
}

/// A local Hub serving the tiny GGUF fixture, exported to a model folder in `tmp`, as `id`.
fn tiny_model_on_a_local_hub(tmp: &Path, id: &str) -> sdpo_models::hub::FixtureHub {
    let folder = tmp.join("repo");
    ok(sdpo(&[
        "export",
        tiny_gguf().to_str().unwrap(),
        folder.to_str().unwrap(),
    ]));
    let hub = sdpo_models::hub::FixtureHub::start().unwrap();
    hub.add_repo(id, "main", &folder).unwrap();
    hub
}

#[test]
fn hub_ids_train_generate_and_work_offline_against_a_local_hub() {
    // Two repos on a local Hub: a model folder (the tiny GGUF fixture exported) and a repo
    // of GGUF files.
    let gguf = tiny_gguf();
    let tmp = tempfile::tempdir().unwrap();
    let hub = tiny_model_on_a_local_hub(tmp.path(), "tiny/llama");
    let gguf_repo = tmp.path().join("gguf-repo");
    std::fs::create_dir_all(&gguf_repo).unwrap();
    std::fs::copy(&gguf, gguf_repo.join("tiny.gguf")).unwrap();
    hub.add_repo("tiny/llama-GGUF", "main", &gguf_repo).unwrap();
    let endpoint = hub.endpoint();
    let home = tmp.path().join("hf-home");
    let home = home.to_str().unwrap();
    let online = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", home),
        ("HF_HUB_OFFLINE", "0"),
    ];
    let offline = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", home),
        ("HF_HUB_OFFLINE", "1"),
    ];

    // A run config naming the Hub id, as the README shows it.
    let data = tmp.path().join("data.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n{\"prompt\": \"2+1=\", \"answer\": \"3\"}\n",
    )
    .unwrap();
    let config = tmp.path().join("run.ron");
    std::fs::write(
        &config,
        format!(
            r#"(
    model: Hub("tiny/llama"),
    dataset: {data:?},
    rewards: [(reward: NumericMatch(field: "answer"))],
    train: (steps: 1, num_generations: 2, prompts_per_step: 1, sampling: (max_new_tokens: 4)),
    eval: (held_out: 0),
)"#
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    let (_, stderr) = ok(sdpo_env(
        &[
            "train",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
        &online,
    ));
    assert!(
        stderr.contains("Hub model tiny/llama at commit"),
        "{stderr}"
    );
    let saved = std::fs::read_to_string(run.join("config.ron")).unwrap();
    assert!(saved.contains(r#"model: Hub("tiny/llama")"#), "{saved}");
    assert!(Path::new(home)
        .join("hub/models--tiny--llama/refs/main")
        .is_file());

    // The same model by id on the command line, a GGUF file of a repo, and the local file
    // generate the same text; offline, the cache serves the id without the server.
    let generate = |model: &str, env: &[(&str, &str)]| {
        let args = [
            "--raw",
            "--temperature",
            "1",
            "--seed",
            "3",
            "--max-new-tokens",
            "8",
        ];
        ok(sdpo_env(
            &[&["generate", model, "2+1="][..], &args].concat(),
            env,
        ))
        .0
    };
    let local = generate(gguf.to_str().unwrap(), &online);
    assert!(
        local.trim().len() >= 4,
        "sampled text to compare: {local:?}"
    );
    assert_eq!(generate("tiny/llama", &online), local);
    assert_eq!(generate("tiny/llama-GGUF:tiny.gguf", &online), local);
    let requests = hub.requests().len();
    assert_eq!(generate("tiny/llama", &offline), local);
    assert_eq!(
        hub.requests().len(),
        requests,
        "offline asks the server nothing"
    );
    ok(sdpo_env(
        &[
            "train",
            "--model",
            "tiny/llama",
            "--set",
            &format!("dataset=Some({data:?})"),
            "--set",
            "rewards=[(reward: NumericMatch())]",
            "--set",
            "eval.held_out=0",
            "--steps",
            "1",
            "--smoke",
            "--out",
            tmp.path().join("run2").to_str().unwrap(),
        ],
        &offline,
    ));

    // What a user sees when something is missing.
    let err = fails(sdpo_env(&["generate", "tiny/nothing", "x"], &online));
    assert!(err.contains("repo tiny/nothing not found"), "{err}");
    let err = fails(sdpo_env(
        &["inspect", "tiny/llama-GGUF:other.gguf"],
        &online,
    ));
    assert!(
        err.contains("no file other.gguf") && err.contains("tiny.gguf"),
        "{err}"
    );
    let err = fails(sdpo_env(
        &["inspect", "tiny/llama-GGUF:tiny.gguf@v2"],
        &offline,
    ));
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains("refs/v2"),
        "{err}"
    );
    let err = fails(sdpo_env(&["inspect", "no/such-folder-here"], &offline));
    assert!(err.contains("no/such-folder-here"), "{err}");
}

#[test]
fn a_verl_parquet_dataset_trains_and_evaluates_as_is() {
    // verl's schema (chat-message prompts, reward_model.ground_truth), written by
    // scripts/make_dataset_fixtures.py; no column mapping needed.
    let gguf = tiny_gguf();
    let datasets = workspace_root().join("sdpo-train/tests/data/datasets");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("run.ron");
    std::fs::write(
        &config,
        format!(
            r#"(
    model: Gguf({gguf:?}),
    dataset: {:?},
    rewards: [(reward: NumericMatch())],
    train: (steps: 2, num_generations: 2, prompts_per_step: 2, sampling: (max_new_tokens: 4)),
    eval: (dataset: Some({:?}), every: 1),
)"#,
            datasets.join("verl_train.parquet"),
            datasets.join("hf_saved"),
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    ok(sdpo(&[
        "train",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]));
    assert_eq!(lines(&run.join("metrics.jsonl")).len(), 2);
    assert_eq!(
        lines(&run.join("eval.jsonl")).len(),
        3,
        "before, step 1, after"
    );
    // The evaluations are in the TensorBoard file too, at their steps.
    use sdpo_train::tensorboard::{event_files, read_events};
    let files = event_files(&run).unwrap();
    assert_eq!(files.len(), 1);
    let eval_steps: Vec<i64> = read_events(&files[0])
        .unwrap()
        .iter()
        .filter(|e| {
            e.scalars()
                .iter()
                .any(|(tag, _)| *tag == "eval/held_out_success")
        })
        .map(|e| e.step)
        .collect();
    assert_eq!(eval_steps, [0, 1, 2]);
    // The eval command reads the same folder's split.
    let (report, _) = ok(sdpo(&[
        "eval",
        gguf.to_str().unwrap(),
        "--dataset",
        datasets.join("hf_hub_layout").to_str().unwrap(),
        "--split",
        "train",
        "--rewards",
        "[(reward: NumericMatch())]",
    ]));
    assert!(report.contains("(9 problems"), "{report}");
}

#[test]
fn the_readme_hub_and_verl_config_trains_against_a_local_hub() {
    // README's "Coming from TRL or verl": HF_ENDPOINT at a mirror (here the fixture Hub
    // serving the tiny model under the config's id) and verl's parquet files.
    let datasets = workspace_root().join("sdpo-train/tests/data/datasets");
    let tmp = tempfile::tempdir().unwrap();
    let hub = tiny_model_on_a_local_hub(tmp.path(), "Qwen/Qwen2.5-0.5B-Instruct");
    let endpoint = hub.endpoint();
    let home = tmp.path().join("hf-home");
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", home.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "0"),
    ];
    let run = tmp.path().join("run");
    let train = datasets.join("verl_train.parquet");
    let test = datasets.join("verl_test.parquet");
    let (_, stderr) = ok(sdpo_env(
        &[
            "train",
            "examples/configs/qwen-hub-verl-parquet.ron",
            "--set",
            &format!("dataset=Some({train:?})"),
            "--set",
            &format!("eval.dataset=Some({test:?})"),
            "--set",
            "train.steps=1",
            "--set",
            "train.num_generations=2",
            "--set",
            "train.prompts_per_step=2",
            "--set",
            "train.sampling.max_new_tokens=4",
            "--set",
            "eval.max_new_tokens=Some(4)",
            "--out",
            run.to_str().unwrap(),
        ],
        &env,
    ));
    assert!(
        stderr.contains("Hub model Qwen/Qwen2.5-0.5B-Instruct at commit"),
        "{stderr}"
    );
    assert!(run.join("checkpoints/step-1/adapters.mpk").is_file());
}
