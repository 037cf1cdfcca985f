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
//! Each case runs in a child process of its own (the allocator keeps freed
//! pages, so a second case in the same process would reuse the first one's).
//! "Extra" is the child's peak resident size during the call minus its
//! resident size before it (inputs already allocated), printed in MB and in
//! units of one `[B, T, V]` f32 tensor; the gradient itself is one such
//! tensor. `scripts/bench_loss_torch.py` prints the same figure for PyTorch.

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

/// The cases: (name, top-k, fused).
const CASES: [(&str, Option<usize>, bool); 4] = [
    ("topk100_tail_jsd/fused", Some(100), true),
    ("topk100_tail_jsd/composite", Some(100), false),
    ("full_vocab_jsd/fused", None, true),
    ("full_vocab_jsd/composite", None, false),
];

fn main() {
    let (b, t, v) = (
        env("SDPO_BENCH_BATCH", 8),
        env("SDPO_BENCH_LEN", 512),
        env("SDPO_BENCH_VOCAB", 49152),
    );
    let backend = std::env::var("SDPO_BENCH_BACKEND").unwrap_or_else(|_| "ndarray".into());
    // A child runs one case: `loss_memory --case N` (cargo bench adds `--bench`).
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let case = args
            .get(i + 1)
            .and_then(|c| c.parse::<usize>().ok())
            .expect("--case N");
        let (extra, secs) = match backend.as_str() {
            "flex" => run::<Flex<f32>>(case, [b, t, v]),
            _ => run::<NdArray<f32>>(case, [b, t, v]),
        };
        println!("{extra} {secs}");
        return;
    }
    let tensor_mb = (b * t * v * 4) as f64 / 1e6;
    println!("{backend}, shape [{b}, {t}, {v}]: one [B, T, V] f32 tensor is {tensor_mb:.0} MB");
    println!(
        "{:<42} {:>10} {:>14} {:>9}",
        "case", "extra MB", "x [B,T,V] f32", "seconds"
    );
    let exe = std::env::current_exe().expect("the bench binary");
    for (i, (name, _, _)) in CASES.iter().enumerate() {
        let out = std::process::Command::new(&exe)
            .args(["--case", &i.to_string()])
            .output()
            .expect("a child bench process");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let (Some(extra), Some(secs)) = (
            fields.next().and_then(|x| x.parse::<u64>().ok()),
            fields.next().and_then(|x| x.parse::<f64>().ok()),
        ) else {
            println!(
                "{name}: the child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        };
        let mb = extra as f64 / 1e6;
        println!(
            "{:<42} {mb:>10.0} {:>14.2} {secs:>9.2}",
            format!("{name}/forward_backward"),
            mb / tensor_mb
        );
    }
}

/// One forward+backward of case `case`: (peak extra bytes, seconds).
fn run<B: LossBackend>(case: usize, [b, t, v]: [usize; 3]) -> (u64, f64) {
    let dev = Default::default();
    B::seed(&dev, 0);
    let student = Tensor::<B, 3>::random([b, t, v], Distribution::Normal(0.0, 3.0), &dev);
    let teacher =
        student.clone() + Tensor::<B, 3>::random([b, t, v], Distribution::Normal(0.0, 1.0), &dev);
    let ids = Tensor::<B, 2, Int>::random([b, t], Distribution::Uniform(0.0, v as f64), &dev);
    let old = Tensor::<B, 2>::random([b, t], Distribution::Normal(-3.0, 1.0), &dev);
    let (_, topk, fused_loss) = CASES[case];
    let cfg = SdpoConfig {
        distillation_topk: topk,
        fused_loss,
        ..SdpoConfig::default()
    };
    peak_extra(|| {
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
    })
}
