//! Calibration run of the built-in job: warm start, then SDPO (or GRPO with `grpo` as the
//! first argument) on the built-in task, printing train reward and held-out greedy success.
//!
//! `cargo run --release -p sdpo-train --example builtin_sdpo -- [sdpo|grpo] [steps] [task] [lr] [train_rows]`

use burn::backend::{Autodiff, NdArray};
use sdpo_train::builtin::job::{
    builtin_job, default_train_config, greedy_success, BuiltinJobConfig,
};
use sdpo_train::builtin::Task;
use sdpo_train::TrainConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let algo = args.get(1).map(String::as_str).unwrap_or("sdpo");
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let task = match args.get(3).map(String::as_str) {
        Some("sort-digits") => Task::SortDigits,
        _ => Task::Addition,
    };
    let mut cfg = TrainConfig {
        steps,
        ..default_train_config()
    };
    if let Some(lr) = args.get(4).and_then(|s| s.parse().ok()) {
        cfg.optimizer.learning_rate = lr;
    }
    if algo == "grpo" {
        cfg.sdpo.distillation_weight = 0.0;
    }
    let job_cfg = BuiltinJobConfig {
        task,
        train_rows: args.get(5).and_then(|s| s.parse().ok()),
        ..BuiltinJobConfig::default()
    };
    let device = Default::default();
    let t0 = std::time::Instant::now();
    let mut job = builtin_job::<Autodiff<NdArray<f32>>>(&job_cfg, cfg, &device, |s, l| {
        if s % 50 == 0 {
            println!("warm {s} loss {l:.3}");
        }
    })?;
    println!("warm start {:.1}s", t0.elapsed().as_secs_f64());
    let before = greedy_success(&job.trainer, &job.held_out, 8)?;
    println!("held-out before {before:.3}");
    let mut window = Vec::new();
    for s in 0..steps {
        let r = job.trainer.step()?;
        window.push(r.metrics["reward/mean"]);
        if s % 10 == 9 {
            let mean = window.iter().sum::<f64>() / window.len() as f64;
            window.clear();
            println!("  window reward {mean:.3}");
            let h = greedy_success(&job.trainer, &job.held_out, 8)?;
            println!(
                "step {} reward {:.3} reprompt {:.2} loss {:.4} held-out {h:.3} t {:.2}s",
                r.step,
                r.metrics["reward/mean"],
                r.metrics["self_distillation/reprompt_sample_fraction"],
                r.metrics["loss"],
                r.metrics["time/step"]
            );
        }
    }
    println!("total {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}
