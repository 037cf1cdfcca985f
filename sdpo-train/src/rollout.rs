//! [`Rollout`]: prompts → sampled completions (token ids, text, stop reasons) with any causal
//! decoder, no optimizer involved. The trainer's step, `sdpo eval`, held-out evaluation and
//! [`SdpoTrainer::sample_and_score`](crate::SdpoTrainer::sample_and_score) all sample through
//! it.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Device, Int, Tensor};

use sdpo_core::ChatMessage;
use sdpo_models::arch::CausalDecoder;
use sdpo_models::generate::{generate, left_pad, Generation, SamplingParams, Uniforms};
use sdpo_models::kernels::DecoderBackend;
use sdpo_models::scoring::concat_prompt_response;

use crate::error::TrainError;
use crate::prompts::Prompts;

/// What one sample is drawn for.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRequest {
    /// Index of its dataset row (or of the caller's row list).
    pub row: usize,
    /// Its group: samples of one group share a prompt and are compared with each other.
    pub group: usize,
    /// The student's prompt messages.
    pub messages: Vec<ChatMessage>,
    /// Their token ids (rendered, encoded, cut to the prompt length limit).
    pub prompt_ids: Vec<u32>,
}

/// `n` requests per `(row, messages)`, each prompt encoded once; group `g` is the `g`-th
/// prompt.
///
/// # Errors
/// [`TrainError::Tokenizer`] naming the row (`what` says which rows: "dataset row").
pub fn requests(
    prompts: &Prompts,
    rows: impl IntoIterator<Item = (usize, Vec<ChatMessage>)>,
    n: usize,
    what: &str,
) -> Result<Vec<SampleRequest>, TrainError> {
    let mut out = Vec::new();
    for (group, (row, messages)) in rows.into_iter().enumerate() {
        let prompt_ids = prompts.encode_prompt(&messages, &format!("{what} {row} prompt"))?;
        for _ in 0..n {
            out.push(SampleRequest {
                row,
                group,
                messages: messages.clone(),
                prompt_ids: prompt_ids.clone(),
            });
        }
    }
    Ok(out)
}

/// A generation batch: the requests, their left-padded prompts and what was sampled.
#[derive(Debug, Clone)]
pub struct Rollout<B: Backend> {
    /// One request per sample, in batch order.
    pub requests: Vec<SampleRequest>,
    /// Left-padded prompt ids, `[n, P]`.
    pub prompt_ids: Tensor<B, 2, Int>,
    /// `true` on real prompt tokens, `[n, P]`.
    pub prompt_mask: Tensor<B, 2, Bool>,
    /// The sampled responses (ids, mask, log-probs on the device; tokens and stop flags on
    /// the host).
    pub generation: Generation<B>,
    /// Each response's text, special tokens skipped.
    pub texts: Vec<String>,
}

impl<B: Backend> Rollout<B> {
    /// Samples one completion per request with `model`, drawing from `rng` (a shared
    /// [`SamplerRng`](sdpo_models::generate::SamplerRng) or one stream per request).
    ///
    /// # Errors
    /// [`TrainError::Generation`] for invalid parameters or non-finite logits;
    /// [`TrainError::Tokenizer`] when a completion cannot be decoded.
    pub fn run<M: CausalDecoder<B>>(
        model: &M,
        prompts: &Prompts,
        requests: Vec<SampleRequest>,
        params: &SamplingParams,
        rng: &mut (impl Uniforms + ?Sized),
        device: &Device<B>,
    ) -> Result<Self, TrainError>
    where
        B: DecoderBackend,
    {
        let ids: Vec<Vec<u32>> = requests.iter().map(|r| r.prompt_ids.clone()).collect();
        let (prompt_ids, prompt_mask) = left_pad::<B>(&ids, prompts.pad_id(), device);
        let generation = generate(
            model,
            prompt_ids.clone(),
            prompt_mask.clone(),
            params,
            prompts.pad_id(),
            rng,
        )?;
        let texts = prompts.decode_all(&generation.tokens)?;
        Ok(Self {
            requests,
            prompt_ids,
            prompt_mask,
            generation,
            texts,
        })
    }

    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// The student's input: `[left-padded prompt | right-padded response]`, `[n, P + R]`.
    pub fn student_inputs(&self) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
        concat_prompt_response(
            self.prompt_ids.clone(),
            self.prompt_mask.clone(),
            self.generation.response_ids.clone(),
            self.generation.response_mask.clone(),
        )
    }
}
