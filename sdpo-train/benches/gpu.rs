//! Real model shapes, random weights, on a GPU backend: forward+backward and generation
//! throughput, one SDPO training step broken into its phases, and the device memory of each,
//! next to `scripts/gpu_bench_torch.py` (same shapes and measurements in PyTorch).
//! `scripts/gpu_check.sh` runs both on a CUDA machine and prints one markdown table.
//!
//! ```text
//! cargo bench -p sdpo-train --bench gpu -- tiny                       # ndarray, every phase
//! cargo bench -p sdpo-train --bench gpu --features bench-cuda -- cuda smollm2-135m
//! cargo bench -p sdpo-train --bench gpu --features bench-wgpu -- wgpu qwen2.5-1.5b train
//! scripts/gpu_check.sh --build        # builds this bench (and the backend suite) for CUDA
//! ```
//!
//! Arguments (after `--`, any order): a backend — `ndarray` (default), `wgpu` (feature
//! `bench-wgpu`), `cuda` (feature `bench-cuda`); `SDPO_BENCH_BACKEND` also names it — a model
//! shape — `smollm2-135m` (default), `qwen2.5-1.5b`, or `tiny` (the built-in 2-layer model
//! with a 1024-token vocabulary, for quick checks) — and a phase — `all` (default), `train`,
//! `generate`, `step`. With `all`, each phase runs in a child process of its own, so each
//! reports the memory of that phase alone; a failed phase does not stop the others, but makes
//! the exit status non-zero.
//!
//! The models are built from hand-written [`ModelConfig`]s with the real architectures
//! (SmolLM2-135M: Llama, 30 layers, width 576, 9 heads / 3 kv heads, MLP 1536, vocabulary
//! 49152, tied embeddings, RoPE base 1e5; Qwen2.5-1.5B: Qwen2, 28 layers, width 1536, 12 heads
//! / 2 kv heads, MLP 8960, vocabulary 151936, tied embeddings, q/k/v biases, RoPE base 1e6),
//! f32, weights drawn by `sdpo_train::builtin::init_model` (no download). Phases:
//! - `train`: `SDPO_BENCH_BATCH` x `SDPO_BENCH_LEN` (8 x 256) random tokens, next-token
//!   cross-entropy (mean) over the logits, `backward()` on `Autodiff<backend>`; tokens/s =
//!   batch x len / seconds per step;
//! - `generate`: `SDPO_BENCH_GEN_BATCH` (8) random prompts of `SDPO_BENCH_PROMPT_LEN` (32)
//!   tokens, `SDPO_BENCH_NEW_TOKENS` (64) greedy tokens each with the KV cache and no stop id;
//!   tokens/s = new tokens / wall time (prefill included);
//! - `step`: one `SdpoTrainer::step()` with the default `SdpoConfig` (EMA teacher, top-100
//!   distillation with tail): `SDPO_BENCH_STEP_PROMPTS` (4) prompts of `SDPO_BENCH_PROMPT_LEN`
//!   random words x `SDPO_BENCH_STEP_GENERATIONS` (8) samples of `SDPO_BENCH_STEP_NEW_TOKENS`
//!   (64) tokens (temperature 1, no stop id, so every sample has that length), a reward that
//!   accepts a completion whose first token id is even (and explains the others), and a
//!   word-level tokenizer whose vocabulary is exactly the model's (every sampled id decodes to
//!   a word that encodes back to it). Reported: the wall time of the step (device synced) and
//!   the trainer's own `time/rollout`, `time/reward`, `time/teacher`, `time/student`,
//!   `time/update` and `time/step` metrics. Those are host clocks inside the step: on an
//!   asynchronous backend queued work is counted in the phase where the host next waits.
//!
//! Each timed phase runs `SDPO_BENCH_WARMUP` (1) untimed and `SDPO_BENCH_RUNS` (3) timed
//! repetitions (`SDPO_BENCH_STEP_RUNS` for `step`, default `SDPO_BENCH_RUNS`) and reports the
//! median; the device is synchronized (`Backend::sync`) before each clock stops. Memory, after
//! the phase: `pool_mib` is what CubeCL's memory pools hold on the device for this thread
//! (`bytes_reserved`: its pools only shrink on an explicit cleanup, which nothing here asks
//! for, so this is the high-water mark of the pools, like `torch.cuda.max_memory_reserved`),
//! `in_use_mib` what live tensors use at the end, `rss_mib` the host's VmHWM; the CUDA
//! context and the kernels are not in `pool_mib` (`scripts/gpu_check.sh` polls `nvidia-smi`
//! for the whole process). `pool_mib` and `in_use_mib` are `NA` on NdArray. Every result is
//! one line starting with `RESULT`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, ElementConversion, Int, Tensor, TensorData};
use rand::Rng;
use sdpo_models::arch::RopeScaling;
use sdpo_models::generate::{generate, left_pad, sampler_rng, GenerationError, SamplingParams};
use sdpo_models::kernels::DecoderBackend;
use sdpo_models::{CausalLm, ModelConfig, Tokenizer, TokenizerError};
use sdpo_train::builtin::{init_model, tiny_model_config};
use sdpo_train::config::OptimizerConfig;
use sdpo_train::dataset::{Dataset, DatasetError, Row};
use sdpo_train::reward::{reward_fn, RewardBuildError, RewardOutput, Rewards};
use sdpo_train::sdpo_core::loss::LossBackend;
use sdpo_train::sdpo_core::metrics as names;
use sdpo_train::{SdpoTrainer, TrainConfig, TrainError};

/// Vocabulary of the `tiny` shape.
const TINY_VOCAB: usize = 1024;
/// The word-level tokenizer's padding token (id 0).
const PAD: &str = "<pad>";
/// The word-level tokenizer's unknown-word token (id 1): template words map to it.
const UNK: &str = "<unk>";

/// What can stop the benchmark.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("unknown argument `{0}`: expected a backend (ndarray, wgpu, cuda), a shape (tiny, smollm2-135m, qwen2.5-1.5b) or a phase (all, train, generate, step)")]
    UnknownArgument(String),
    #[error("backend `{backend}` is not compiled in: add `--features {feature}`")]
    NotCompiled {
        backend: &'static str,
        feature: &'static str,
    },
    #[error("{name}={value:?}: expected {expected}")]
    BadEnv {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("synchronizing the device: {0}")]
    Sync(String),
    #[error("the synthetic tokenizer: {0}")]
    Tokenizer(String),
    #[error("generation: {0}")]
    Generation(#[from] GenerationError),
    #[error("the synthetic dataset: {0}")]
    Dataset(#[from] DatasetError),
    #[error("the reward: {0}")]
    Reward(#[from] RewardBuildError),
    #[error("the trainer: {0}")]
    Train(#[from] Box<TrainError>),
    #[error("the step's metrics have no `{0}`")]
    MissingMetric(&'static str),
    #[error("{backend}: the loss is {loss} (not finite)")]
    NonFiniteLoss { backend: &'static str, loss: f64 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("phase(s) failed: {0}")]
    Children(String),
}

impl From<TokenizerError> for BenchError {
    fn from(e: TokenizerError) -> Self {
        Self::Tokenizer(e.to_string())
    }
}

impl From<TrainError> for BenchError {
    fn from(e: TrainError) -> Self {
        Self::Train(Box::new(e))
    }
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    All,
    Train,
    Generate,
    Step,
}

impl Phase {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "train" => Some(Self::Train),
            "generate" => Some(Self::Generate),
            "step" => Some(Self::Step),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Train => "train",
            Self::Generate => "generate",
            Self::Step => "step",
        }
    }
}

/// The Burn backend the phases run on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BackendKind {
    NdArray,
    Wgpu,
    Cuda,
}

impl BackendKind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "ndarray" => Some(Self::NdArray),
            "wgpu" => Some(Self::Wgpu),
            "cuda" => Some(Self::Cuda),
            _ => None,
        }
    }

    /// The name on the command line and in results.
    fn name(self) -> &'static str {
        match self {
            Self::NdArray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }
}

/// The model architecture, with random weights.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ModelShape {
    Tiny,
    SmolLm2,
    Qwen25,
}

impl ModelShape {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "tiny" => Some(Self::Tiny),
            "smollm2-135m" => Some(Self::SmolLm2),
            "qwen2.5-1.5b" => Some(Self::Qwen25),
            _ => None,
        }
    }

    /// The name on the command line and in results.
    fn name(self) -> &'static str {
        match self {
            Self::Tiny => "tiny",
            Self::SmolLm2 => "smollm2-135m",
            Self::Qwen25 => "qwen2.5-1.5b",
        }
    }

    /// The architecture, as the model's `config.json` gives it (`tiny`: the built-in model's).
    fn config(self) -> ModelConfig {
        match self {
            Self::Tiny => tiny_model_config(TINY_VOCAB),
            // HuggingFaceTB/SmolLM2-135M(-Instruct) config.json.
            Self::SmolLm2 => ModelConfig {
                model_type: "llama".to_string(),
                vocab_size: 49152,
                hidden_size: 576,
                intermediate_size: 1536,
                num_layers: 30,
                num_heads: 9,
                num_kv_heads: 3,
                head_dim: 64,
                rms_norm_eps: 1e-5,
                rope_theta: 100_000.0,
                rope_scaling: RopeScaling::None,
                max_position_embeddings: 8192,
                tie_word_embeddings: true,
                qkv_bias: false,
                o_bias: false,
                mlp_bias: false,
                qk_norm: false,
                sliding_window: None,
            },
            // Qwen/Qwen2.5-1.5B-Instruct config.json (sliding window off).
            Self::Qwen25 => ModelConfig {
                model_type: "qwen2".to_string(),
                vocab_size: 151_936,
                hidden_size: 1536,
                intermediate_size: 8960,
                num_layers: 28,
                num_heads: 12,
                num_kv_heads: 2,
                head_dim: 128,
                rms_norm_eps: 1e-6,
                rope_theta: 1_000_000.0,
                rope_scaling: RopeScaling::None,
                max_position_embeddings: 32768,
                tie_word_embeddings: true,
                qkv_bias: true,
                o_bias: false,
                mlp_bias: false,
                qk_norm: false,
                sliding_window: None,
            },
        }
    }
}

/// Sizes and repetitions, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    batch: usize,
    len: usize,
    gen_batch: usize,
    prompt_len: usize,
    new_tokens: usize,
    step_prompts: usize,
    step_generations: usize,
    step_new_tokens: usize,
    warmup: usize,
    runs: usize,
    step_runs: usize,
}

fn env_count(name: &'static str, default: usize, min: usize) -> Result<usize, BenchError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(BenchError::BadEnv {
                name,
                value,
                expected: match min {
                    0 => "a whole number",
                    1 => "a whole number >= 1",
                    _ => "a whole number >= 2",
                },
            }),
        },
    }
}

impl Settings {
    fn from_env() -> Result<Self, BenchError> {
        let runs = env_count("SDPO_BENCH_RUNS", 3, 1)?;
        Ok(Self {
            batch: env_count("SDPO_BENCH_BATCH", 8, 1)?,
            len: env_count("SDPO_BENCH_LEN", 256, 2)?,
            gen_batch: env_count("SDPO_BENCH_GEN_BATCH", 8, 1)?,
            prompt_len: env_count("SDPO_BENCH_PROMPT_LEN", 32, 1)?,
            new_tokens: env_count("SDPO_BENCH_NEW_TOKENS", 64, 1)?,
            step_prompts: env_count("SDPO_BENCH_STEP_PROMPTS", 4, 1)?,
            step_generations: env_count("SDPO_BENCH_STEP_GENERATIONS", 8, 2)?,
            step_new_tokens: env_count("SDPO_BENCH_STEP_NEW_TOKENS", 64, 1)?,
            warmup: env_count("SDPO_BENCH_WARMUP", 1, 0)?,
            runs,
            step_runs: env_count("SDPO_BENCH_STEP_RUNS", runs, 1)?,
        })
    }
}

/// A field of `/proc/self/status` (`VmHWM`) in MiB; `None` off Linux.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn mib(value: Option<f64>) -> String {
    value.map_or_else(|| "NA".to_string(), |v| format!("{v:.0}"))
}

/// What CubeCL's memory management reports for this thread's stream on the default device.
#[derive(Debug, Clone, Copy)]
struct DeviceMemory {
    /// Bytes of live tensors.
    in_use: u64,
    /// Bytes the memory pools hold on the device.
    reserved: u64,
}

/// The device memory of `kind`'s runtime; `None` for NdArray or when it cannot be read.
fn device_memory(kind: BackendKind) -> Option<DeviceMemory> {
    match kind {
        BackendKind::NdArray => None,
        #[cfg(feature = "bench-cuda")]
        BackendKind::Cuda => {
            use burn::cubecl::Runtime;
            let client = burn::cubecl::cuda::CudaRuntime::client(&Default::default());
            client.memory_usage().ok().map(|u| DeviceMemory {
                in_use: u.bytes_in_use,
                reserved: u.bytes_reserved,
            })
        }
        #[cfg(feature = "bench-wgpu")]
        BackendKind::Wgpu => {
            use burn::cubecl::Runtime;
            let client = burn::cubecl::wgpu::WgpuRuntime::client(&Default::default());
            client.memory_usage().ok().map(|u| DeviceMemory {
                in_use: u.bytes_in_use,
                reserved: u.bytes_reserved,
            })
        }
        #[cfg(not(feature = "bench-cuda"))]
        BackendKind::Cuda => None,
        #[cfg(not(feature = "bench-wgpu"))]
        BackendKind::Wgpu => None,
    }
}

/// `pool_mib=… in_use_mib=… rss_mib=…` for the end of a phase.
fn memory_fields(kind: BackendKind) -> String {
    let device = device_memory(kind);
    let to_mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    format!(
        "pool_mib={} in_use_mib={} rss_mib={}",
        mib(device.map(|m| to_mib(m.reserved))),
        mib(device.map(|m| to_mib(m.in_use))),
        mib(status_mib("VmHWM")),
    )
}

/// Waits until every queued operation on `device` has finished.
fn sync<B: DecoderBackend>(device: &Device<B>) -> Result<(), BenchError> {
    B::sync(device).map_err(|e| BenchError::Sync(format!("{e:?}")))
}

/// The median of `values` (not empty).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() % 2 {
        1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

/// Runs `f` `warmup` times untimed, then `runs` (at least one) times timed; returns the median
/// seconds and every timed run's result. `f` synchronizes the device before it returns.
fn timed<T>(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<T, BenchError>,
) -> Result<(f64, Vec<T>), BenchError> {
    for _ in 0..warmup {
        f()?;
    }
    let mut seconds = Vec::with_capacity(runs);
    let mut outs = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let out = f()?;
        seconds.push(start.elapsed().as_secs_f64());
        outs.push(out);
    }
    Ok((median(&mut seconds), outs))
}

/// Uniform random token ids, `[rows, cols]`, seeded, from `low..vocab`.
fn random_ids(rows: usize, cols: usize, low: u32, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = sampler_rng(seed);
    (0..rows)
        .map(|_| {
            (0..cols)
                .map(|_| rng.random_range(low..vocab as u32))
                .collect()
        })
        .collect()
}

fn ids_tensor<B: DecoderBackend>(rows: &[Vec<u32>], device: &Device<B>) -> Tensor<B, 2, Int> {
    let shape = [rows.len(), rows.first().map_or(0, Vec::len)];
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(flat, shape), device)
}

fn all_true<B: DecoderBackend>(shape: [usize; 2], device: &Device<B>) -> Tensor<B, 2, Bool> {
    Tensor::from_data(
        TensorData::new(vec![true; shape[0] * shape[1]], shape),
        device,
    )
}

/// Mean next-token cross-entropy: position `t` predicts token `t + 1`.
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]`, `ids`: `[batch, seq]` → `[1]`
fn next_token_loss<B: DecoderBackend>(
    logits: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let [batch, seq, vocab] = logits.dims();
    let log_probs = log_softmax(logits.slice([0..batch, 0..seq - 1, 0..vocab]), 2);
    let targets = ids.slice([0..batch, 1..seq]).unsqueeze_dim::<3>(2);
    log_probs.gather(2, targets).mean().neg()
}

/// A model of `shape` with random weights on `device` (seeded), and the seconds it took
/// (device synced).
fn build_model<B: DecoderBackend>(
    shape: ModelShape,
    device: &Device<B>,
) -> Result<(CausalLm<B>, f64), BenchError> {
    let start = Instant::now();
    B::seed(device, 0);
    let model = init_model::<B>(&shape.config(), device);
    sync::<B>(device)?;
    Ok((model, start.elapsed().as_secs_f64()))
}

/// The fields every result line starts with.
fn head<B: DecoderBackend>(
    kind: BackendKind,
    shape: ModelShape,
    phase: Phase,
    model: &CausalLm<B>,
    init_s: f64,
) -> String {
    format!(
        "RESULT backend={} model={} phase={} params={} init_s={init_s:.2}",
        kind.name(),
        shape.name(),
        phase.name(),
        model.num_params(),
    )
}

/// The `train` phase: forward+backward tokens/s.
fn train<B: DecoderBackend>(
    kind: BackendKind,
    shape: ModelShape,
    s: &Settings,
) -> Result<(), BenchError> {
    let device: Device<Autodiff<B>> = Default::default();
    let (model, init_s) = build_model::<Autodiff<B>>(shape, &device)?;
    let rows = random_ids(s.batch, s.len, 0, model.config.vocab_size, 0);
    let ids = ids_tensor(&rows, &device);
    let mask = all_true([s.batch, s.len], &device);
    let (seconds, losses) = timed(s.warmup, s.runs, || {
        let logits = model.forward_logits(ids.clone(), mask.clone());
        let loss = next_token_loss(logits, ids.clone());
        let grads = loss.backward();
        sync::<Autodiff<B>>(&device)?;
        drop(grads);
        let loss = loss.into_scalar().elem::<f64>();
        match loss.is_finite() {
            true => Ok(loss),
            false => Err(BenchError::NonFiniteLoss {
                backend: kind.name(),
                loss,
            }),
        }
    })?;
    println!(
        "{} shape={}x{} runs={} median_s={seconds:.4} tokens_per_s={:.1} loss={:.4} {}",
        head(kind, shape, Phase::Train, &model, init_s),
        s.batch,
        s.len,
        s.runs,
        (s.batch * s.len) as f64 / seconds,
        losses.last().copied().unwrap_or(f64::NAN),
        memory_fields(kind),
    );
    Ok(())
}

/// The `generate` phase: greedy tokens/s with the KV cache, fixed length.
fn generation<B: DecoderBackend>(
    kind: BackendKind,
    shape: ModelShape,
    s: &Settings,
) -> Result<(), BenchError> {
    let device: Device<B> = Default::default();
    let (model, init_s) = build_model::<B>(shape, &device)?;
    let pad_id = 0;
    let prompts = random_ids(s.gen_batch, s.prompt_len, 0, model.config.vocab_size, 1);
    let (ids, mask) = left_pad::<B>(&prompts, pad_id, &device);
    // No stop ids: every row generates exactly `new_tokens` tokens.
    let params = SamplingParams::greedy(s.new_tokens);
    let (seconds, counts) = timed(s.warmup, s.runs, || {
        let out = generate(
            &model,
            ids.clone(),
            mask.clone(),
            &params,
            pad_id,
            &mut sampler_rng(0),
        )?;
        sync::<B>(&device)?;
        Ok(out.tokens.iter().map(Vec::len).sum::<usize>())
    })?;
    let new_tokens = counts.last().copied().unwrap_or(0);
    println!(
        "{} shape={}x{}+{} runs={} median_s={seconds:.4} new_tokens={new_tokens} tokens_per_s={:.1} {}",
        head(kind, shape, Phase::Generate, &model, init_s),
        s.gen_batch,
        s.prompt_len,
        s.new_tokens,
        s.runs,
        new_tokens as f64 / seconds,
        memory_fields(kind),
    );
    Ok(())
}

/// The vocabulary entry of id `id` in the word-level tokenizer (ids 0 and 1 are special).
fn word(id: usize) -> String {
    format!("w{id}")
}

/// A word-level tokenizer with exactly `vocab` entries: `<pad>` (0), `<unk>` (1) and the words
/// `w2` … `w{vocab-1}`, split on whitespace, decoded by joining with spaces. Every id decodes to
/// one word that encodes back to it; other words (the reprompt templates') become `<unk>`. No
/// chat template (the trainer joins messages with newlines) and no eos token (no stop id).
fn word_tokenizer(vocab: usize) -> Result<Tokenizer, BenchError> {
    let mut words = serde_json::Map::new();
    words.insert(PAD.to_string(), 0.into());
    words.insert(UNK.to_string(), 1.into());
    for id in 2..vocab {
        words.insert(word(id), id.into());
    }
    let added: Vec<serde_json::Value> = [PAD, UNK]
        .iter()
        .enumerate()
        .map(|(id, s)| {
            serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": UNK}
    });
    let inner: tokenizers::Tokenizer = json
        .to_string()
        .parse()
        .map_err(|e: tokenizers::Error| BenchError::Tokenizer(e.to_string()))?;
    let tokenizer = Tokenizer::from_parts(inner, None, None, None)?.with_pad_token(PAD)?;
    if tokenizer.vocab_size() != vocab {
        return Err(BenchError::Tokenizer(format!(
            "{} entries, expected {vocab}",
            tokenizer.vocab_size()
        )));
    }
    Ok(tokenizer)
}

/// Succeeds when the completion's first token id is even and explains the others: about half
/// of every group succeeds on a random model, so demonstrations and feedback both occur.
fn parity_rewards() -> Result<Rewards, BenchError> {
    let parity = reward_fn("even-first-token", |input| {
        Ok(
            if input.completion_ids.first().is_some_and(|t| t % 2 == 0) {
                RewardOutput::new(1.0)
            } else {
                RewardOutput::with_feedback(0.0, "The answer starts with an odd word.")
            },
        )
    });
    Ok(Rewards::new().add(parity, 1.0)?)
}

/// The trainer metrics reported for the `step` phase: (metric, result key).
const STEP_TIMES: [(&str, &str); 6] = [
    ("time/rollout", "rollout_s"),
    ("time/reward", "reward_s"),
    ("time/teacher", "teacher_s"),
    ("time/student", "student_s"),
    ("time/update", "update_s"),
    ("time/step", "step_s"),
];

/// The `step` phase: one SDPO training step, wall time and the trainer's phase times.
fn step<B: LossBackend + DecoderBackend>(
    kind: BackendKind,
    shape: ModelShape,
    s: &Settings,
) -> Result<(), BenchError> {
    let device: Device<Autodiff<B>> = Default::default();
    let (model, init_s) = build_model::<Autodiff<B>>(shape, &device)?;
    let line_head = head(kind, shape, Phase::Step, &model, init_s);
    let vocab = model.config.vocab_size;
    let tokenizer = word_tokenizer(vocab)?;
    let rows = random_ids(2 * s.step_prompts, s.prompt_len, 2, vocab, 2)
        .into_iter()
        .map(|ids| {
            let words: Vec<String> = ids.iter().map(|&t| word(t as usize)).collect();
            Row::new(words.join(" "))
        })
        .collect();
    let dataset = Dataset::from_rows(rows)?;
    let cfg = TrainConfig {
        num_generations: s.step_generations,
        prompts_per_step: s.step_prompts,
        steps: s.warmup + s.step_runs,
        sampling: SamplingParams {
            max_new_tokens: s.step_new_tokens,
            ..SamplingParams::default()
        },
        optimizer: OptimizerConfig {
            learning_rate: 1e-6,
            ..OptimizerConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut trainer = SdpoTrainer::new(cfg, model, tokenizer, dataset, parity_rewards()?, &device)?;
    let (seconds, reports) = timed(s.warmup, s.step_runs, || {
        let report = trainer.step()?;
        sync::<Autodiff<B>>(&device)?;
        Ok(report)
    })?;
    let metric_median = |name: &'static str| -> Result<f64, BenchError> {
        let mut values = reports
            .iter()
            .map(|r| r.metrics.get(name).copied())
            .collect::<Option<Vec<f64>>>()
            .ok_or(BenchError::MissingMetric(name))?;
        Ok(median(&mut values))
    };
    let mut times = String::new();
    for (metric, key) in STEP_TIMES {
        times.push_str(&format!(" {key}={:.4}", metric_median(metric)?));
    }
    let loss = metric_median(names::LOSS)?;
    if !loss.is_finite() {
        return Err(BenchError::NonFiniteLoss {
            backend: kind.name(),
            loss,
        });
    }
    let samples = s.step_prompts * s.step_generations;
    let response_len = metric_median(names::RESPONSE_LENGTH)?;
    println!(
        "{line_head} shape={}x{}x{}+{} runs={} median_s={seconds:.4}{times} gen_tokens_per_s={:.1} reward_mean={:.3} reprompt_fraction={:.3} loss={loss:.4} {}",
        s.step_prompts,
        s.step_generations,
        s.prompt_len,
        s.step_new_tokens,
        s.step_runs,
        samples as f64 * response_len / seconds,
        metric_median(names::REWARD_MEAN)?,
        metric_median(names::REPROMPT_SAMPLE_FRACTION)?,
        memory_fields(kind),
    );
    Ok(())
}

fn phase_on<B: LossBackend + DecoderBackend>(
    phase: Phase,
    kind: BackendKind,
    shape: ModelShape,
    s: &Settings,
) -> Result<(), BenchError> {
    match phase {
        Phase::Train => train::<B>(kind, shape, s),
        Phase::Generate => generation::<B>(kind, shape, s),
        Phase::Step => step::<B>(kind, shape, s),
        Phase::All => run_children(kind, shape),
    }
}

fn run_phase(
    phase: Phase,
    kind: BackendKind,
    shape: ModelShape,
    s: &Settings,
) -> Result<(), BenchError> {
    match kind {
        BackendKind::NdArray => phase_on::<NdArray<f32>>(phase, kind, shape, s),
        #[cfg(feature = "bench-wgpu")]
        BackendKind::Wgpu => phase_on::<burn::backend::Wgpu>(phase, kind, shape, s),
        #[cfg(not(feature = "bench-wgpu"))]
        BackendKind::Wgpu => Err(BenchError::NotCompiled {
            backend: "wgpu",
            feature: "bench-wgpu",
        }),
        #[cfg(feature = "bench-cuda")]
        BackendKind::Cuda => phase_on::<burn::backend::Cuda>(phase, kind, shape, s),
        #[cfg(not(feature = "bench-cuda"))]
        BackendKind::Cuda => Err(BenchError::NotCompiled {
            backend: "cuda",
            feature: "bench-cuda",
        }),
    }
}

/// `all`: train, generate and step, each in a child process (separate memory figures).
fn run_children(kind: BackendKind, shape: ModelShape) -> Result<(), BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        path: PathBuf::from("current executable"),
        source,
    })?;
    let mut failed = Vec::new();
    for phase in [Phase::Train, Phase::Generate, Phase::Step] {
        let status = Command::new(&exe)
            .args([kind.name(), shape.name(), phase.name()])
            .status()
            .map_err(|source| BenchError::Io {
                path: exe.clone(),
                source,
            })?;
        if !status.success() {
            failed.push(format!("{} ({status})", phase.name()));
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(BenchError::Children(failed.join(", "))),
    }
}

/// Backend, shape and phase from the arguments (`cargo bench` adds `--bench`) and
/// `SDPO_BENCH_BACKEND`.
fn parse_args() -> Result<(Phase, BackendKind, ModelShape), BenchError> {
    let mut phase = Phase::All;
    let mut shape = ModelShape::SmolLm2;
    let mut kind = match std::env::var("SDPO_BENCH_BACKEND") {
        Err(_) => BackendKind::NdArray,
        Ok(v) => BackendKind::parse(&v).ok_or(BenchError::BadEnv {
            name: "SDPO_BENCH_BACKEND",
            value: v,
            expected: "ndarray, wgpu or cuda",
        })?,
    };
    for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
        if let Some(p) = Phase::parse(&arg) {
            phase = p;
        } else if let Some(k) = BackendKind::parse(&arg) {
            kind = k;
        } else if let Some(m) = ModelShape::parse(&arg) {
            shape = m;
        } else {
            return Err(BenchError::UnknownArgument(arg));
        }
    }
    Ok((phase, kind, shape))
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|(phase, kind, shape)| {
        let settings = Settings::from_env()?;
        run_phase(phase, kind, shape, &settings)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpu bench: {e}");
            ExitCode::FAILURE
        }
    }
}
