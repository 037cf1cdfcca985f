//! Batched sampling with a KV cache: temperature, top-p, top-k, min-p, stop ids, seeded.
//!
//! [`generate`] prefills each distinct prompt once (rows that repeat a prompt, such as the
//! samples of a group, get a copy of its keys and values) into a [`KvCache`] allocated for the
//! whole generation, then feeds exactly one new token per row and step, written into the
//! cache in place, so the prefix is never run again. The decode step runs the backend's fused
//! kernels where it has them ([`crate::kernels`]), the composite tensor code otherwise. Each step filters and draws on the device ([`select`]: temperature, top-k, top-p,
//! min-p, the inverse-CDF draw at one uniform number per row from the caller's [`Uniforms`]:
//! a seeded [`SamplerRng`] shared by the rows, or one stream per row, [`RowStreams`]); only
//! the chosen ids (`[batch]` ints) are copied to the host, where the stop check needs them.
//! The log-probabilities stay on the device until the end.
//! [`sampling`] is the same selection on the host, one row at a time: the reference the
//! device path is tested against.
//!
//! # Determinism and stopped rows
//! When sampling (temperature > 0) every step draws one uniform number per row, in row order,
//! for every row of the batch, finished or not. A row's tokens therefore depend only on its
//! own logits and on `(seed, row index, step)`: a row that stops early changes nothing for
//! the others, and the same seed gives the same samples. Moving a prompt to another row index
//! (or generating it alone) gives it other random numbers — unless each row draws from a
//! stream of its own ([`RowStreams`]): then a row's samples depend only on its stream, not on
//! the batch it is generated in (the trainer numbers streams by sample, so one process and
//! several data-parallel ranks draw the same samples). Greedy decoding draws nothing and
//! does not depend on the batch. The same seed gives the same samples on the same backend;
//! another backend may round a draw that falls within float32 rounding of a boundary between
//! two tokens to the neighbour. A finished row is fed `pad_id` and masked out of the keys
//! until a quarter of the batch has finished; then the finished rows leave the batch (and
//! the cache), so they cost nothing more. Generation ends when every row has stopped or after
//! `max_new_tokens` steps.
//!
//! [`KvCache`]: crate::KvCache

pub mod batch;
mod decoding;
pub mod params;
pub mod sampling;
pub mod select;

use burn::tensor::{backend::Backend, Bool, IndexingUpdateOp, Int, Tensor, TensorData};
use rand::Rng;

use crate::arch::CausalDecoder;
use crate::kernels::{self, DecoderBackend};
use decoding::Decoding;

pub use batch::left_pad;
pub use params::SamplingParams;
pub use sampling::{candidates, sample_token, Candidate, SampledToken, SamplingError};
pub use select::{apply_repetition_penalty, select_tokens, Selection};

/// The RNG generation draws from: seeded (`SamplerRng::seed_from_u64`), cloneable and
/// serializable (its state goes into checkpoints).
pub type SamplerRng = rand_chacha::ChaCha8Rng;

/// A seeded [`SamplerRng`].
pub fn sampler_rng(seed: u64) -> SamplerRng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// Where sampling's random numbers come from: one uniform number in `[0, 1)` per row of the
/// batch and generated token.
pub trait Uniforms {
    /// The rows this source serves, when it serves a fixed number (`None`: any).
    fn rows(&self) -> Option<usize> {
        None
    }

    /// One uniform number for each of `rows` rows, in row order.
    fn next_uniforms(&mut self, rows: usize) -> Vec<f32>;
}

/// One generator shared by the rows: each step draws the rows' numbers in row order.
impl Uniforms for SamplerRng {
    fn next_uniforms(&mut self, rows: usize) -> Vec<f32> {
        (0..rows).map(|_| self.random::<f64>() as f32).collect()
    }
}

/// One stream per row: a row's numbers do not depend on the other rows of the batch.
#[derive(Debug, Clone)]
pub struct RowStreams(Vec<SamplerRng>);

impl RowStreams {
    /// Streams `first .. first + rows` of the ChaCha8 key `seed` (stream `i` is the `i`-th
    /// sample's wherever it is generated).
    pub fn new(seed: u64, first: u64, rows: usize) -> Self {
        Self(
            (first..first + rows as u64)
                .map(|stream| {
                    let mut rng = sampler_rng(seed);
                    rng.set_stream(stream);
                    rng
                })
                .collect(),
        )
    }
}

impl Uniforms for RowStreams {
    fn rows(&self) -> Option<usize> {
        Some(self.0.len())
    }

    fn next_uniforms(&mut self, rows: usize) -> Vec<f32> {
        self.0
            .iter_mut()
            .take(rows)
            .map(|rng| rng.random::<f64>() as f32)
            .collect()
    }
}

/// Why generation cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerationError {
    /// A sampling parameter is out of range.
    #[error("invalid sampling parameter `{field}` = {value}: expected {expected}")]
    InvalidParam {
        /// Field of [`SamplingParams`].
        field: &'static str,
        /// The value found.
        value: String,
        /// The accepted range.
        expected: &'static str,
    },
    /// The batch has no rows.
    #[error("cannot generate for an empty batch of prompts")]
    EmptyBatch,
    /// Prompt ids and mask differ in shape.
    #[error("prompt ids have shape {ids:?} but the prompt mask has shape {mask:?}")]
    ShapeMismatch {
        /// Shape of the ids.
        ids: [usize; 2],
        /// Shape of the mask.
        mask: [usize; 2],
    },
    /// A row of the batch has no real token.
    #[error("prompt row {row} is empty (its mask has no real token)")]
    EmptyPrompt {
        /// Row index.
        row: usize,
    },
    /// A row has padding after a real token.
    #[error(
        "prompt row {row} is not left-padded: padding at position {position} follows a real token"
    )]
    NotLeftPadded {
        /// Row index.
        row: usize,
        /// The first padding position after a real token.
        position: usize,
    },
    /// A prompt id (padding included) is not a token of the model.
    #[error("prompt row {row}, position {position}: token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfVocab {
        /// Row index.
        row: usize,
        /// Position in the padded row.
        position: usize,
        /// The id found.
        id: i64,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// The padding id is not a token of the model (it is fed to finished rows).
    #[error("pad id {pad_id} is outside the vocabulary of {vocab_size}")]
    PadIdOutOfVocab {
        /// The pad id given.
        pad_id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A prompt fills the model's positions, leaving none for a new token.
    #[error("prompt row {row} has {len} tokens; the model has {max_positions} positions and needs one free for a new token")]
    PromptTooLong {
        /// Row index.
        row: usize,
        /// Its number of real tokens.
        len: usize,
        /// The model's `max_position_embeddings`.
        max_positions: usize,
    },
    /// A source of random numbers with one stream per row has another number of rows.
    #[error("the sampler has {streams} row streams for a batch of {batch} prompts")]
    StreamCount {
        /// Streams of the source.
        streams: usize,
        /// Rows of the batch.
        batch: usize,
    },
    /// The model produced logits that cannot be sampled from.
    #[error("row {row}, new token {step}: {source}")]
    BadLogits {
        /// Row index.
        row: usize,
        /// Index of the token being generated.
        step: usize,
        /// What was wrong.
        source: SamplingError,
    },
}

/// The result of [`generate`].
#[derive(Debug, Clone)]
pub struct Generation<B: Backend> {
    /// Generated tokens, `[batch, max_len]` (`max_len` = longest row, at most
    /// `max_new_tokens`); positions after a row's stop token hold `pad_id`.
    pub response_ids: Tensor<B, 2, Int>,
    /// 1.0 on real response tokens, the stop token included, else 0.0; `[batch, max_len]`.
    pub response_mask: Tensor<B, 2>,
    /// `log p(token)` under `softmax(logits / temperature)` over the full vocabulary, before
    /// top-k / top-p / min-p (plain `log_softmax` when greedy); 0.0 at padding.
    /// `[batch, max_len]`.
    pub log_probs: Tensor<B, 2>,
    /// Host copy of each row's tokens, ending with the stop token when there is one.
    pub tokens: Vec<Vec<u32>>,
    /// `true` when the row ended with a stop id, `false` when it hit `max_new_tokens`.
    pub stopped: Vec<bool>,
    /// Bytes copied from the device to the host while generating: the chosen ids of each step
    /// (`batch` ints per generated token position), nothing else.
    pub host_bytes: usize,
}

/// One row's progress.
#[derive(Debug, Clone, Default)]
struct Row {
    tokens: Vec<u32>,
    stopped: bool,
}

/// Generates up to `params.max_new_tokens` tokens after each left-padded prompt.
///
/// One prefill per distinct prompt fills the KV cache; each following step feeds one token
/// per unfinished row with the cache (positions continue from the row's own prompt length,
/// the key mask grows by one column).
/// See the [module docs](self) for how random numbers are assigned to rows.
///
/// # Shapes
/// - `prompt_ids`: `[batch, prompt_len]`, left-padded
/// - `prompt_mask`: `[batch, prompt_len]`, `true` = real token
///
/// # Errors
/// [`GenerationError`]: invalid params, an empty batch or prompt, a batch that is not
/// left-padded or holds ids outside the vocabulary, a `pad_id` outside the vocabulary, a
/// prompt with `max_position_embeddings` tokens or more, non-finite logits.
pub fn generate<B: DecoderBackend, M: CausalDecoder<B>, U: Uniforms + ?Sized>(
    model: &M,
    prompt_ids: Tensor<B, 2, Int>,
    prompt_mask: Tensor<B, 2, Bool>,
    params: &SamplingParams,
    pad_id: u32,
    rng: &mut U,
) -> Result<Generation<B>, GenerationError> {
    params.validate()?;
    let config = model.model_config();
    let vocab_size = config.vocab_size;
    let prompts = batch::prompt_rows(
        &prompt_ids,
        &prompt_mask,
        vocab_size,
        config.max_position_embeddings,
    )?;
    if pad_id as usize >= vocab_size {
        return Err(GenerationError::PadIdOutOfVocab { pad_id, vocab_size });
    }
    let [batch, width] = prompt_ids.dims();
    if let Some(streams) = rng.rows().filter(|&s| s != batch) {
        return Err(GenerationError::StreamCount { streams, batch });
    }
    let device = prompt_ids.device();
    let _span = tracing::debug_span!("generate", batch, prompt_len = width).entered();

    // With a repetition penalty: how often each active row holds each id so far (its
    // prompt's real tokens to start with), `[active, vocab]`.
    let mut seen = (params.repetition_penalty != 1.0).then(|| {
        Tensor::<B, 2>::zeros([batch, vocab_size], &device).scatter(
            1,
            prompt_ids.clone(),
            prompt_mask.clone().float(),
            IndexingUpdateOp::Add,
        )
    });
    let mut cache = model.empty_cache();
    cache.reserve(width + params.max_new_tokens);
    let mut logits = decoding::prefill(model, prompt_ids, prompt_mask, &prompts, &mut cache);
    let mut state = Decoding::new(prompts.real.clone());
    let mut rows = vec![Row::default(); batch];
    let mut log_probs = Vec::new();
    let mut host_bytes = 0;

    for step in 0..params.max_new_tokens {
        // One uniform per row and step, finished rows included (see the module docs).
        let uniforms = (!params.is_greedy()).then(|| rng.next_uniforms(batch));
        let selection = choose(
            logits.clone(),
            params,
            uniforms,
            &state.active,
            seen.as_ref(),
        );
        if let Some(seen) = seen.as_mut() {
            // The chosen ids join what the rows hold (a finished row's does not matter).
            let active = state.active.len();
            let chosen = selection.ids.clone().clamp_min(0).reshape([active, 1]);
            let ones = Tensor::<B, 2>::ones([active, 1], &device);
            *seen = seen.clone().scatter(1, chosen, ones, IndexingUpdateOp::Add);
        }
        let ids = selection.ids.into_data();
        host_bytes += ids.bytes.len();
        let ids: Vec<i64> = ids.iter::<i64>().collect();
        for (i, &r) in state.active.iter().enumerate() {
            let row = &mut rows[r];
            if row.stopped {
                continue;
            }
            if ids[i] < 0 {
                return Err(bad_logits(logits, i, r, step));
            }
            row.tokens.push(ids[i] as u32);
            row.stopped = params.stop_token_ids.contains(&(ids[i] as u32));
        }
        log_probs.push(per_row(selection.log_probs, &state.active, batch));
        if step + 1 == params.max_new_tokens || rows.iter().all(|r| r.stopped) {
            break;
        }
        let stopped: Vec<bool> = rows.iter().map(|r| r.stopped).collect();
        seen = state.compact(&stopped, &mut cache, seen);
        // Feed each active row the token just chosen; a finished one gets a masked-out pad.
        let feed = |r: usize| match rows[r].stopped {
            true => (i64::from(pad_id), false),
            false => (i64::from(rows[r].tokens[step]), true),
        };
        let active = state.active.len();
        let next: Vec<i64> = state.active.iter().map(|&r| feed(r).0).collect();
        let live: Vec<bool> = state.active.iter().map(|&r| feed(r).1).collect();
        let positions: Vec<i64> = (state.active.iter())
            .map(|&r| (prompts.lengths[r] + step) as i64)
            .collect();
        state.feed(&live);
        let hidden = model.decode_hidden(
            Tensor::from_data(TensorData::new(next, [active, 1]), &device),
            state.key_mask(&device),
            Tensor::from_data(TensorData::new(positions, [active, 1]), &device),
            Some(&mut cache),
        );
        logits = model.decode_logits(hidden).reshape([active, vocab_size]);
    }
    Ok(assemble(
        rows,
        Tensor::cat(log_probs, 1),
        pad_id,
        host_bytes,
    ))
}

/// One step's choice for the active rows (`logits`: `[active, vocab]`): the repetition
/// penalty, then the backend's selection kernel where it covers the settings (no top-k,
/// top-p or min-p), else the composite [`select_tokens`].
fn choose<B: DecoderBackend>(
    logits: Tensor<B, 2>,
    params: &SamplingParams,
    uniforms: Option<Vec<f32>>,
    active: &[usize],
    seen: Option<&Tensor<B, 2>>,
) -> Selection<B> {
    let [_, vocab] = logits.dims();
    let uniforms: Option<Vec<f32>> = uniforms.map(|u| active.iter().map(|&r| u[r]).collect());
    let logits = match seen {
        Some(seen) => apply_repetition_penalty(
            logits,
            seen.clone().greater_elem(0.0),
            params.repetition_penalty,
        ),
        None => logits,
    };
    let filtered =
        (params.top_k > 0 && params.top_k < vocab) || params.top_p < 1.0 || params.min_p > 0.0;
    if !filtered {
        let temperature = (!params.is_greedy()).then_some(params.temperature);
        if let Some((ids, log_probs)) = kernels::select(&logits, temperature, uniforms.as_deref()) {
            return Selection { ids, log_probs };
        }
    }
    let device = logits.device();
    let uniforms = uniforms.map(|u| {
        let n = u.len();
        Tensor::<B, 1>::from_data(TensorData::new(u, [n]), &device)
    });
    select_tokens(logits, params, uniforms)
}

/// A step's log-probabilities of the active rows as a `[batch, 1]` column (0 for rows no
/// longer in the batch).
fn per_row<B: Backend>(log_probs: Tensor<B, 1>, active: &[usize], batch: usize) -> Tensor<B, 2> {
    if active.len() == batch {
        return log_probs.reshape([batch, 1]);
    }
    let device = log_probs.device();
    let rows: Vec<i64> = active.iter().map(|&r| r as i64).collect();
    let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [active.len()]), &device);
    Tensor::<B, 1>::zeros([batch], &device)
        .select_assign(0, rows, log_probs, IndexingUpdateOp::Add)
        .reshape([batch, 1])
}

/// The error for row `row` (row `local` of `logits`, `[active, vocab]`), whose selection was
/// marked invalid: its first non-finite logit, read back on this error path only.
fn bad_logits<B: Backend>(
    logits: Tensor<B, 2>,
    local: usize,
    row: usize,
    step: usize,
) -> GenerationError {
    let vocab = logits.dims()[1];
    let host: Vec<f32> = logits
        .slice([local..local + 1, 0..vocab])
        .into_data()
        .iter::<f32>()
        .collect();
    let source = match host.iter().position(|x| !x.is_finite()) {
        Some(index) => SamplingError::NonFinite {
            index,
            value: host[index],
        },
        None => SamplingError::Empty,
    };
    GenerationError::BadLogits { row, step, source }
}

/// Pads the rows' tokens into the output tensors; `log_probs` (`[batch, len]`, on the device)
/// is zeroed after each row's end.
fn assemble<B: Backend>(
    rows: Vec<Row>,
    log_probs: Tensor<B, 2>,
    pad_id: u32,
    host_bytes: usize,
) -> Generation<B> {
    let device = log_probs.device();
    let [batch, len] = log_probs.dims();
    let mut ids = vec![i64::from(pad_id); batch * len];
    let mut mask = vec![0f32; batch * len];
    for (r, row) in rows.iter().enumerate() {
        for (j, &t) in row.tokens.iter().enumerate() {
            ids[r * len + j] = i64::from(t);
            mask[r * len + j] = 1.0;
        }
    }
    let shape = [batch, len];
    let response_mask = Tensor::<B, 2>::from_data(TensorData::new(mask, shape), &device);
    Generation {
        response_ids: Tensor::from_data(TensorData::new(ids, shape), &device),
        log_probs: log_probs * response_mask.clone(),
        response_mask,
        stopped: rows.iter().map(|r| r.stopped).collect(),
        tokens: rows.into_iter().map(|r| r.tokens).collect(),
        host_bytes,
    }
}
