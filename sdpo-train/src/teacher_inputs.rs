//! [`TeacherInputs`]: the reprompt plan turned into the teacher's token ids — each sample's
//! teacher prompt (a demonstration and/or feedback, or its own prompt) followed by the
//! sample's response.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use sdpo_core::reprompt::RepromptPlan;
use sdpo_core::{RepromptTruncation, SdpoConfig};
use sdpo_models::generate::left_pad;
use sdpo_models::scoring::concat_prompt_response;

use crate::error::TrainError;
use crate::prompts::Prompts;
use crate::rollout::Rollout;

/// The teacher's side of a generation batch.
#[derive(Debug, Clone)]
pub struct TeacherInputs<B: Backend> {
    /// `[left-padded teacher prompt | right-padded response]`, `[n, T + R]`.
    pub ids: Tensor<B, 2, Int>,
    /// `true` on real tokens of `ids`.
    pub mask: Tensor<B, 2, Bool>,
    /// 1.0 for samples with a teacher signal (demonstration or feedback), `[n]`.
    pub self_distillation_mask: Tensor<B, 1>,
    /// Each sample's teacher prompt as rendered text (its own prompt when not reprompted).
    pub texts: Vec<String>,
    /// Each sample's teacher prompt as token ids, before padding.
    pub prompts: Vec<Vec<u32>>,
}

impl<B: Backend> TeacherInputs<B> {
    /// Renders and encodes the plan's teacher prompts (reprompted ones limited to
    /// `sdpo.max_reprompt_len` tokens, cut on the configured side) and appends the responses.
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`]; [`TrainError::RepromptTooLong`] with
    /// `reprompt_truncation: "error"`.
    pub fn build(
        plan: &RepromptPlan,
        rollout: &Rollout<B>,
        prompts: &Prompts,
        sdpo: &SdpoConfig,
        device: &Device<B>,
    ) -> Result<Self, TrainError> {
        let n = rollout.len();
        let mut ids = Vec::with_capacity(n);
        let mut texts = Vec::with_capacity(n);
        for (i, (teacher, request)) in plan.teachers.iter().zip(&rollout.requests).enumerate() {
            if teacher.reprompted() {
                let context = format!("teacher prompt of sample {i}");
                let text = prompts.render(&teacher.messages, &context)?;
                let encoded = prompts.encode(&text, &context)?;
                ids.push(truncate(
                    encoded,
                    sdpo.max_reprompt_len,
                    sdpo.reprompt_truncation,
                    i,
                )?);
                texts.push(text);
            } else {
                ids.push(request.prompt_ids.clone());
                texts.push(prompts.render(&request.messages, "student prompt")?);
            }
        }
        let (prompt_ids, prompt_mask) = left_pad::<B>(&ids, prompts.pad_id(), device);
        let prompts = ids;
        let generation = &rollout.generation;
        let (ids, mask) = concat_prompt_response(
            prompt_ids,
            prompt_mask,
            generation.response_ids.clone(),
            generation.response_mask.clone(),
        );
        let self_distillation_mask = Tensor::from_data(
            TensorData::new(plan.self_distillation_mask.clone(), [n]),
            device,
        );
        Ok(Self {
            ids,
            mask,
            self_distillation_mask,
            texts,
            prompts,
        })
    }
}

/// Applies `max_reprompt_len` with the configured truncation side.
fn truncate(
    mut ids: Vec<u32>,
    max: usize,
    side: RepromptTruncation,
    sample: usize,
) -> Result<Vec<u32>, TrainError> {
    if ids.len() <= max {
        return Ok(ids);
    }
    match side {
        RepromptTruncation::Left => {
            ids.drain(..ids.len() - max);
            Ok(ids)
        }
        RepromptTruncation::Right => {
            ids.truncate(max);
            Ok(ids)
        }
        RepromptTruncation::Error => Err(TrainError::RepromptTooLong {
            sample,
            len: ids.len(),
            max,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_sides() {
        let ids = vec![1, 2, 3, 4];
        assert_eq!(
            truncate(ids.clone(), 2, RepromptTruncation::Left, 0).unwrap(),
            vec![3, 4]
        );
        assert_eq!(
            truncate(ids.clone(), 2, RepromptTruncation::Right, 0).unwrap(),
            vec![1, 2]
        );
        let e = truncate(ids, 2, RepromptTruncation::Error, 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sample 7") && e.contains("4 tokens"), "{e}");
    }
}
