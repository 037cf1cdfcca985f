//! Benchmark of the self-distillation loss from logits, next to the
//! memory-bandwidth floor measured in the same run.
//!
//! ```text
//! cargo bench -p sdpo-core --bench loss
//! # smaller shapes for a quick look:
//! SDPO_BENCH_BATCH=2 SDPO_BENCH_LEN=128 cargo bench -p sdpo-core --bench loss
//! ```
//!
//! Default shape `[8, 512, 49152]` (SmolLM2's vocabulary): each logit tensor is
//! 805 MB of f32. Cases:
//! - `floor/read_both`: summing both logit tensors once with 2 threads (plain
//!   Rust over the raw buffers): no loss can be faster than reading its input;
//! - `topk100_tail_jsd/fused/forward` and `/forward_backward`: the default
//!   config (top-k 100 + tail bucket, alpha 0.5, is_clip 2, token-mean) on the
//!   backend's fused kernels (`loss::fused`);
//! - `full_vocab_jsd/fused/…`: full-vocabulary JSD;
//! - with `SDPO_BENCH_COMPOSITE=1`, the same cases on the composite code
//!   (`…/composite/…`; minutes per case at the default shape);
//! - `topk_indices/chunked` vs `topk_indices/burn_full_sort`: our top-k
//!   selection against `Tensor::topk_with_indices` on 1/8 of the rows.
//!
//! `SDPO_BENCH_BACKEND=flex` runs it on Burn's Flex CPU backend instead of
//! NdArray. Run it only on an otherwise idle machine; the figures are wall-clock.

use std::hint::black_box;
use std::time::Duration;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sdpo_core::loss::LossBackend;
use sdpo_core::loss::{self_distillation_loss, topk_indices, DistillationBatch};
use sdpo_core::SdpoConfig;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Inputs<B: Backend> {
    student: Tensor<B, 3>,
    teacher: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    old: Tensor<B, 2>,
}

fn inputs<B: Backend>(batch: usize, len: usize, vocab: usize) -> Inputs<B> {
    let dev = Default::default();
    B::seed(&dev, 0);
    let student = Tensor::<B, 3>::random([batch, len, vocab], Distribution::Normal(0.0, 3.0), &dev);
    let noise = Tensor::<B, 3>::random([batch, len, vocab], Distribution::Normal(0.0, 1.0), &dev);
    let teacher = student.clone() + noise;
    let ids =
        Tensor::<B, 2, Int>::random([batch, len], Distribution::Uniform(0.0, vocab as f64), &dev);
    let mask = Tensor::<B, 2>::ones([batch, len], &dev);
    let old = Tensor::<B, 2>::random([batch, len], Distribution::Normal(-3.0, 1.0), &dev);
    Inputs {
        student,
        teacher,
        ids,
        mask,
        old,
    }
}

fn batch<Bk: Backend>(
    student: Tensor<Bk, 3>,
    teacher: Tensor<Bk, 3>,
    ids: Tensor<Bk, 2, Int>,
    mask: Tensor<Bk, 2>,
    old: Tensor<Bk, 2>,
) -> DistillationBatch<Bk> {
    DistillationBatch {
        student_logits: student,
        teacher_logits: teacher,
        response_ids: ids,
        response_mask: mask,
        old_log_probs: Some(old),
        self_distillation_mask: None,
        rollout_is_weights: None,
    }
}

fn forward<B: LossBackend>(x: &Inputs<B>, cfg: &SdpoConfig) -> B::FloatElem {
    let b = batch(
        x.student.clone(),
        x.teacher.clone(),
        x.ids.clone(),
        x.mask.clone(),
        x.old.clone(),
    );
    self_distillation_loss(b, cfg).loss.into_scalar()
}

fn forward_backward<B: LossBackend>(x: &Inputs<B>, cfg: &SdpoConfig) -> B::FloatElem {
    let student = Tensor::<Autodiff<B>, 3>::from_inner(x.student.clone()).require_grad();
    let b = batch(
        student.clone(),
        Tensor::from_inner(x.teacher.clone()),
        Tensor::from_inner(x.ids.clone()),
        Tensor::from_inner(x.mask.clone()),
        Tensor::from_inner(x.old.clone()),
    );
    let loss = self_distillation_loss(b, cfg).loss;
    let grads = loss.backward();
    let g = student.grad(&grads).expect("student gradient");
    g.slice([0..1, 0..1, 0..1]).into_scalar()
}

/// Sums a buffer with 16 independent accumulators, so the loop is limited by
/// memory, not by the latency of one chain of additions.
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Sums two buffers with two threads: the cost of reading them once.
fn read_both(a: &[f32], b: &[f32]) -> f32 {
    std::thread::scope(|s| {
        let ha = s.spawn(|| sum(a));
        let hb = s.spawn(|| sum(b));
        ha.join().unwrap_or(0.0) + hb.join().unwrap_or(0.0)
    })
}

fn bench(c: &mut Criterion) {
    match std::env::var("SDPO_BENCH_BACKEND").as_deref() {
        Ok("flex") => bench_on::<Flex<f32>>(c, "flex"),
        _ => bench_on::<NdArray<f32>>(c, "ndarray"),
    }
}

fn bench_on<B: LossBackend>(c: &mut Criterion, backend: &str) {
    let (batch_size, len, vocab) = (
        env("SDPO_BENCH_BATCH", 8),
        env("SDPO_BENCH_LEN", 512),
        env("SDPO_BENCH_VOCAB", 49152),
    );
    let x = inputs::<B>(batch_size, len, vocab);
    let bytes = (2 * batch_size * len * vocab * 4) as u64;
    let mut g = c.benchmark_group(format!("loss_{backend}_{batch_size}x{len}x{vocab}"));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(bytes));

    {
        let a = x
            .student
            .clone()
            .into_data()
            .into_vec::<f32>()
            .expect("f32 data");
        let b = x
            .teacher
            .clone()
            .into_data()
            .into_vec::<f32>()
            .expect("f32 data");
        g.bench_function("floor/read_both", |bch| {
            bch.iter(|| read_both(black_box(&a), black_box(&b)))
        });
    }

    let mut paths = vec![("fused", true)];
    if env("SDPO_BENCH_COMPOSITE", 0) == 1 {
        paths.push(("composite", false));
    }
    for (path, fused_loss) in paths {
        let topk = SdpoConfig {
            fused_loss,
            ..SdpoConfig::default()
        };
        let full = SdpoConfig {
            distillation_topk: None,
            ..topk.clone()
        };
        for (case, cfg) in [("topk100_tail_jsd", &topk), ("full_vocab_jsd", &full)] {
            g.bench_function(format!("{case}/{path}/forward"), |bch| {
                bch.iter(|| forward(&x, cfg))
            });
            g.bench_function(format!("{case}/{path}/forward_backward"), |bch| {
                bch.iter(|| forward_backward(&x, cfg))
            });
        }
    }
    g.finish();

    // Top-k selection alone, on 1/8 of the rows (a full sort of every row is slow).
    let rows = (batch_size * len / 8).max(1);
    let part = x
        .student
        .clone()
        .reshape([batch_size * len, vocab])
        .slice([0..rows, 0..vocab])
        .reshape([1, rows, vocab]);
    let mut g = c.benchmark_group(format!("topk_indices_{backend}_{rows}x{vocab}"));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("chunked", |bch| {
        bch.iter(|| {
            topk_indices(part.clone(), 100)
                .slice([0..1, 0..1, 0..1])
                .into_scalar()
        })
    });
    g.bench_function("burn_full_sort", |bch| {
        bch.iter(|| {
            part.clone()
                .topk_with_indices(100, 2)
                .1
                .slice([0..1, 0..1, 0..1])
                .into_scalar()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
