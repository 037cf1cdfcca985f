//! Peak extra memory of one forward+backward of the self-distillation loss,
//! fused kernels against the composite code, on the shape of the `loss`
//! bench (Linux only: it reads `/proc/self/status` and resets the peak with
//! `/proc/self/clear_refs`).
//!
//! ```text
//! cargo bench -p sdpo-core --bench loss_memory            # [8, 512, 49152]
//! SDPO_BENCH_BATCH=4 SDPO_BENCH_LEN=1024 SDPO_BENCH_VOCAB=151936 cargo bench -p sdpo-core --bench loss_memory
//! ```
//!
//! "Extra" is the peak resident size during the call minus the resident size
//! before it (inputs already allocated), printed in MB and in units of one
//! `[B, T, V]` f32 tensor; the gradient itself is one such tensor.
//! `scripts/bench_loss_torch.py` prints the same figure for PyTorch.

use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::{Distribution, Int, Tensor};
use sdpo_core::loss::{self_distillation_loss, DistillationBatch, LossBackend};
use sdpo_core::SdpoConfig;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Peak resident bytes above the current ones while `f` runs, and its time.
fn peak_extra(f: impl FnOnce()) -> (u64, f64) {
    // Writing 5 resets the peak (VmHWM) to the current resident size.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS (Linux only)");
    let before = status_bytes("VmRSS");
    let start = Instant::now();
    f();
    let secs = start.elapsed().as_secs_f64();
    (status_bytes("VmHWM").saturating_sub(before), secs)
}

fn main() {
    match std::env::var("SDPO_BENCH_BACKEND").as_deref() {
        Ok("flex") => run::<Flex<f32>>("flex"),
        _ => run::<NdArray<f32>>("ndarray"),
    }
}

fn run<B: LossBackend>(backend: &str) {
    let (b, t, v) = (
        env("SDPO_BENCH_BATCH", 8),
        env("SDPO_BENCH_LEN", 512),
        env("SDPO_BENCH_VOCAB", 49152),
    );
    let dev = Default::default();
    B::seed(&dev, 0);
    let student = Tensor::<B, 3>::random([b, t, v], Distribution::Normal(0.0, 3.0), &dev);
    let teacher =
        student.clone() + Tensor::<B, 3>::random([b, t, v], Distribution::Normal(0.0, 1.0), &dev);
    let ids = Tensor::<B, 2, Int>::random([b, t], Distribution::Uniform(0.0, v as f64), &dev);
    let old = Tensor::<B, 2>::random([b, t], Distribution::Normal(-3.0, 1.0), &dev);
    let tensor_mb = (b * t * v * 4) as f64 / 1e6;
    println!("{backend}, shape [{b}, {t}, {v}]: one [B, T, V] f32 tensor is {tensor_mb:.0} MB");
    println!(
        "{:<34} {:>10} {:>14} {:>9}",
        "case", "extra MB", "× [B,T,V] f32", "seconds"
    );
    for (support, topk) in [("topk100_tail_jsd", Some(100)), ("full_vocab_jsd", None)] {
        for (path, fused_loss) in [("fused", true), ("composite", false)] {
            let cfg = SdpoConfig {
                distillation_topk: topk,
                fused_loss,
                ..SdpoConfig::default()
            };
            let (extra, secs) = peak_extra(|| {
                let s = Tensor::<Autodiff<B>, 3>::from_inner(student.clone()).require_grad();
                let out = self_distillation_loss(
                    DistillationBatch {
                        student_logits: s.clone(),
                        teacher_logits: Tensor::from_inner(teacher.clone()),
                        response_ids: Tensor::from_inner(ids.clone()),
                        response_mask: Tensor::ones([b, t], &dev),
                        old_log_probs: Some(Tensor::from_inner(old.clone())),
                        self_distillation_mask: None,
                        rollout_is_weights: None,
                    },
                    &cfg,
                );
                let grads = out.loss.backward();
                let g = s.grad(&grads).expect("student gradient");
                std::hint::black_box(g.slice([0..1, 0..1, 0..1]).into_scalar());
            });
            let mb = extra as f64 / 1e6;
            println!(
                "{:<34} {mb:>10.0} {:>14.2} {secs:>9.2}",
                format!("{support}/{path}/forward_backward"),
                mb / tensor_mb
            );
        }
    }
}
