//! Supervised warm start of the built-in model: a randomly initialized model succeeds at
//! nothing, and SDPO needs a model that (a) sometimes solves the task and (b) can use a
//! demonstration or feedback in its context. So before RL, the model is trained by
//! next-token cross-entropy on answers in two formats:
//!
//! - plain: the student's prompt → the answer;
//! - reprompt: the teacher's prompt (SDPO's `reprompt_template` with a correct solution, or
//!   with feedback about a wrong attempt) → the answer.

use crate::TrainBackend;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::ElementConversion;
use burn::tensor::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use serde::{Deserialize, Serialize};

use sdpo_core::config::ConfigError;
use sdpo_core::reprompt::{teacher_prompt, SampleOutcome};
use sdpo_core::{ChatMessage, SdpoConfig};
use sdpo_models::generate::left_pad;
use sdpo_models::scoring::{
    concat_prompt_response, response_log_probs, response_logits, ScoringError,
};
use sdpo_models::{CausalLm, Tokenizer, TokenizerError};

use super::tasks::{text_field, Task};
use crate::dataset::Row;

/// The supervised warm start before RL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmStartConfig {
    /// AdamW steps. Default 1000.
    pub steps: usize,
    /// Examples per step. Default 32.
    pub batch_size: usize,
    /// Learning rate. Default 3e-3.
    pub learning_rate: f64,
    /// Fraction of training problems whose plain answer is taught (the rest only appear as
    /// demonstrations or with feedback). Default 0.5.
    pub plain_fraction: f64,
    /// Fraction of the plain-format examples whose target is the task's typical mistake
    /// (sorting: the input copied unsorted; addition: the sum plus one) instead of the
    /// answer, so the warm-started policy is an imperfect one — right on some prompts, making
    /// a habitual mistake on others — as a pretrained model would be. Reprompt-format
    /// examples always end in the right answer. Default 0.5.
    pub plain_mistakes: f64,
    /// Teach the reprompt format with a correct demonstration. Default true.
    pub with_demonstration: bool,
    /// Teach the reprompt format with feedback on a wrong attempt. Default true.
    pub with_feedback: bool,
}

impl WarmStartConfig {
    /// Checks every field's domain.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field (`warm_start.…`) and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, value: String, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                value,
                reason: reason.to_string(),
            })
        };
        if self.batch_size == 0 && self.steps > 0 {
            return invalid(
                "warm_start.batch_size",
                "0".into(),
                "must be at least 1 when warm_start.steps > 0",
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return invalid(
                "warm_start.learning_rate",
                self.learning_rate.to_string(),
                "must be a finite number > 0",
            );
        }
        for (field, v) in [
            ("warm_start.plain_fraction", self.plain_fraction),
            ("warm_start.plain_mistakes", self.plain_mistakes),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return invalid(field, v.to_string(), "must be in [0, 1]");
            }
        }
        Ok(())
    }
}

impl Default for WarmStartConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 32,
            learning_rate: 3e-3,
            plain_fraction: 0.5,
            plain_mistakes: 0.5,
            with_demonstration: true,
            with_feedback: true,
        }
    }
}

/// One supervised example: prompt tokens and target tokens (ending with the eos token).
#[derive(Debug, Clone, PartialEq)]
pub struct SftExample {
    /// The rendered prompt, tokenized.
    pub prompt: Vec<u32>,
    /// The target completion, tokenized, eos included.
    pub target: Vec<u32>,
}

/// Builds warm-start examples for `rows` of `task`, rendered with the tokenizer's chat template
/// and SDPO's templates from `sdpo` (so the reprompt format is exactly what the teacher sees).
/// `mix` says which formats (its `plain_fraction`, `plain_mistakes`, `with_demonstration`,
/// `with_feedback`; the optimizer fields are not used here).
///
/// # Errors
/// The tokenizer's error when a prompt does not render or encode.
pub fn sft_examples(
    task: Task,
    rows: &[Row],
    tokenizer: &Tokenizer,
    sdpo: &SdpoConfig,
    mix: &WarmStartConfig,
    seed: u64,
) -> Result<Vec<SftExample>, TokenizerError> {
    let templates = sdpo.templates().map_err(|e| TokenizerError::Encode {
        len: 0,
        start: "reprompt templates".into(),
        message: e.to_string(),
    })?;
    let eos = tokenizer.eos_token_ids().first().copied();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut rng);
    let plain_rows = (rows.len() as f64 * mix.plain_fraction).round() as usize;
    let mut out = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        let row = &rows[i];
        let answer = text_field(&row.fields, "answer").to_string();
        let mut target = tokenizer.encode(&answer, false)?;
        target.extend(eos);
        let messages = row.prompt.to_messages();
        let encode = |msgs: &[ChatMessage]| -> Result<Vec<u32>, TokenizerError> {
            tokenizer.encode(&tokenizer.apply_chat_template(msgs, true)?, false)
        };
        if rank < plain_rows {
            let plain_target = if rng.random_bool(mix.plain_mistakes) {
                let mut t = tokenizer.encode(&typical_mistake(task, row), false)?;
                t.extend(eos);
                t
            } else {
                target.clone()
            };
            out.push(SftExample {
                prompt: encode(&messages)?,
                target: plain_target,
            });
        }
        if mix.with_demonstration {
            let sample = SampleOutcome {
                group: 0,
                prompt: &messages,
                response: "",
                score: 0.0,
                feedback: None,
            };
            let tp = teacher_prompt(&sample, Some(answer.clone()), sdpo, &templates);
            out.push(SftExample {
                prompt: encode(&tp.messages)?,
                target: target.clone(),
            });
        }
        if mix.with_feedback {
            let wrong = wrong_attempt(task, row, &mut rng);
            let (_, feedback) = task.check(row, &wrong);
            if let Some(fb) = feedback {
                let sample = SampleOutcome {
                    group: 0,
                    prompt: &messages,
                    response: &wrong,
                    score: 0.0,
                    feedback: Some(&fb),
                };
                let tp = teacher_prompt(&sample, None, sdpo, &templates);
                out.push(SftExample {
                    prompt: encode(&tp.messages)?,
                    target: target.clone(),
                });
            }
        }
    }
    out.shuffle(&mut rng);
    Ok(out)
}

/// The task's habitual mistake on `row`: sorting returns the input unsorted, addition is off
/// by one. (For an already sorted input the "mistake" is the right answer.)
fn typical_mistake(task: Task, row: &Row) -> String {
    let field = |name| text_field(&row.fields, name);
    match task {
        Task::Addition => (field("answer").parse::<i64>().unwrap_or(0) + 1).to_string(),
        Task::SortDigits => field("digits").to_string(),
    }
}

/// A plausible wrong attempt (for feedback examples): the unsorted input, a digit dropped, or
/// a neighbour swap.
fn wrong_attempt(task: Task, row: &Row, rng: &mut ChaCha8Rng) -> String {
    let answer = text_field(&row.fields, "answer");
    match task {
        Task::Addition => {
            let n: i64 = answer.parse().unwrap_or(0);
            (n + if rng.random_bool(0.5) { 1 } else { -1 })
                .abs()
                .to_string()
        }
        Task::SortDigits => {
            let digits = text_field(&row.fields, "digits");
            let mut c: Vec<char> = answer.chars().collect();
            match rng.random_range(0..3) {
                0 if digits != answer => digits.to_string(),
                1 if c.len() > 1 => {
                    c.remove(rng.random_range(0..c.len()));
                    c.into_iter().collect()
                }
                _ => {
                    let len = c.len();
                    if len > 1 {
                        let i = rng.random_range(0..len - 1);
                        c.swap(i, i + 1);
                    }
                    let s: String = c.into_iter().collect();
                    if s == answer {
                        format!("{s}0")
                    } else {
                        s
                    }
                }
            }
        }
    }
}

/// Mean next-token cross-entropy of the targets of `batch` (a graph on `B`).
///
/// # Errors
/// [`ScoringError`] if the batch is malformed.
pub fn sft_loss<B: TrainBackend>(
    model: &CausalLm<B>,
    batch: &[&SftExample],
    pad_id: u32,
    device: &Device<B>,
) -> Result<Tensor<B, 1>, ScoringError> {
    let prompts: Vec<Vec<u32>> = batch.iter().map(|e| e.prompt.clone()).collect();
    let (p_ids, p_mask) = left_pad::<B>(&prompts, pad_id, device);
    let r = batch.iter().map(|e| e.target.len()).max().unwrap_or(1);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for e in batch {
        for j in 0..r {
            ids.push(e.target.get(j).copied().unwrap_or(pad_id) as i64);
            mask.push(if j < e.target.len() { 1.0f32 } else { 0.0 });
        }
    }
    let n = batch.len();
    let resp = Tensor::<B, 2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(ids, [n, r]),
        device,
    );
    let resp_mask = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(mask, [n, r]), device);
    let (all_ids, all_mask) =
        concat_prompt_response(p_ids, p_mask, resp.clone(), resp_mask.clone());
    let logits = response_logits(model, all_ids, all_mask, r, None)?;
    let lp = response_log_probs(logits, resp);
    Ok((lp * resp_mask.clone()).sum().neg() / resp_mask.sum().clamp_min(1.0))
}

/// How many batches are sorted by length together in [`length_grouped_batches`].
const LENGTH_GROUP: usize = 8;

/// Splits `examples` (in their order) into batches of `batch_size` with similar prompt lengths,
/// so a batch is padded to little more than its own prompts: consecutive runs of
/// [`LENGTH_GROUP`] batches are sorted by prompt length, cut into batches, and the batches are
/// shuffled (seeded, deterministic). Each example appears in exactly one batch; the last may
/// be smaller.
pub fn length_grouped_batches(examples: &[SftExample], batch_size: usize) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut batches = Vec::with_capacity(examples.len().div_ceil(batch_size));
    let indices: Vec<usize> = (0..examples.len()).collect();
    for group in indices.chunks(batch_size * LENGTH_GROUP) {
        let mut group = group.to_vec();
        group.sort_by_key(|&i| examples[i].prompt.len());
        batches.extend(group.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
    batches
}

/// Trains `model` on `examples` for `cfg.steps` AdamW steps of `cfg.batch_size`, cycling
/// through [`length_grouped_batches`], returning the model and the loss of each step.
///
/// # Errors
/// [`ScoringError`] if a batch is malformed.
pub fn warm_start<B: TrainBackend>(
    mut model: CausalLm<B>,
    examples: &[SftExample],
    cfg: &WarmStartConfig,
    pad_id: u32,
    device: &Device<B>,
    mut on_step: impl FnMut(usize, f64),
) -> Result<(CausalLm<B>, Vec<f64>), ScoringError> {
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.0)
        .init::<B, CausalLm<B>>();
    let mut losses = Vec::with_capacity(cfg.steps);
    if examples.is_empty() {
        return Ok((model, losses));
    }
    let batches = length_grouped_batches(examples, cfg.batch_size);
    for step in 0..cfg.steps {
        let batch: Vec<&SftExample> = batches[step % batches.len()]
            .iter()
            .map(|&i| &examples[i])
            .collect();
        let loss = sft_loss(&model, &batch, pad_id, device)?;
        let value = loss.clone().into_scalar().elem::<f64>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(cfg.learning_rate, model, grads);
        losses.push(value);
        on_step(step, value);
    }
    Ok((model, losses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::{char_tokenizer, init_model, tiny_model_config};
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::backend::Backend;

    #[test]
    fn length_grouped_batches_cover_every_example_once_with_similar_lengths() {
        let examples: Vec<SftExample> = (0..100)
            .map(|i| SftExample {
                prompt: vec![0; (i * 37) % 50 + 1],
                target: vec![1],
            })
            .collect();
        let batches = length_grouped_batches(&examples, 8);
        assert_eq!(batches.len(), 13);
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Sorted within groups of 64: padding per batch is far below the 1..=50 spread.
        let padded: usize = batches
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| examples[i].prompt.len()).max().unwrap())
            .sum();
        let tokens: usize = examples.iter().map(|e| e.prompt.len()).sum();
        assert!(padded < tokens * 13 / 10, "{padded} vs {tokens}");
        assert!(batches.iter().all(|b| b.len() == 8 || b.len() == 4));
    }

    #[test]
    fn warm_start_fits_a_few_examples() {
        type B = Autodiff<NdArray<f32>>;
        let device = Default::default();
        NdArray::<f32>::seed(&device, 5);
        let tok = char_tokenizer().unwrap();
        let model = init_model::<B>(&tiny_model_config(tok.vocab_size()), &device);
        let rows: Vec<Row> = Task::Addition.problems().into_iter().take(4).collect();
        let cfg = WarmStartConfig {
            steps: 150,
            batch_size: 4,
            learning_rate: 3e-3,
            plain_fraction: 1.0,
            plain_mistakes: 0.0,
            with_demonstration: false,
            with_feedback: false,
        };
        let examples =
            sft_examples(Task::Addition, &rows, &tok, &SdpoConfig::default(), &cfg, 0).unwrap();
        assert_eq!(examples.len(), 4);
        let (_, losses) = warm_start(model, &examples, &cfg, 0, &device, |_, _| {}).unwrap();
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(first > 4.0, "{first}");
        assert!(
            last < 0.2,
            "4 examples are not memorized: loss {first} -> {last}"
        );
    }
}
