//! A custom Rust reward with textual feedback, plugged into the SDPO trainer.
//!
//! The reward checks an arithmetic answer and, when it is wrong, says *how* it is wrong
//! (too large, too small, not a number) without revealing the right answer — the feedback the
//! teacher sees in its reprompt. Runs a few SDPO steps on the built-in model:
//!
//! ```sh
//! cargo run --release --example custom_reward
//! ```

use burn::backend::{Autodiff, NdArray};
use sdpo::train::builtin::{char_tokenizer, init_model, tiny_model_config, Task};
use sdpo::train::dataset::Dataset;
use sdpo::train::reward::{Reward, RewardError, RewardInput, RewardOutput, Rewards};
use sdpo::train::{SdpoTrainer, TrainConfig};

/// Scores 1 for the right sum; otherwise 0 with a hint about the direction of the error.
struct SumWithHints;

impl Reward for SumWithHints {
    fn name(&self) -> &str {
        "sum-with-hints"
    }

    fn score(&self, input: &RewardInput<'_>) -> Result<RewardOutput, RewardError> {
        // `field` fails with a typed error naming the missing dataset field.
        let answer: i64 = input
            .field("answer")?
            .as_str()
            .unwrap_or("")
            .parse()
            .unwrap_or(0);
        Ok(match input.completion.trim().parse::<i64>() {
            Ok(n) if n == answer => RewardOutput::correct(),
            Ok(n) if n > answer => RewardOutput::incorrect(format!("{n} is too large.")),
            Ok(n) => RewardOutput::incorrect(format!("{n} is too small.")),
            Err(_) => RewardOutput::incorrect("The answer is not a whole number."),
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    type B = Autodiff<NdArray<f32>>;
    let device = Default::default();
    let tokenizer = char_tokenizer()?;
    let model = init_model::<B>(&tiny_model_config(tokenizer.vocab_size()), &device);
    let dataset = Dataset::from_rows(Task::Addition.problems())?;
    let rewards = Rewards::new().add(SumWithHints, 1.0)?;
    let mut cfg = TrainConfig {
        steps: 3,
        num_generations: 4,
        prompts_per_step: 2,
        ..TrainConfig::default()
    };
    cfg.sampling.max_new_tokens = 6;
    let mut trainer = SdpoTrainer::new(cfg, model, tokenizer, dataset, rewards, &device)?;
    for _ in 0..3 {
        let report = trainer.step()?;
        let sample = &report.samples[0];
        println!(
            "step {}: reward {:.2}, feedback {:?}",
            report.step, report.metrics["reward/mean"], sample.feedback
        );
    }
    Ok(())
}
