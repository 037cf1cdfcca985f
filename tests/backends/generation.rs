//! Generation and scoring on the tiny random fixture models (`tests/fixtures/models/`).
//!
//! The references are recomputations without a cache: [`CausalLm::forward_logits`] over the
//! whole sequence, argmax and log-softmax on the host in f64.
//!
//! Tolerances: the cached path and the full recomputation run the same f32 operations on
//! differently shaped tensors (one query against cached keys vs all queries at once), so
//! matmul and softmax sums are ordered differently: ~1e-7 relative per op, ~1e-6 after two
//! layers and the head. Log-probs here are about −5.5 (ln 256), so 1e-4 absolute leaves two
//! orders of margin, while a wrong position, a stale cache column or a missing temperature
//! moves them by 1e-2 or more.

use sdpo::models::kernels::DecoderBackend;
use std::cell::RefCell;

use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use sdpo::models::arch::ModelConfig;
use sdpo::models::generate::sampling::apply_repetition_penalty;
use sdpo::models::generate::{
    generate, left_pad, sampler_rng, Generation, GenerationError, RowStreams, SamplingError,
    SamplingParams,
};
use sdpo::models::scoring::{
    concat_prompt_response, gather_logits, response_log_probs, response_logits, response_topk,
    ScoringError,
};
use sdpo::models::{load_hf_dir, CausalDecoder, CausalLm, KvCache};

use crate::common::{self, host_f32, host_i64, serial};
use crate::lora_fixtures::fixture;
use crate::Target;

const LOG_PROB_TOL: f64 = 1e-4;
const PAD: u32 = 0;

fn model<B: DecoderBackend>(name: &str) -> CausalLm<B> {
    load_hf_dir::<B>(fixture(name), &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Seeded random prompts of the given lengths, ids in `1..vocab` (0 is the pad).
fn prompts(lengths: &[usize], vocab: u32, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    lengths
        .iter()
        .map(|&n| (0..n).map(|_| rng.random_range(1..vocab)).collect())
        .collect()
}

/// `log_softmax(row)` of f32 logits, in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
    common::log_softmax(&row)
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn run<B: DecoderBackend>(
    model: &impl CausalDecoder<B>,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
    seed: u64,
) -> Generation<B> {
    let (ids, mask) = left_pad::<B>(prompts, PAD, &Default::default());
    generate(model, ids, mask, params, PAD, &mut sampler_rng(seed)).unwrap()
}

/// Greedy decoding by recomputing the whole sequence at every step (no cache); returns the
/// tokens and their log-softmax log-probs per row.
fn greedy_by_recomputation<B: DecoderBackend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    steps: usize,
) -> (Vec<Vec<u32>>, Vec<Vec<f64>>) {
    greedy_with_penalty_by_recomputation(model, prompts, steps, 1.0)
}

/// As [`greedy_by_recomputation`], the host repetition penalty applied to each step's logits
/// (every token of the row so far, prompt included).
fn greedy_with_penalty_by_recomputation<B: DecoderBackend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    steps: usize,
    penalty: f64,
) -> (Vec<Vec<u32>>, Vec<Vec<f64>>) {
    let mut seqs = prompts.to_vec();
    let mut tokens = vec![Vec::new(); prompts.len()];
    let mut log_probs = vec![Vec::new(); prompts.len()];
    for _ in 0..steps {
        let (ids, mask) = left_pad::<B>(&seqs, PAD, &Default::default());
        let logits = model.forward_logits(ids, mask);
        let [_, len, vocab] = logits.dims();
        let host = host_f32(logits);
        for (r, seq) in seqs.iter_mut().enumerate() {
            let mut last = host[(r * len + len - 1) * vocab..(r * len + len) * vocab].to_vec();
            apply_repetition_penalty(&mut last, seq, penalty);
            let id = argmax(&last);
            tokens[r].push(id as u32);
            log_probs[r].push(log_softmax(&last)[id]);
            seq.push(id as u32);
        }
    }
    (tokens, log_probs)
}

fn row_log_probs<B: DecoderBackend>(g: &Generation<B>) -> Vec<Vec<f64>> {
    let width = g.response_ids.dims()[1];
    let host = host_f32(g.log_probs.clone());
    g.tokens
        .iter()
        .enumerate()
        .map(|(r, t)| {
            host[r * width..r * width + t.len()]
                .iter()
                .map(|&v| f64::from(v))
                .collect()
        })
        .collect()
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {r} length");
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "{what}: row {r} token {j}: {a} vs {b}"
            );
        }
    }
}

pub fn greedy_generation_matches_full_recomputation<B: Target>() {
    // The Mistral fixture has a sliding window of 5, shorter than prompt + response.
    for name in ["qwen2_bf16", "llama_tied_sharded", "mistral_window"] {
        let model = model::<B>(name);
        let prompts = prompts(&[5, 2, 8], 256, 1);
        let steps = 12;
        let g = run(&model, &prompts, &SamplingParams::greedy(steps), 0);
        let (want_tokens, want_log_probs) = greedy_by_recomputation(&model, &prompts, steps);
        assert_eq!(g.tokens, want_tokens, "{name}: tokens");
        assert_eq!(g.stopped, vec![false; 3], "{name}");
        assert_eq!(g.response_ids.dims(), [3, steps], "{name}");
        let ids = host_i64(g.response_ids.clone());
        let flat: Vec<i64> = want_tokens.concat().iter().map(|&t| i64::from(t)).collect();
        assert_eq!(ids, flat, "{name}: response_ids");
        assert!(host_f32(g.response_mask.clone()).iter().all(|&m| m == 1.0));
        assert_close(&row_log_probs(&g), &want_log_probs, LOG_PROB_TOL, name);
    }
}

/// A decoder that records what each call is given, to prove the prefix is not re-run.
struct Recording<'a, B: DecoderBackend> {
    inner: &'a CausalLm<B>,
    /// `(ids width, key_mask width, cached length before the call)` per `decode_hidden` call.
    hidden_calls: RefCell<Vec<(usize, usize, usize)>>,
    /// Sequence length of each `decode_logits` input.
    logits_calls: RefCell<Vec<usize>>,
}

impl<'a, B: DecoderBackend> Recording<'a, B> {
    fn new(inner: &'a CausalLm<B>) -> Self {
        Self {
            inner,
            hidden_calls: RefCell::new(Vec::new()),
            logits_calls: RefCell::new(Vec::new()),
        }
    }
}

impl<B: DecoderBackend> CausalDecoder<B> for Recording<'_, B> {
    fn model_config(&self) -> &ModelConfig {
        self.inner.model_config()
    }

    fn decode_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let cached = cache.as_ref().map_or(usize::MAX, |c| c.len());
        self.hidden_calls
            .borrow_mut()
            .push((ids.dims()[1], key_mask.dims()[1], cached));
        self.inner.decode_hidden(ids, key_mask, positions, cache)
    }

    fn decode_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.logits_calls.borrow_mut().push(hidden.dims()[1]);
        self.inner.decode_logits(hidden)
    }
}

pub fn kv_cache_path_feeds_one_token_per_step<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let rec = Recording::new(&model);
    let prompts = prompts(&[6, 3], 256, 2);
    let g = run(&rec, &prompts, &sampling(5), 3);
    assert_eq!(g.tokens.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5]);
    // Prefill of the 6-column batch, then one new column per step with the cache growing;
    // the fifth token needs no further call.
    assert_eq!(
        *rec.hidden_calls.borrow(),
        vec![(6, 6, 0), (1, 7, 6), (1, 8, 7), (1, 9, 8), (1, 10, 9)]
    );
    // The head runs on the last position only.
    assert_eq!(*rec.logits_calls.borrow(), vec![1; 5]);
}

/// Plain sampling (temperature 1, no filters) of `max_new_tokens` tokens.
fn sampling(max_new_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_new_tokens,
        ..Default::default()
    }
}

pub fn same_seed_same_samples_different_seed_differs<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let prompts = prompts(&[4, 7, 1], 256, 3);
    let params = sampling(16);
    let (ids, mask) = left_pad::<B>(&prompts, PAD, &Default::default());
    let mut rng_a = sampler_rng(7);
    let mut rng_b = sampler_rng(7);
    let a = generate(&model, ids.clone(), mask.clone(), &params, PAD, &mut rng_a).unwrap();
    let b = generate(&model, ids.clone(), mask.clone(), &params, PAD, &mut rng_b).unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(host_f32(a.log_probs.clone()), host_f32(b.log_probs));
    // The generator left both RNGs in the same state.
    assert_eq!(rng_a, rng_b);
    let c = generate(&model, ids, mask, &params, PAD, &mut sampler_rng(8)).unwrap();
    assert_ne!(a.tokens, c.tokens);
    // This untied random model's next-token distribution is near uniform over 256 ids (the
    // tied Llama fixture's is not: it repeats the last token), so two seeds should disagree
    // on most of the 48 tokens; a generator that ignored the seed after the first draw, or
    // only used it for some rows, would not.
    let differing = a
        .tokens
        .concat()
        .iter()
        .zip(c.tokens.concat())
        .filter(|(x, y)| **x != *y)
        .count();
    assert!(differing > 24, "only {differing} of 48 tokens differ");
}

pub fn stop_ids_end_rows_and_leave_other_rows_unchanged<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let prompts = prompts(&[3, 5, 2, 6], 256, 4);
    let free = sampling(10);
    let seed = 21;
    let full = run(&model, &prompts, &free, seed);
    // Stop on a token row 0 samples at step >= 2 that it had not sampled before.
    let row0 = &full.tokens[0];
    let stop = (2..row0.len())
        .map(|j| row0[j])
        .find(|t| !row0[..2].contains(t))
        .unwrap();
    let params = SamplingParams {
        stop_token_ids: vec![stop],
        ..free.clone()
    };
    let g = run(&model, &prompts, &params, seed);
    let full_log_probs = row_log_probs(&full);
    let width = g.response_ids.dims()[1];
    let ids = host_i64(g.response_ids.clone());
    let mask = host_f32(g.response_mask.clone());
    let log_probs = host_f32(g.log_probs.clone());
    let mut some_row_ran_to_the_end = false;
    for (r, row) in full.tokens.iter().enumerate() {
        // Stopping only truncates: the tokens up to and including the first stop id.
        let cut = row.iter().position(|&t| t == stop);
        let want = match cut {
            Some(j) => &row[..=j],
            None => &row[..],
        };
        assert_eq!(g.tokens[r], want, "row {r}");
        assert_eq!(g.stopped[r], cut.is_some(), "row {r}");
        some_row_ran_to_the_end |= cut.is_none();
        let n = want.len();
        for j in 0..width {
            let cell = r * width + j;
            if j < n {
                assert_eq!(ids[cell], i64::from(want[j]));
                assert_eq!(mask[cell], 1.0, "row {r} token {j}: mask");
                assert!((f64::from(log_probs[cell]) - full_log_probs[r][j]).abs() < 1e-5);
            } else {
                assert_eq!(ids[cell], i64::from(PAD), "row {r} column {j}: pad");
                assert_eq!((mask[cell], log_probs[cell]), (0.0, 0.0));
            }
        }
    }
    assert!(g.stopped[0]);
    assert!(
        some_row_ran_to_the_end,
        "the test needs a row that did not stop"
    );
    assert_eq!(width, 10);
}

pub fn generation_ends_when_every_row_has_stopped<B: Target>() {
    let model = model::<B>("llama3_rope");
    let rec = Recording::new(&model);
    let prompts = prompts(&[4, 2], 256, 5);
    let first = run(&model, &prompts, &SamplingParams::greedy(1), 0).tokens;
    let params = SamplingParams {
        stop_token_ids: vec![first[0][0], first[1][0]],
        ..SamplingParams::greedy(20)
    };
    let g = run(&rec, &prompts, &params, 0);
    assert_eq!(g.tokens, first);
    assert_eq!(g.stopped, vec![true, true]);
    assert_eq!(g.response_ids.dims(), [2, 1]);
    assert_eq!(rec.hidden_calls.borrow().len(), 1, "only the prefill ran");
}

pub fn max_new_tokens_is_respected<B: Target>() {
    let model = model::<B>("qwen3_f16");
    let prompts = prompts(&[3, 1], 256, 6);
    for n in [1, 4] {
        let g = run(&model, &prompts, &sampling(n), 9);
        assert!(g.tokens.iter().all(|t| t.len() == n));
        assert_eq!(g.stopped, vec![false, false]);
        assert_eq!(g.response_ids.dims(), [2, n]);
    }
}

pub fn greedy_rows_do_not_depend_on_the_batch<B: Target>() {
    let model = model::<B>("mistral_window");
    let prompts = prompts(&[7, 2, 4], 256, 7);
    let params = SamplingParams::greedy(8);
    let batch = run(&model, &prompts, &params, 0);
    let batch_log_probs = row_log_probs(&batch);
    for (r, prompt) in prompts.iter().enumerate() {
        let alone = run(&model, std::slice::from_ref(prompt), &params, 0);
        assert_eq!(alone.tokens[0], batch.tokens[r], "row {r}");
        assert_close(
            &row_log_probs(&alone),
            &batch_log_probs[r..=r],
            LOG_PROB_TOL,
            "alone vs batch",
        );
    }
}

/// With one stream per row, a sampled row does not depend on the batch it is generated in:
/// what makes data-parallel ranks draw the samples one process would.
pub fn sampled_rows_with_their_own_streams_do_not_depend_on_the_batch<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let prompts = prompts(&[4, 7, 1, 5], 256, 3);
    let params = sampling(12);
    let key = 77;
    let (ids, mask) = left_pad::<B>(&prompts, PAD, &Default::default());
    let batch = generate(
        &model,
        ids,
        mask,
        &params,
        PAD,
        &mut RowStreams::new(key, 10, 4),
    )
    .unwrap();
    for (r, prompt) in prompts.iter().enumerate() {
        let (ids, mask) = left_pad::<B>(std::slice::from_ref(prompt), PAD, &Default::default());
        let mut own = RowStreams::new(key, 10 + r as u64, 1);
        let alone = generate(&model, ids, mask, &params, PAD, &mut own).unwrap();
        assert_eq!(alone.tokens[0], batch.tokens[r], "row {r}");
    }
    // Other streams draw other samples; a source for another number of rows is an error.
    let (ids, mask) = left_pad::<B>(&prompts, PAD, &Default::default());
    let other = generate(
        &model,
        ids.clone(),
        mask.clone(),
        &params,
        PAD,
        &mut RowStreams::new(key, 0, 4),
    );
    assert_ne!(other.unwrap().tokens, batch.tokens);
    let wrong = generate(
        &model,
        ids,
        mask,
        &params,
        PAD,
        &mut RowStreams::new(key, 0, 3),
    );
    assert!(matches!(
        wrong,
        Err(GenerationError::StreamCount {
            streams: 3,
            batch: 4
        })
    ));
}

pub fn generation_log_probs_equal_scoring_of_the_generated_batch<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let prompts = prompts(&[5, 1, 3], 256, 8);
    let (prompt_ids, prompt_mask) = left_pad::<B>(&prompts, PAD, &Default::default());
    let sampled = SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.9,
        max_new_tokens: 9,
        ..Default::default()
    };
    // A stop id some row hits, so the scored batch has right padding.
    let probe = run(&model, &prompts, &sampled, 13).tokens[1].clone();
    let cut = (1..probe.len())
        .find(|&j| !probe[..j].contains(&probe[j]))
        .unwrap();
    let stop = probe[cut];
    let with_stop = SamplingParams {
        stop_token_ids: vec![stop],
        ..sampled
    };
    for params in [with_stop, SamplingParams::greedy(9)] {
        let mut rng = sampler_rng(13);
        let g = generate(
            &model,
            prompt_ids.clone(),
            prompt_mask.clone(),
            &params,
            PAD,
            &mut rng,
        )
        .unwrap();
        let r = g.response_ids.dims()[1];
        let (ids, mask) = concat_prompt_response(
            prompt_ids.clone(),
            prompt_mask.clone(),
            g.response_ids.clone(),
            g.response_mask.clone(),
        );
        let logits = response_logits(&model, ids, mask, r, params.scoring_temperature()).unwrap();
        let scored = host_f32(response_log_probs(logits, g.response_ids.clone()));
        let scored: Vec<Vec<f64>> = g
            .tokens
            .iter()
            .enumerate()
            .map(|(row, t)| {
                (0..t.len())
                    .map(|j| f64::from(scored[row * r + j]))
                    .collect()
            })
            .collect();
        assert_close(
            &row_log_probs(&g),
            &scored,
            LOG_PROB_TOL,
            "generate vs scoring",
        );
        if !params.is_greedy() {
            assert!(g.stopped[1] && g.tokens[1].len() == cut + 1);
        }
    }
}

/// A scored batch: left-padded prompts followed by right-padded responses.
struct ScoringBatch<B: DecoderBackend> {
    /// `[batch, P + R]`
    ids: Tensor<B, 2, Int>,
    /// `[batch, P + R]`
    mask: Tensor<B, 2, Bool>,
    /// `[batch, R]`
    response_ids: Tensor<B, 2, Int>,
    /// `R`
    response_len: usize,
}

/// Prompts of 4, 2 and 3 tokens (P = 4) with responses of 3, 5 and 1 tokens (R = 5).
fn scoring_batch<B: DecoderBackend>() -> ScoringBatch<B> {
    let device = Default::default();
    let prompts = prompts(&[4, 2, 3], 256, 9);
    let (prompt_ids, prompt_mask) = left_pad::<B>(&prompts, PAD, &device);
    let (ids, mask) = right_padded(&[3, 5, 1], 10);
    let r = 5;
    let response_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [3, r]), &device);
    let response_mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [3, r]), &device);
    let (ids, mask) =
        concat_prompt_response(prompt_ids, prompt_mask, response_ids.clone(), response_mask);
    ScoringBatch {
        ids,
        mask,
        response_ids,
        response_len: r,
    }
}

/// Random right-padded responses of the given lengths in a width of the longest: ids, mask.
fn right_padded(lengths: &[usize], seed: u64) -> (Vec<i64>, Vec<f32>) {
    let width = *lengths.iter().max().unwrap();
    let rows = prompts(lengths, 256, seed);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for row in rows {
        let pad = width - row.len();
        ids.extend(row.iter().map(|&t| i64::from(t)));
        ids.extend(std::iter::repeat_n(i64::from(PAD), pad));
        mask.extend(std::iter::repeat_n(1.0, row.len()));
        mask.extend(std::iter::repeat_n(0.0, pad));
    }
    (ids, mask)
}

pub fn concat_puts_the_response_after_the_prompt<B: Target>() {
    let ScoringBatch { ids, mask, .. } = scoring_batch::<B>();
    assert_eq!(ids.dims(), [3, 9]);
    let mask: Vec<bool> = mask.into_data().iter::<bool>().collect();
    let row1: Vec<bool> = mask[9..18].to_vec();
    // Prompt of 2 left-padded to 4, response of 5 (full width).
    assert_eq!(
        row1,
        [false, false, true, true, true, true, true, true, true]
    );
    let row2: Vec<bool> = mask[18..27].to_vec();
    assert_eq!(
        row2,
        [false, true, true, true, true, false, false, false, false]
    );
}

pub fn response_logits_equal_the_slice_of_full_logits<B: Target>() {
    let model = model::<B>("llama3_rope");
    let ScoringBatch {
        ids,
        mask,
        response_len: r,
        ..
    } = scoring_batch::<B>();
    let [batch, seq] = ids.dims();
    let full = model.forward_logits(ids.clone(), mask.clone());
    let vocab = full.dims()[2];
    let want = host_f32(full.narrow(1, seq - r - 1, r));
    let got = response_logits(&model, ids.clone(), mask.clone(), r, None).unwrap();
    assert_eq!(got.dims(), [batch, r, vocab]);
    let got = host_f32(got);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    // Same operations, only the head's matmul has another shape: 1e-5 relative.
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-5 * scale, "max error {err}, scale {scale}");
    let hot = host_f32(response_logits(&model, ids, mask, r, Some(0.5)).unwrap());
    for (h, g) in hot.iter().zip(&got) {
        assert!((h - 2.0 * g).abs() <= 1e-6 * scale.max(1.0));
    }
}

pub fn response_log_probs_equal_log_softmax_and_gather<B: Target>() {
    let model = model::<B>("qwen3_f16");
    let ScoringBatch {
        ids,
        mask,
        response_ids,
        response_len: r,
    } = scoring_batch::<B>();
    let logits = response_logits(&model, ids, mask, r, Some(0.7)).unwrap();
    let [batch, _, vocab] = logits.dims();
    let host = host_f32(logits.clone());
    let tokens = host_i64(response_ids.clone());
    let got = host_f32(response_log_probs(logits, response_ids));
    for cell in 0..batch * r {
        let want = log_softmax(&host[cell * vocab..(cell + 1) * vocab])[tokens[cell] as usize];
        assert!((f64::from(got[cell]) - want).abs() < 1e-5, "cell {cell}");
    }
}

pub fn response_topk_equals_a_full_sort<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let ScoringBatch {
        ids,
        mask,
        response_len: r,
        ..
    } = scoring_batch::<B>();
    let logits = response_logits(&model, ids, mask, r, None).unwrap();
    let [batch, _, vocab] = logits.dims();
    let host = host_f32(logits.clone());
    // k = 5 takes the chunked path (256 = 16 chunks of 16), k = 40 the full-sort fallback.
    for k in [5, 40] {
        let (values, indices) = response_topk(logits.clone(), k);
        assert_eq!(values.dims(), [batch, r, k]);
        let values = host_f32(values);
        let indices = host_i64(indices);
        for cell in 0..batch * r {
            let row = &host[cell * vocab..(cell + 1) * vocab];
            let mut sorted: Vec<(f32, usize)> = row.iter().cloned().zip(0..).collect();
            sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
            for j in 0..k {
                let (v, i) = sorted[j];
                assert_eq!(values[cell * k + j], v, "k={k} cell {cell} rank {j}");
                assert_eq!(
                    indices[cell * k + j],
                    i as i64,
                    "k={k} cell {cell} rank {j}"
                );
            }
        }
    }
}

pub fn gather_logits_picks_the_indexed_entries<B: Target>() {
    let device = Default::default();
    let logits = Tensor::<B, 3>::from_data(
        [
            [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]],
            [[8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0]],
        ],
        &device,
    );
    let indices = Tensor::<B, 3, Int>::from_data([[[3, 0], [1, 1]], [[2, 3], [0, 2]]], &device);
    let got = host_f32(gather_logits(logits, indices));
    assert_eq!(got, vec![3.0, 0.0, 5.0, 5.0, 10.0, 11.0, 12.0, 14.0]);
}

pub fn scoring_rejects_bad_lengths_and_temperatures<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let ScoringBatch { ids, mask, .. } = scoring_batch::<B>();
    let call = |r: usize, t: Option<f64>| response_logits(&model, ids.clone(), mask.clone(), r, t);
    assert_eq!(
        call(0, None).unwrap_err(),
        ScoringError::ResponseLen {
            response_len: 0,
            seq_len: 9
        }
    );
    assert!(matches!(
        call(9, None),
        Err(ScoringError::ResponseLen { .. })
    ));
    assert!(matches!(
        call(2, Some(0.0)),
        Err(ScoringError::Temperature { .. })
    ));
    assert!(matches!(
        call(2, Some(f64::NAN)),
        Err(ScoringError::Temperature { .. })
    ));
    let short = mask.clone().narrow(1, 0, 4);
    assert!(matches!(
        response_logits(&model, ids.clone(), short, 2, None),
        Err(ScoringError::ShapeMismatch { .. })
    ));
}

pub fn bad_generation_inputs_are_typed_errors<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let device = Default::default();
    let gen = |prompts: &[Vec<u32>], params: &SamplingParams, pad: u32| {
        let (ids, mask) = left_pad::<B>(prompts, PAD, &device);
        generate(&model, ids, mask, params, pad, &mut sampler_rng(0))
    };
    let ok = sampling(2);
    assert!(matches!(
        gen(&[], &ok, PAD),
        Err(GenerationError::EmptyBatch)
    ));
    assert!(matches!(
        gen(
            &[vec![1]],
            &SamplingParams {
                top_p: 0.0,
                ..ok.clone()
            },
            PAD
        ),
        Err(GenerationError::InvalidParam { field: "top_p", .. })
    ));
    assert!(matches!(
        gen(&[vec![1], vec![]], &ok, PAD),
        Err(GenerationError::EmptyPrompt { row: 1 })
    ));
    assert!(matches!(
        gen(&[vec![1, 300]], &ok, PAD),
        Err(GenerationError::TokenOutOfVocab { id: 300, .. })
    ));
    assert!(matches!(
        gen(&[vec![1]], &ok, 256),
        Err(GenerationError::PadIdOutOfVocab { pad_id: 256, .. })
    ));
    // The fixture has 128 positions.
    assert!(matches!(
        gen(&[vec![1; 128]], &ok, PAD),
        Err(GenerationError::PromptTooLong {
            len: 128,
            max_positions: 128,
            ..
        })
    ));
    assert!(gen(&[vec![1; 127]], &sampling(1), PAD).is_ok());
}

/// A decoder whose logits are all NaN.
struct Broken<'a, B: DecoderBackend>(&'a CausalLm<B>);

impl<B: DecoderBackend> CausalDecoder<B> for Broken<'_, B> {
    fn model_config(&self) -> &ModelConfig {
        self.0.model_config()
    }

    fn decode_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 2, Bool>,
        positions: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.0.decode_hidden(ids, key_mask, positions, cache)
    }

    fn decode_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.0.decode_logits(hidden).mul_scalar(f32::NAN)
    }
}

pub fn non_finite_logits_are_an_error_not_a_token<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let err = run_fallible(&Broken(&model), &[vec![3, 4]]).unwrap_err();
    assert!(matches!(
        err,
        GenerationError::BadLogits {
            row: 0,
            step: 0,
            source: SamplingError::NonFinite { .. }
        }
    ));
}

fn run_fallible<B: DecoderBackend>(
    model: &impl CausalDecoder<B>,
    prompts: &[Vec<u32>],
) -> Result<Generation<B>, GenerationError> {
    let (ids, mask) = left_pad::<B>(prompts, PAD, &Default::default());
    generate(
        model,
        ids,
        mask,
        &SamplingParams::default(),
        PAD,
        &mut sampler_rng(0),
    )
}

/// Greedy decoding on this backend picks the same tokens as on NdArray, for every fixture
/// (logits differ by ~1e-6 relative between backends; the fixtures have no near-ties at that
/// scale), with log-probs within [`LOG_PROB_TOL`].
pub fn greedy_generation_equals_ndarray<B: Target>() {
    type Reference = burn::backend::NdArray<f32>;
    for name in [
        "llama3_rope",
        "llama_tied_sharded",
        "mistral_window",
        "qwen2_bf16",
        "qwen3_f16",
    ] {
        let prompts = prompts(&[5, 2, 8], 256, 11);
        let params = SamplingParams::greedy(12);
        let here = run(&model::<B>(name), &prompts, &params, 0);
        let there = run(&model::<Reference>(name), &prompts, &params, 0);
        assert_eq!(here.tokens, there.tokens, "{name}: greedy tokens");
        assert_close(
            &row_log_probs(&here),
            &row_log_probs(&there),
            LOG_PROB_TOL,
            name,
        );
    }
}

/// The device's token selection draws what the host reference draws at the same uniform
/// number, for every filter combination. Both compute the same inverse CDF; the device sums in
/// float32, the host in float64, so a number within ~1e-6 of a boundary between two tokens may
/// land on the neighbour: at most 1% of draws may differ, and every device choice must be a
/// token the filters allow.
pub fn device_selection_equals_the_host_reference<B: Target>() {
    use sdpo::models::generate::{candidates, sample_token, select_tokens};
    let _serial = serial();
    let device = Default::default();
    let (rows, vocab) = (6, 300);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    // Peaked and flat rows: N(0, 3) logits, a few ties, one row with a dominant token.
    let mut logits: Vec<f32> = (0..rows * vocab)
        .map(|_| (rng.random::<f32>() - 0.5) * 6.0)
        .collect();
    logits[7] = logits[8];
    logits[2 * vocab + 4] = 12.0;
    let tensor = Tensor::<B, 2>::from_data(TensorData::new(logits.clone(), [rows, vocab]), &device);
    let variants = [
        SamplingParams::default(),
        SamplingParams {
            temperature: 0.7,
            ..Default::default()
        },
        SamplingParams {
            top_k: 20,
            ..Default::default()
        },
        SamplingParams {
            top_p: 0.8,
            ..Default::default()
        },
        SamplingParams {
            min_p: 0.05,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.3,
            top_k: 50,
            top_p: 0.9,
            min_p: 0.01,
            ..Default::default()
        },
        SamplingParams::greedy(1),
    ];
    let (mut draws, mut differ) = (0, 0);
    for params in &variants {
        for _ in 0..20 {
            let u: Vec<f64> = (0..rows).map(|_| rng.random::<f64>()).collect();
            let u32s: Vec<f32> = u.iter().map(|&x| x as f32).collect();
            let uniforms =
                Tensor::<B, 1>::from_data(TensorData::new(u32s.clone(), [rows]), &device);
            let sel = select_tokens(tensor.clone(), params, Some(uniforms));
            let ids = host_i64(sel.ids);
            let log_probs = host_f32(sel.log_probs);
            for r in 0..rows {
                let row = &logits[r * vocab..(r + 1) * vocab];
                let want = sample_token(row, params, f64::from(u32s[r])).unwrap();
                let allowed = candidates(row, params).unwrap();
                assert!(
                    allowed.iter().any(|c| i64::from(c.id) == ids[r]),
                    "{params:?} row {r}: device chose {} outside the filters",
                    ids[r]
                );
                draws += 1;
                if ids[r] != i64::from(want.id) {
                    differ += 1;
                    continue;
                }
                assert!(
                    (f64::from(log_probs[r]) - want.log_prob).abs() < 1e-4,
                    "{params:?} row {r}: log-prob {} vs {}",
                    log_probs[r],
                    want.log_prob
                );
            }
        }
    }
    assert!(
        differ * 100 <= draws,
        "{differ} of {draws} draws differ from the host"
    );
}

/// Generation copies only the chosen ids to the host: `batch` ints per generated position.
pub fn host_copies_are_ids_only<B: Target>() {
    let model = model::<B>("qwen2_bf16");
    let prompts = prompts(&[4, 6, 2], 256, 12);
    for params in [sampling(7), SamplingParams::greedy(7)] {
        let g = run(&model, &prompts, &params, 4);
        let id_bytes = std::mem::size_of::<B::IntElem>();
        assert_eq!(g.host_bytes, 7 * 3 * id_bytes, "{params:?}");
    }
}

pub fn repetition_penalty_matches_the_host_reference_by_recomputation<B: Target>() {
    let _serial = serial();
    let model = model::<B>("qwen2_bf16");
    let prompts = prompts(&[5, 2, 8], 256, 3);
    let steps = 10;
    for penalty in [1.5, 0.7] {
        let params = SamplingParams {
            repetition_penalty: penalty,
            ..SamplingParams::greedy(steps)
        };
        let g = run(&model, &prompts, &params, 0);
        let (want, want_log_probs) =
            greedy_with_penalty_by_recomputation(&model, &prompts, steps, penalty);
        assert_eq!(g.tokens, want, "penalty {penalty}");
        assert_close(
            &row_log_probs(&g),
            &want_log_probs,
            LOG_PROB_TOL,
            "penalized",
        );
    }
    // The penalty changes what is generated on this model (else the test proves nothing).
    let plain = run(&model, &prompts, &SamplingParams::greedy(steps), 0);
    let strong = SamplingParams {
        repetition_penalty: 3.0,
        ..SamplingParams::greedy(steps)
    };
    assert_ne!(run(&model, &prompts, &strong, 0).tokens, plain.tokens);
}
