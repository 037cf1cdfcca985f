//! [`probe_teacher`]: what the teacher's signal points at, measured on a step's own batch with
//! the weights the step's loss sees (before its update). Diagnostics, run every
//! `teacher_probe_every` steps; they draw no random numbers, so a run trains the same with or
//! without them.
//!
//! - **Greedy success**: the teacher decodes greedily from each reprompted sample's teacher
//!   prompt, the student from the same sample's own prompt (the KV-cache generator; the
//!   trust-region mixture by [`greedy_decode`]); both are scored by the run's rewards. Is the
//!   teacher better than the student on what it is asked to teach?
//! - **Token agreement** (rows with a string `answer` field, the completion the task expects
//!   verbatim, followed by a stop token): along each response with a teacher signal, the first
//!   token that leaves the answer; whether the teacher's most likely token there is the
//!   answer's, both models' probability of it, and how often the teacher's most likely token is
//!   the student's own before and after it.
//! - **KL split**: KL(teacher ‖ student) per response token, over successful and failed samples
//!   with a signal apart, and how many successful samples got a signal at all.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use sdpo_core::metrics as names;
use sdpo_core::reprompt::RepromptPlan;
use sdpo_core::TeacherMode;
use sdpo_models::arch::CausalDecoder;
use sdpo_models::generate::{generate, left_pad, sampler_rng, SamplingParams};
use sdpo_models::kernels::DecoderBackend;
use sdpo_models::lora::WithLora;
use sdpo_models::scoring::{response_logits, ScoringError};

use crate::dataset::Row;
use crate::error::TrainError;
use crate::policy::Policy;
use crate::prompts::Prompts;
use crate::reward::{Rewards, Scored};
use crate::rollout::Rollout;
use crate::scoring::score_texts;
use crate::teacher::{Teacher, TeacherWeights};
use crate::teacher_inputs::TeacherInputs;
use crate::updater::{index_tensor, select_mask_rows};

/// Samples per forward pass of the token-level probe.
const CHUNK: usize = 8;

/// What the probe needs besides the step's batch.
pub struct ProbeContext<'a, B: Backend> {
    /// The student (inner module, no graph).
    pub student: &'a Policy<B>,
    /// The teacher.
    pub teacher: &'a Teacher<B>,
    /// The prompt encoder (pad id, decoding).
    pub prompts: &'a Prompts,
    /// The run's rewards.
    pub rewards: &'a Rewards,
    /// Each sample's dataset row.
    pub rows: &'a [&'a Row],
    /// Stop token ids of greedy decoding (the first one ends an `answer`).
    pub stop_ids: &'a [u32],
    /// Greedy decoding's token budget.
    pub max_new_tokens: usize,
    /// The loss's temperature (the token-level probe scales both models' logits by it).
    pub temperature: f64,
    /// A sample succeeded when its reward is at least this.
    pub success_threshold: f64,
}

impl<B: DecoderBackend> ProbeContext<'_, B> {
    /// Whether a scored sample counts as a success (the reprompt plan's rule).
    fn succeeded(&self, scored: &Scored) -> bool {
        scored.score >= self.success_threshold
    }
}

/// The probe's readings; `None` where no sample qualified.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeReport {
    /// [`names::PROBE_TEACHER_SUCCESS`].
    pub teacher_success: Option<f64>,
    /// [`names::PROBE_TEACHER_SUCCESS_DEMONSTRATION`].
    pub teacher_success_demonstration: Option<f64>,
    /// [`names::PROBE_TEACHER_SUCCESS_FEEDBACK`].
    pub teacher_success_feedback: Option<f64>,
    /// [`names::PROBE_STUDENT_SUCCESS`].
    pub student_success: Option<f64>,
    /// [`names::PROBE_STUDENT_SUCCESS_DEMONSTRATION`].
    pub student_success_demonstration: Option<f64>,
    /// [`names::PROBE_STUDENT_SUCCESS_FEEDBACK`].
    pub student_success_feedback: Option<f64>,
    /// [`names::PROBE_FIRST_ERROR_FIXED`].
    pub first_error_fixed: Option<f64>,
    /// [`names::PROBE_FIRST_ERROR_TEACHER_PROB`].
    pub first_error_teacher_prob: Option<f64>,
    /// [`names::PROBE_FIRST_ERROR_STUDENT_PROB`].
    pub first_error_student_prob: Option<f64>,
    /// [`names::PROBE_AGREEMENT_BEFORE_ERROR`].
    pub agreement_before_error: Option<f64>,
    /// [`names::PROBE_AGREEMENT_AFTER_ERROR`].
    pub agreement_after_error: Option<f64>,
    /// [`names::PROBE_KL_SUCCESSFUL`].
    pub kl_successful: Option<f64>,
    /// [`names::PROBE_KL_FAILED`].
    pub kl_failed: Option<f64>,
    /// [`names::PROBE_SUCCESSFUL_WITH_SIGNAL`].
    pub successful_with_signal: Option<f64>,
}

impl ProbeReport {
    /// The readings that exist, by metric name.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        [
            (names::PROBE_TEACHER_SUCCESS, self.teacher_success),
            (
                names::PROBE_TEACHER_SUCCESS_DEMONSTRATION,
                self.teacher_success_demonstration,
            ),
            (
                names::PROBE_TEACHER_SUCCESS_FEEDBACK,
                self.teacher_success_feedback,
            ),
            (names::PROBE_STUDENT_SUCCESS, self.student_success),
            (
                names::PROBE_STUDENT_SUCCESS_DEMONSTRATION,
                self.student_success_demonstration,
            ),
            (
                names::PROBE_STUDENT_SUCCESS_FEEDBACK,
                self.student_success_feedback,
            ),
            (names::PROBE_FIRST_ERROR_FIXED, self.first_error_fixed),
            (
                names::PROBE_FIRST_ERROR_TEACHER_PROB,
                self.first_error_teacher_prob,
            ),
            (
                names::PROBE_FIRST_ERROR_STUDENT_PROB,
                self.first_error_student_prob,
            ),
            (
                names::PROBE_AGREEMENT_BEFORE_ERROR,
                self.agreement_before_error,
            ),
            (
                names::PROBE_AGREEMENT_AFTER_ERROR,
                self.agreement_after_error,
            ),
            (names::PROBE_KL_SUCCESSFUL, self.kl_successful),
            (names::PROBE_KL_FAILED, self.kl_failed),
            (
                names::PROBE_SUCCESSFUL_WITH_SIGNAL,
                self.successful_with_signal,
            ),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
        .collect()
    }
}

/// A running mean that stays `None` until it sees a value.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    count: usize,
}

impl Mean {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
    }

    fn add_flag(&mut self, flag: bool) {
        self.add(f64::from(u8::from(flag)));
    }

    fn get(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Probes the teacher on one step's batch: `rollout` scored as `scored`, reprompted as `plan`
/// into `inputs`.
///
/// # Errors
/// [`TrainError`] from scoring passes, decoding or tokenizing.
pub fn probe_teacher<B: DecoderBackend>(
    ctx: &ProbeContext<'_, B>,
    rollout: &Rollout<B>,
    scored: &[Scored],
    plan: &RepromptPlan,
    inputs: &TeacherInputs<B>,
) -> Result<ProbeReport, TrainError> {
    let signal: Vec<bool> = plan.teachers.iter().map(|t| t.reprompted()).collect();
    let mut report = greedy_success(ctx, rollout, plan, inputs, &signal)?;
    let successful: Vec<bool> = scored.iter().map(|s| ctx.succeeded(s)).collect();
    let mut with_signal = Mean::default();
    for (&ok, &sig) in successful.iter().zip(&signal) {
        if ok {
            with_signal.add_flag(sig);
        }
    }
    report.successful_with_signal = with_signal.get();
    token_agreement(ctx, rollout, inputs, &successful, &signal, &mut report)?;
    Ok(report)
}

/// Teacher and student greedy success on the reprompted samples (`signal`).
fn greedy_success<B: DecoderBackend>(
    ctx: &ProbeContext<'_, B>,
    rollout: &Rollout<B>,
    plan: &RepromptPlan,
    inputs: &TeacherInputs<B>,
    signal: &[bool],
) -> Result<ProbeReport, TrainError> {
    let chosen: Vec<usize> = (0..signal.len()).filter(|&i| signal[i]).collect();
    if chosen.is_empty() {
        return Ok(ProbeReport::default());
    }
    let device = rollout.prompt_ids.device();
    let teacher_prompts: Vec<Vec<u32>> =
        chosen.iter().map(|&i| inputs.prompts[i].clone()).collect();
    let student_prompts: Vec<Vec<u32>> = chosen
        .iter()
        .map(|&i| rollout.requests[i].prompt_ids.clone())
        .collect();
    let teacher_tokens = teacher_greedy(ctx, &teacher_prompts, &device)?;
    let student_tokens = cached_greedy(ctx.student, ctx, &student_prompts, &device)?;
    let rows: Vec<&Row> = chosen.iter().map(|&i| ctx.rows[i]).collect();
    let success = |tokens: &[Vec<u32>]| -> Result<Vec<bool>, TrainError> {
        let texts = ctx.prompts.decode_all(tokens)?;
        Ok(score_texts(ctx.rewards, &rows, &texts, tokens)
            .iter()
            .map(|s| ctx.succeeded(s))
            .collect())
    };
    let (teacher_ok, student_ok) = (success(&teacher_tokens)?, success(&student_tokens)?);
    // [teacher, student] × [all, demonstration, feedback alone].
    let mut means = [[Mean::default(); 3]; 2];
    for (k, &i) in chosen.iter().enumerate() {
        let kind = match plan.teachers[i].demonstration {
            Some(_) => 1,
            None => 2,
        };
        for (m, ok) in means.iter_mut().zip([teacher_ok[k], student_ok[k]]) {
            m[0].add_flag(ok);
            m[kind].add_flag(ok);
        }
    }
    let [[all, demo, feedback], [student, student_demo, student_feedback]] = means;
    Ok(ProbeReport {
        teacher_success: all.get(),
        teacher_success_demonstration: demo.get(),
        teacher_success_feedback: feedback.get(),
        student_success: student.get(),
        student_success_demonstration: student_demo.get(),
        student_success_feedback: student_feedback.get(),
        ..ProbeReport::default()
    })
}

/// The teacher's greedy continuations of `prompts`: the KV-cache generator on the teacher's
/// own model (its weights, its adapters over the student's base, or the student for `live`);
/// for `trust-region`, whose logits mix two models, [`greedy_decode`] of the mixture.
fn teacher_greedy<B: DecoderBackend>(
    ctx: &ProbeContext<'_, B>,
    prompts: &[Vec<u32>],
    device: &B::Device,
) -> Result<Vec<Vec<u32>>, TrainError> {
    let teacher = ctx.teacher;
    match (teacher.mode(), teacher.weights()) {
        (TeacherMode::TrustRegion, _) => greedy_decode(
            |ids, mask| teacher.logits(ctx.student, ids, mask, 1, 1.0),
            prompts,
            ctx.prompts.pad_id(),
            ctx.stop_ids,
            ctx.max_new_tokens,
            device,
        ),
        (_, None) => cached_greedy(ctx.student, ctx, prompts, device),
        (_, Some(TeacherWeights::Model(model))) => cached_greedy(model, ctx, prompts, device),
        (_, Some(TeacherWeights::Adapters(set))) => {
            let model = WithLora {
                base: &ctx.student.lm,
                lora: set,
            };
            cached_greedy(&model, ctx, prompts, device)
        }
    }
}

/// Greedy continuations of `prompts` by `model` with the KV-cache generator.
fn cached_greedy<B: DecoderBackend, M: CausalDecoder<B>>(
    model: &M,
    ctx: &ProbeContext<'_, B>,
    prompts: &[Vec<u32>],
    device: &B::Device,
) -> Result<Vec<Vec<u32>>, TrainError> {
    let params = SamplingParams {
        stop_token_ids: ctx.stop_ids.to_vec(),
        ..SamplingParams::greedy(ctx.max_new_tokens)
    };
    let pad = ctx.prompts.pad_id();
    let (ids, mask) = left_pad::<B>(prompts, pad, device);
    // Greedy decoding draws no random numbers; the generator needs one all the same.
    Ok(generate(model, ids, mask, &params, pad, &mut sampler_rng(0))?.tokens)
}

/// Greedy continuations of `prompts` by a model given as `next_logits(ids, mask)` (logits
/// `[batch, 1, vocab]` predicting the last column of left-padded `ids`, as
/// [`response_logits`] with a response length of 1 gives them), without a KV cache: every new
/// token is one full forward of the rows still going. Works for any teacher, the
/// trust-region mixture included. Each continuation ends with a token of `stop_ids` (kept) or
/// after `max_new_tokens`.
///
/// # Errors
/// [`TrainError::Scoring`] from `next_logits`.
pub fn greedy_decode<B: DecoderBackend>(
    next_logits: impl Fn(Tensor<B, 2, Int>, Tensor<B, 2, Bool>) -> Result<Tensor<B, 3>, ScoringError>,
    prompts: &[Vec<u32>],
    pad: u32,
    stop_ids: &[u32],
    max_new_tokens: usize,
    device: &B::Device,
) -> Result<Vec<Vec<u32>>, TrainError> {
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    for _ in 0..max_new_tokens {
        if active.is_empty() {
            break;
        }
        // The model's logits at position p predict token p + 1; a placeholder column after
        // each sequence makes the last real position's prediction the one returned.
        let seqs: Vec<Vec<u32>> = active
            .iter()
            .map(|&r| [prompts[r].as_slice(), &out[r], &[pad]].concat())
            .collect();
        let (ids, mask) = left_pad::<B>(&seqs, pad, device);
        let logits = next_logits(ids, mask)?;
        let [a, _, v] = logits.dims();
        let next = logits.reshape([a, v]).argmax(1).into_data();
        let next: Vec<i64> = next.convert::<i64>().to_vec().unwrap_or_default();
        let mut still = Vec::with_capacity(active.len());
        for (&r, &t) in active.iter().zip(&next) {
            let t = t as u32;
            out[r].push(t);
            if !stop_ids.contains(&t) {
                still.push(r);
            }
        }
        active = still;
    }
    Ok(out)
}

/// The token ids a row's `answer` field should be generated as, ending with the first stop
/// id; `None` for a row without a string answer.
fn reference_tokens<B: DecoderBackend>(
    ctx: &ProbeContext<'_, B>,
    row: &Row,
) -> Result<Option<Vec<u32>>, TrainError> {
    let Some(answer) = row.fields.get("answer").and_then(|a| a.as_str()) else {
        return Ok(None);
    };
    let mut ids = ctx.prompts.encode(answer, "the row's answer")?;
    ids.extend(ctx.stop_ids.first());
    Ok(Some(ids))
}

/// The first position where `response` leaves `reference` (any stop id matches the
/// reference's final stop token); `None` when it never does within the response.
fn first_error(response: &[u32], reference: &[u32], stop_ids: &[u32]) -> Option<usize> {
    let last = reference.len().saturating_sub(1);
    response.iter().enumerate().find_map(|(p, &t)| {
        let matches = match reference.get(p) {
            None => false,
            Some(_) if p == last => stop_ids.contains(&t),
            Some(&r) => r == t,
        };
        (!matches).then_some(p)
    })
}

/// Per-sample host rows of one chunk's token-level readings, `[rows][R]` each.
struct ChunkReadings {
    teacher_argmax: Vec<Vec<i64>>,
    teacher_ref_log_prob: Vec<Vec<f32>>,
    student_ref_log_prob: Vec<Vec<f32>>,
    kl: Vec<Vec<f32>>,
}

/// Token agreement and the KL split over the samples with a signal.
fn token_agreement<B: DecoderBackend>(
    ctx: &ProbeContext<'_, B>,
    rollout: &Rollout<B>,
    inputs: &TeacherInputs<B>,
    successful: &[bool],
    signal: &[bool],
    report: &mut ProbeReport,
) -> Result<(), TrainError> {
    let chosen: Vec<usize> = (0..signal.len()).filter(|&i| signal[i]).collect();
    let tokens = &rollout.generation.tokens;
    let [_, r] = rollout.generation.response_ids.dims();
    let references: Vec<Option<Vec<u32>>> = chosen
        .iter()
        .map(|&i| reference_tokens(ctx, ctx.rows[i]))
        .collect::<Result<_, _>>()?;
    let (student_ids, student_mask) = rollout.student_inputs();
    let [mut fixed, mut teacher_p, mut student_p] = [Mean::default(); 3];
    let [mut before, mut after, mut kl_ok, mut kl_bad] = [Mean::default(); 4];
    for (chunk, refs) in chosen.chunks(CHUNK).zip(references.chunks(CHUNK)) {
        let idx = index_tensor::<B>(chunk, &student_ids.device());
        let reference_ids: Vec<i64> = refs
            .iter()
            .flat_map(|reference| {
                (0..r).map(move |p| {
                    reference
                        .as_ref()
                        .and_then(|x| x.get(p))
                        .map_or(0, |&t| i64::from(t))
                })
            })
            .collect();
        let reference_ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(reference_ids, [chunk.len(), r]),
            &student_ids.device(),
        );
        let readings = chunk_readings(
            ctx,
            (
                student_ids.clone().select(0, idx.clone()),
                select_mask_rows(student_mask.clone(), idx.clone()),
            ),
            (
                inputs.ids.clone().select(0, idx.clone()),
                select_mask_rows(inputs.mask.clone(), idx),
            ),
            reference_ids,
            r,
        )?;
        for (k, (&i, reference)) in chunk.iter().zip(refs).enumerate() {
            let response = &tokens[i];
            let kl = match successful[i] {
                true => &mut kl_ok,
                false => &mut kl_bad,
            };
            for p in 0..response.len() {
                kl.add(f64::from(readings.kl[k][p]));
            }
            let Some(reference) = reference else {
                continue;
            };
            let error = first_error(response, reference, ctx.stop_ids);
            let agrees = |p: usize| readings.teacher_argmax[k][p] == i64::from(response[p]);
            let clean = error.unwrap_or(response.len());
            (0..clean).for_each(|p| before.add_flag(agrees(p)));
            if let Some(e) = error {
                ((e + 1)..response.len()).for_each(|p| after.add_flag(agrees(p)));
                if let Some(&want) = reference.get(e) {
                    fixed.add_flag(readings.teacher_argmax[k][e] == i64::from(want));
                    teacher_p.add(f64::from(readings.teacher_ref_log_prob[k][e]).exp());
                    student_p.add(f64::from(readings.student_ref_log_prob[k][e]).exp());
                }
            }
        }
    }
    report.first_error_fixed = fixed.get();
    report.first_error_teacher_prob = teacher_p.get();
    report.first_error_student_prob = student_p.get();
    report.agreement_before_error = before.get();
    report.agreement_after_error = after.get();
    report.kl_successful = kl_ok.get();
    report.kl_failed = kl_bad.get();
    Ok(())
}

/// One chunk's forward passes (student and teacher over the padded responses, length `r`) and
/// their readings, copied to the host.
fn chunk_readings<B: DecoderBackend>(
    ctx: &ProbeContext<'_, B>,
    student: (Tensor<B, 2, Int>, Tensor<B, 2, Bool>),
    teacher: (Tensor<B, 2, Int>, Tensor<B, 2, Bool>),
    reference_ids: Tensor<B, 2, Int>,
    r: usize,
) -> Result<ChunkReadings, TrainError> {
    let t = ctx.temperature;
    let s = log_softmax(
        response_logits(ctx.student, student.0, student.1, r, Some(t))?,
        2,
    );
    let q = log_softmax(
        ctx.teacher
            .logits(ctx.student, teacher.0, teacher.1, r, t)?,
        2,
    );
    let [n, _, _] = s.dims();
    let kl = (q.clone().exp() * (q.clone() - s.clone()))
        .sum_dim(2)
        .reshape([n, r]);
    let reference = reference_ids.unsqueeze_dim::<3>(2);
    let at_reference = |lp: Tensor<B, 3>| lp.gather(2, reference.clone()).reshape([n, r]);
    let rows_f32 = |t: Tensor<B, 2>| -> Vec<Vec<f32>> {
        let v: Vec<f32> = t.into_data().convert::<f32>().to_vec().unwrap_or_default();
        v.chunks(r.max(1)).map(<[f32]>::to_vec).collect()
    };
    let argmax: Vec<i64> = q
        .clone()
        .argmax(2)
        .reshape([n, r])
        .into_data()
        .convert::<i64>()
        .to_vec()
        .unwrap_or_default();
    Ok(ChunkReadings {
        teacher_argmax: argmax.chunks(r.max(1)).map(<[i64]>::to_vec).collect(),
        teacher_ref_log_prob: rows_f32(at_reference(q)),
        student_ref_log_prob: rows_f32(at_reference(s)),
        kl: rows_f32(kl),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_error_is_where_the_response_leaves_the_answer() {
        let stops = [9, 8];
        // answer 1 2 3, stop 9
        let reference = [1, 2, 3, 9];
        assert_eq!(first_error(&[1, 2, 3, 9], &reference, &stops), None);
        assert_eq!(first_error(&[1, 2, 3, 8], &reference, &stops), None);
        assert_eq!(first_error(&[1, 3, 2, 9], &reference, &stops), Some(1));
        assert_eq!(first_error(&[1, 2, 9], &reference, &stops), Some(2));
        assert_eq!(first_error(&[1, 2, 3, 4, 9], &reference, &stops), Some(3));
        // A truncated response that matches so far has no error yet.
        assert_eq!(first_error(&[1, 2], &reference, &stops), None);
    }

    #[test]
    fn means_stay_none_without_values() {
        let mut m = Mean::default();
        assert_eq!(m.get(), None);
        m.add_flag(true);
        m.add_flag(false);
        m.add(1.0);
        assert_eq!(m.get(), Some(2.0 / 3.0));
    }
}
