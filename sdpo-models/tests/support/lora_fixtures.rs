//! LoRA fixtures shared by two test binaries: sdpo-models' `tests/models` (PEFT files, export)
//! and the root package's backend suite (`tests/backends/lora.rs`), which includes this file
//! with `#[path]`. Generic over the backend.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Distribution, Int, Tensor, TensorData};
use sdpo_models::lora::{LoraConfig, LoraSet};
use sdpo_models::{load_hf_dir, CausalLm, ModelConfig};

/// A tiny fixture model's folder (`sdpo-models/tests/fixtures/models/NAME`), from either
/// package that includes this file.
pub fn fixture(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = manifest.join("tests/fixtures/models");
    let dir = if here.is_dir() {
        here
    } else {
        manifest.join("sdpo-models/tests/fixtures/models")
    };
    dir.join(name)
}

/// Every tiny fixture model (also exported by `export_check`).
pub const FIXTURES: [&str; 5] = [
    "llama3_rope",
    "llama_tied_sharded",
    "mistral_window",
    "qwen2_bf16",
    "qwen3_f16",
];

pub fn load<Bk: Backend>(name: &str) -> CausalLm<Bk> {
    load_hf_dir::<Bk>(fixture(name), &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Replaces every float parameter by uniform noise in `[-amp, amp]` (same id, same
/// `require_grad`).
pub struct Randomize {
    pub amp: f64,
}

impl<Bk: Backend> ModuleMapper<Bk> for Randomize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Bk, D>>) -> Param<Tensor<Bk, D>> {
        let amp = self.amp;
        param.map(|t| {
            let require_grad = t.is_require_grad();
            Tensor::random(t.shape(), Distribution::Uniform(-amp, amp), &t.device())
                .set_require_grad(require_grad)
        })
    }
}

/// A rank-4 adapter set on all seven projections with random (nonzero) A and B.
pub fn random_lora<Bk: Backend>(config: &ModelConfig, seed: u64) -> LoraSet<Bk> {
    let device = Default::default();
    Bk::seed(&device, seed);
    let lora_config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    };
    LoraSet::<Bk>::new(&lora_config, config, &device)
        .unwrap()
        .map(&mut Randomize { amp: 0.2 })
}

/// A left-padded batch: two rows, the second with two padding tokens.
pub fn batch<Bk: Backend>() -> (Tensor<Bk, 2, Int>, Tensor<Bk, 2, Bool>) {
    let device = Default::default();
    let ids = Tensor::<Bk, 2, Int>::from_data(
        TensorData::new(vec![5i64, 17, 200, 3, 9, 64, 0, 0, 12, 250, 7, 1], [2, 6]),
        &device,
    );
    let mask = Tensor::<Bk, 2, Bool>::from_data(
        TensorData::new(
            vec![
                true, true, true, true, true, true, false, false, true, true, true, true,
            ],
            [2, 6],
        ),
        &device,
    );
    (ids, mask)
}

pub fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// max |a − b| / max |b|.
pub fn rel_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let err = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
    err / scale
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every float parameter's values, in visiting order.
pub struct Collect(pub Vec<Vec<f32>>);

impl<Bk: Backend> ModuleVisitor<Bk> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        self.0.push(values(param.val()));
    }
}

pub fn all_params<Bk: Backend, M: Module<Bk>>(module: &M) -> Vec<Vec<f32>> {
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

/// Adapter bytes implied by the architecture: `rank · (in + out)` f32 per targeted projection.
pub fn adapter_bytes(c: &ModelConfig, rank: usize) -> usize {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let per_layer = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
        .iter()
        .map(|(a, b)| rank * (a + b))
        .sum::<usize>();
    per_layer * c.num_layers * 4
}
