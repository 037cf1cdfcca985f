//! The trainer end to end on the built-in tiny model (seeded), on the backend under test: every
//! teacher mode and loss variant, GRPO and the blend, teacher-update rules, memory of each
//! teacher, LoRA base freezing, the teacher's prompt, top-k sharing between student and
//! teacher, checkpoint → resume (bit-identical: the same kernels run in the same order).

use std::collections::HashMap;
use std::sync::Arc;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use sdpo::core::loss::LossBackend;
use sdpo::core::metrics as names;
use sdpo::core::reprompt::{plan_reprompts, remove_thinking, RepromptPlan, SampleOutcome};
use sdpo::core::teacher::parameter_data;
use sdpo::core::{ChatMessage, SdpoConfig, TeacherMode};
use sdpo::models::generate::generate;
use sdpo::models::generate::{left_pad, sampler_rng, SamplingParams};
use sdpo::models::kernels::DecoderBackend;
use sdpo::models::lora::{param_bytes, LoraConfig};
use sdpo::models::scoring::{concat_prompt_response, response_logits};
use sdpo::models::CausalDecoder;
use sdpo::train::builtin::{char_tokenizer, init_model, tiny_model_config, Task};
use sdpo::train::dataset::Dataset;
use sdpo::train::dataset::Row;
use sdpo::train::policy::{StepSettings, TeacherSignal, TrainBatch};
use sdpo::train::reward::{reward_fn, RewardOutput, Rewards};
use sdpo::train::rollout::{requests, Rollout};
use sdpo::train::teacher::TeacherWeights;
use sdpo::train::teacher_inputs::TeacherInputs;
use sdpo::train::teacher_probe::{greedy_decode, probe_teacher, ProbeContext};
use sdpo::train::{SdpoTrainer, TrainConfig, TrainError};

use crate::common::{self, host_f32, serial};
use crate::Target;

/// The autodiff backend over the backend under test.
type B<I> = Autodiff<I>;

/// Succeeds when the completion's first token id is even, explains the others: about half of
/// every group succeeds on a random model, so demonstrations and feedback both occur.
fn parity_rewards() -> Rewards {
    Rewards::new()
        .add(
            reward_fn("even-first-token", |input| {
                Ok(
                    if input.completion_ids.first().is_some_and(|t| t % 2 == 0) {
                        RewardOutput::new(1.0)
                    } else {
                        RewardOutput::with_feedback(
                            0.0,
                            "The answer starts with the wrong kind of character.",
                        )
                    },
                )
            }),
            1.0,
        )
        .unwrap()
}

/// Two prompts × four samples × five tokens, top-k 10, lr 1e-3, seed 3.
pub(crate) fn small_config() -> TrainConfig {
    TrainConfig {
        sdpo: SdpoConfig {
            distillation_topk: Some(10),
            ..SdpoConfig::default()
        },
        num_generations: 4,
        prompts_per_step: 2,
        steps: 10,
        sampling: SamplingParams {
            max_new_tokens: 5,
            ..SamplingParams::default()
        },
        optimizer: sdpo::train::config::OptimizerConfig {
            learning_rate: 1e-3,
            ..Default::default()
        },
        seed: 3,
        ..TrainConfig::default()
    }
}

fn trainer<I: LossBackend + DecoderBackend>(
    cfg: TrainConfig,
    rewards: Rewards,
) -> SdpoTrainer<B<I>> {
    build_trainer::<I>(cfg, rewards).unwrap()
}

fn build_trainer<I: LossBackend + DecoderBackend>(
    cfg: TrainConfig,
    rewards: Rewards,
) -> Result<SdpoTrainer<B<I>>, TrainError> {
    let device = Default::default();
    I::seed(&device, 11);
    let tok = char_tokenizer().unwrap();
    let model = init_model::<B<I>>(&tiny_model_config(tok.vocab_size()), &device);
    let rows = Task::Addition.problems().into_iter().take(16).collect();
    let dataset = Dataset::from_rows(rows).unwrap();
    SdpoTrainer::new(cfg, model, tok, dataset, rewards, &device)
}

/// A trainer on the built-in tiny model with the parity reward, or the error building it.
pub(crate) fn try_trainer<I: LossBackend + DecoderBackend>(
    cfg: TrainConfig,
) -> Result<SdpoTrainer<B<I>>, TrainError> {
    build_trainer::<I>(cfg, parity_rewards())
}

fn params_of<I: Backend, M: Module<I>>(m: &M) -> HashMap<ParamId, Vec<f32>> {
    parameter_data::<I, M>(m)
        .into_iter()
        .map(|(id, d)| (id, d.to_vec::<f32>().unwrap()))
        .collect()
}

/// Parameter values in module order (ids differ between separately built trainers).
pub(crate) fn values_in_order<I: Backend, M: Module<I>>(m: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl<I: Backend> burn::module::ModuleVisitor<I> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<I, D>>) {
            self.0.push(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// Settings of a hand-built pass: temperature 1, no accumulation scale, default rollout IS.
fn pass_settings(sdpo: &SdpoConfig) -> Arc<StepSettings> {
    Arc::new(StepSettings {
        sdpo: sdpo.clone(),
        temperature: 1.0,
        loss_scale: 1.0,
        rollout_is: Default::default(),
        shares: Default::default(),
    })
}

fn all_finite(p: &HashMap<ParamId, Vec<f32>>) -> bool {
    p.values().all(|v| v.iter().all(|x| x.is_finite()))
}

pub fn every_teacher_mode_and_loss_variant_runs_a_finite_step<I: Target>() {
    let _serial = serial();
    let mut cases: Vec<(&str, TrainConfig)> = Vec::new();
    for mode in [
        TeacherMode::Ema,
        TeacherMode::Frozen,
        TeacherMode::Live,
        TeacherMode::TrustRegion,
    ] {
        let mut c = small_config();
        c.sdpo.teacher_mode = mode;
        cases.push((mode.as_str(), c));
    }
    let mut c = small_config();
    c.sdpo.teacher_mode = TeacherMode::LoraEma;
    c.lora = Some(LoraConfig::default());
    cases.push(("lora-ema", c));
    type Variant = (&'static str, fn(&mut SdpoConfig));
    let variants: [Variant; 7] = [
        ("topk-renormalized", |s| s.distillation_add_tail = false),
        ("full-vocabulary", |s| s.distillation_topk = None),
        ("sampled-token", |s| {
            s.full_logit_distillation = false;
            s.alpha = 1.0
        }),
        ("forward-kl", |s| s.alpha = 0.0),
        ("reverse-kl", |s| s.alpha = 1.0),
        ("no-is-clip", |s| s.is_clip = None),
        ("seq-mean-token-sum", |s| {
            s.loss_agg_mode = "seq-mean-token-sum".parse().unwrap()
        }),
    ];
    for (name, f) in variants {
        let mut c = small_config();
        f(&mut c.sdpo);
        cases.push((name, c));
    }
    for (name, w) in [("grpo", 0.0), ("blend", 0.5)] {
        let mut c = small_config();
        c.sdpo.distillation_weight = w;
        cases.push((name, c));
    }
    let mut c = small_config();
    c.mini_batches = 2;
    c.micro_batch_size = 2;
    cases.push(("mini-and-micro-batches", c));

    for (name, cfg) in cases {
        let w = cfg.sdpo.distillation_weight;
        let mut t = trainer::<I>(cfg, parity_rewards());
        let report = t.step().unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = &report.metrics;
        assert!(m["loss"].is_finite(), "{name}: loss {}", m["loss"]);
        assert!(m["grad_norm"].is_finite(), "{name}");
        if w > 0.0 {
            assert!(m.contains_key("loss/distillation"), "{name}");
            assert!(
                m["self_distillation/reprompt_sample_fraction"] > 0.0,
                "{name}: no reprompt"
            );
        }
        if w < 1.0 {
            assert!(m["loss/policy"].is_finite(), "{name}");
        }
        assert!(
            all_finite(&params_of(&t.policy().valid())),
            "{name}: non-finite weights"
        );
    }
}

/// The trainer's step on the fused loss kernels equals the step on the composite code: same
/// rollout (same seeds), distillation loss to 1e-5 relative (1e-4 on a GPU), gradient norm to
/// 1e-4. The GPU allowance is for the sampled-token loss `r · log p`, whose `r = log p_s −
/// log p_t` is a difference of log-probabilities: with Vulkan's/CUDA's `exp`/`log` a few ULP off
/// (~1e-6 absolute at |log p| ≈ 3) and `r` ≈ 4e-3, the two paths differ by ~1e-4 relative
/// (measured on lavapipe: 1.9e-5).
pub fn fused_and_composite_training_steps_agree<I: Target>() {
    let _serial = serial();
    crate::common::assert_fused_kernels::<I>();
    type Variant = (&'static str, fn(&mut SdpoConfig));
    let variants: [Variant; 3] = [
        ("default", |_| {}),
        ("full-vocabulary", |s| s.distillation_topk = None),
        ("sampled-token", |s| {
            s.full_logit_distillation = false;
            s.alpha = 1.0
        }),
    ];
    for (name, f) in variants {
        let run = |fused: bool| {
            let mut c = small_config();
            f(&mut c.sdpo);
            c.sdpo.fused_loss = fused;
            let mut t = trainer::<I>(c, parity_rewards());
            t.step().unwrap_or_else(|e| panic!("{name}: {e}")).metrics
        };
        let (fused, composite) = (run(true), run(false));
        let (lf, lc) = (fused["loss/distillation"], composite["loss/distillation"]);
        assert!(lc != 0.0, "{name}: no distillation signal to compare");
        let rel = if I::GPU { 1e-4 } else { 1e-5 };
        assert!(
            (lf - lc).abs() <= rel * lc.abs() + 1e-7,
            "{name}: distillation loss {lf} (fused) vs {lc} (composite)"
        );
        let (gf, gc) = (fused["grad_norm"], composite["grad_norm"]);
        assert!(
            (gf - gc).abs() <= 1e-4 * gc.abs(),
            "{name}: gradient norm {gf} (fused) vs {gc} (composite)"
        );
    }
}

pub fn a_batch_where_nothing_succeeds_gives_zero_distillation_loss<I: Target>() {
    let _serial = serial();
    let never = Rewards::new()
        .add(reward_fn("never", |_| Ok(RewardOutput::new(0.0))), 1.0)
        .unwrap();
    let mut t = trainer::<I>(small_config(), never);
    let before = params_of(&t.policy().valid());
    let report = t.step().unwrap();
    assert_eq!(report.metrics["loss/distillation"], 0.0);
    assert_eq!(
        report.metrics["self_distillation/reprompt_sample_fraction"],
        0.0
    );
    assert_eq!(report.metrics["self_distillation/empty_target_batch"], 1.0);
    let after = params_of(&t.policy().valid());
    assert!(all_finite(&after));
    // Zero gradients and no weight decay: AdamW leaves every weight as it was.
    assert_eq!(before, after);
    assert!(report.samples.iter().all(|s| !s.reprompted));
}

pub fn teacher_prompt_is_the_reprompt_template_with_a_peer_success<I: Target>() {
    let _serial = serial();
    let mut t = trainer::<I>(small_config(), parity_rewards());
    let report = t.step().unwrap();
    let tok = char_tokenizer().unwrap();
    let mut checked = 0;
    for (i, s) in report.samples.iter().enumerate() {
        let peers: Vec<&_> = report
            .samples
            .iter()
            .enumerate()
            .filter(|(j, p)| p.group == s.group && *j != i && p.score >= 1.0)
            .map(|(_, p)| p)
            .collect();
        let question = t.dataset().rows()[s.row]
            .prompt
            .last_user_text()
            .unwrap()
            .to_string();
        let Some(demo) = peers.first() else {
            continue;
        };
        let expected = format!(
            "{question}\nCorrect solution:\n\n{}\n\n\n\nCorrectly solve the original question.\n",
            remove_thinking(&demo.completion)
        );
        let rendered = tok
            .apply_chat_template(&[ChatMessage::user(expected)], true)
            .unwrap();
        assert!(s.reprompted);
        assert_eq!(s.teacher_prompt, rendered, "sample {i}");
        checked += 1;
    }
    assert!(
        checked > 0,
        "no sample had a successful peer: {:?}",
        report.samples
    );
}

pub fn teacher_is_gathered_at_exactly_the_students_topk<I: Target>() {
    let _serial = serial();
    let mut cfg = small_config();
    cfg.sdpo.distillation_add_tail = false; // renormalized top-k: only the support matters
    cfg.sdpo.is_clip = None;
    let t = trainer::<I>(cfg.clone(), parity_rewards());
    let device = Default::default();
    let tok = char_tokenizer().unwrap();
    let prompt = tok.encode("12+3=\n> ", false).unwrap();
    let response = tok.encode("15", false).unwrap();
    let (p_ids, p_mask) = left_pad::<B<I>>(&[prompt], 0, &device);
    let r_ids = Tensor::<B<I>, 2, burn::tensor::Int>::from_data(
        TensorData::new(
            response.iter().map(|&x| x as i64).collect::<Vec<_>>(),
            [1, 2],
        ),
        &device,
    );
    let r_mask = Tensor::<B<I>, 2>::ones([1, 2], &device);
    let (ids, mask) = concat_prompt_response(p_ids, p_mask, r_ids.clone(), r_mask.clone());
    let student = response_logits(t.policy(), ids.clone(), mask.clone(), 2, Some(1.0))
        .unwrap()
        .detach();
    let vocab = student.dims()[2];
    let student_v = student.clone().into_data().to_vec::<f32>().unwrap();
    // The student's top-10 per position.
    let topk: Vec<Vec<usize>> = (0..2)
        .map(|p| {
            let row = &student_v[p * vocab..(p + 1) * vocab];
            let mut idx: Vec<usize> = (0..vocab).collect();
            idx.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
            idx.truncate(10);
            idx
        })
        .collect();
    let teacher_base: Vec<f32> = (0..2 * vocab)
        .map(|i| ((i * 37) % 11) as f32 * 0.3)
        .collect();
    let loss_with = |teacher: Vec<f32>| {
        let batch = TrainBatch {
            ids: ids.clone(),
            mask: mask.clone(),
            response_ids: r_ids.clone(),
            response_mask: r_mask.clone(),
            self_distillation_mask: Tensor::ones([1], &device),
            teacher: TeacherSignal::Logits(Tensor::from_data(
                TensorData::new(teacher, [1, 2, vocab]),
                &device,
            )),
            old_log_probs: None,
            advantages: None,
            rollout_log_probs: None,
            settings: pass_settings(&cfg.sdpo),
        };
        t.policy().loss(batch).unwrap().1.loss
    };
    let base = loss_with(teacher_base.clone());
    // Changing the teacher anywhere outside the student's top-k changes nothing...
    let mut outside = teacher_base.clone();
    for p in 0..2 {
        for v in 0..vocab {
            if !topk[p].contains(&v) {
                outside[p * vocab + v] += 1.0 + (v % 3) as f32;
            }
        }
    }
    // (equal up to rounding: the teacher's full logsumexp cancels in the renormalization)
    let same = loss_with(outside);
    assert!((same - base).abs() <= 1e-5 * base.abs(), "{same} vs {base}");
    // ...while changing it at one of the student's top-k indices does.
    let mut inside = teacher_base;
    inside[topk[1][3] + vocab] += 2.0;
    let moved = loss_with(inside);
    assert!(
        (moved - base).abs() > 1e-3 * base.abs(),
        "{moved} vs {base}"
    );
}

/// A live-teacher trainer (`small_config`) and one batch of 2 prompts × 4 samples in which the
/// first sample of each group succeeds (score 1, the others 0) and the other three get it as a
/// demonstration: the trainer, the rollout, the scores, the reprompt plan, the teacher inputs.
#[allow(clippy::type_complexity)]
fn demonstration_batch<I: Target>() -> (
    SdpoTrainer<B<I>>,
    Rollout<I>,
    Vec<f64>,
    RepromptPlan,
    TeacherInputs<I>,
) {
    let mut cfg = small_config();
    cfg.sdpo.teacher_mode = TeacherMode::Live;
    let t = trainer::<I>(cfg.clone(), parity_rewards());
    let device = Default::default();
    let rows = (0..2).map(|r| (r, t.dataset().rows()[r].prompt.to_messages()));
    let requests = requests(t.prompts(), rows, 4, "dataset row").unwrap();
    let rollout = Rollout::run(
        &t.policy().valid(),
        t.prompts(),
        requests,
        t.sampling(),
        &mut sampler_rng(5),
        &device,
    )
    .unwrap();
    let scores: Vec<f64> = (0..rollout.len())
        .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
        .collect();
    let outcomes: Vec<SampleOutcome> = rollout
        .requests
        .iter()
        .zip(&rollout.texts)
        .zip(&scores)
        .map(|((request, text), &score)| SampleOutcome {
            group: request.group,
            prompt: &request.messages,
            response: text,
            score,
            feedback: None,
        })
        .collect();
    let plan = plan_reprompts(&outcomes, &cfg.sdpo).unwrap();
    let inputs = TeacherInputs::build(&plan, &rollout, t.prompts(), &cfg.sdpo, &device).unwrap();
    (t, rollout, scores, plan, inputs)
}

/// The teacher scores exactly the student's response tokens after its own prompt: its logits at
/// response position `p`, built as the trainer builds them (reprompt plan → `TeacherInputs` →
/// `Teacher::logits`, left-padded batch), equal one plain forward of the unpadded sequence
/// `teacher prompt ++ response` at position `len(teacher prompt) − 1 + p`. A one-position shift
/// would look exactly like a weak teacher; the test also checks that the neighbouring position
/// is told apart. Live teacher (the student's weights); reprompted samples (a peer's
/// demonstration), so the teacher's prompt is longer than the student's. Tolerance: 1e-4 of the
/// largest logit (batched and padded vs. single-row matmuls round differently).
pub fn teacher_scores_the_students_response_tokens_after_its_own_prompt<I: Target>() {
    let _serial = serial();
    let (t, rollout, _, plan, inputs) = demonstration_batch::<I>();
    let device = Default::default();
    let policy = t.policy().valid();
    let r = rollout.generation.response_ids.dims()[1];
    let [n, width] = inputs.ids.dims();
    let teacher = host(
        t.teacher()
            .logits(&policy, inputs.ids.clone(), inputs.mask.clone(), r, 1.0)
            .unwrap(),
    );
    let vocab = teacher.len() / (n * r);
    let ids: Vec<i64> = inputs.ids.into_data().iter::<i64>().collect();
    let mask: Vec<bool> = inputs.mask.into_data().iter::<bool>().collect();
    let mut checked = 0;
    for i in (0..n).filter(|&i| plan.teachers[i].reprompted()) {
        let prompt: Vec<i64> = (0..width - r)
            .filter(|&c| mask[i * width + c])
            .map(|c| ids[i * width + c])
            .collect();
        assert!(prompt.len() > rollout.requests[i].prompt_ids.len());
        let response = &rollout.generation.tokens[i];
        let seq: Vec<i64> = prompt
            .iter()
            .copied()
            .chain(response.iter().map(|&x| x as i64))
            .collect();
        let len = seq.len();
        let hidden = policy.decode_hidden(
            Tensor::from_data(TensorData::new(seq, [1, len]), &device),
            Tensor::from_data(TensorData::new(vec![true; len], [1, len]), &device),
            Tensor::<I, 1, burn::tensor::Int>::arange(0..len as i64, &device).reshape([1, len]),
            None,
        );
        let plain = host(policy.decode_logits(hidden));
        let at = |p: usize| &plain[p * vocab..(p + 1) * vocab];
        for p in 0..response.len() {
            let row = &teacher[(i * r + p) * vocab..(i * r + p + 1) * vocab];
            let tolerance = 1e-4 * row.iter().fold(1.0f32, |m, x| m.max(x.abs()));
            let diff = |other: &[f32]| {
                row.iter()
                    .zip(other)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
            };
            let aligned = diff(at(prompt.len() - 1 + p));
            assert!(
                aligned <= tolerance,
                "{}: sample {i}, response position {p}: teacher logits differ from the plain forward by {aligned}",
                I::NAME
            );
            let neighbour = if prompt.len() + p < len {
                prompt.len() + p
            } else {
                prompt.len() + p - 2
            };
            let shifted = diff(at(neighbour));
            assert!(
                shifted > 10.0 * tolerance,
                "{}: sample {i}, position {p}: the neighbouring position is not told apart ({shifted})",
                I::NAME
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no reprompted response token was checked");
}

/// The teacher probe's cacheless greedy decoding gives exactly the tokens of the KV-cache
/// generator (for the live teacher on its reprompted prompts, and the student on its own), and
/// its greedy success is the reward of those tokens.
pub fn teacher_probe_decodes_like_the_generator<I: Target>() {
    let _serial = serial();
    let (t, rollout, scores, plan, inputs) = demonstration_batch::<I>();
    let device = Default::default();
    let policy = t.policy().valid();
    let stop = &t.sampling().stop_token_ids;
    let greedy = SamplingParams {
        stop_token_ids: stop.clone(),
        ..SamplingParams::greedy(5)
    };
    let cached = |prompts: &[Vec<u32>]| {
        let (ids, mask) = left_pad::<I>(prompts, t.pad_id(), &device);
        generate(&policy, ids, mask, &greedy, t.pad_id(), &mut sampler_rng(0))
            .unwrap()
            .tokens
    };
    let chosen: Vec<usize> = (0..rollout.len())
        .filter(|&i| plan.teachers[i].reprompted())
        .collect();
    assert!(!chosen.is_empty());
    let teacher_prompts: Vec<Vec<u32>> =
        chosen.iter().map(|&i| inputs.prompts[i].clone()).collect();
    let uncached = greedy_decode(
        |ids, mask| t.teacher().logits(&policy, ids, mask, 1, 1.0),
        &teacher_prompts,
        t.pad_id(),
        stop,
        5,
        &device,
    )
    .unwrap();
    assert_eq!(uncached, cached(&teacher_prompts), "{}", I::NAME);
    let rewards = parity_rewards();
    let dataset_rows: Vec<&Row> = rollout
        .requests
        .iter()
        .map(|r| &t.dataset().rows()[r.row])
        .collect();
    let ctx = ProbeContext {
        student: &policy,
        teacher: t.teacher(),
        prompts: t.prompts(),
        rewards: &rewards,
        rows: &dataset_rows,
        stop_ids: stop,
        max_new_tokens: 5,
        temperature: 1.0,
        success_threshold: 1.0,
    };
    let scored: Vec<_> = scores
        .iter()
        .map(|&s| sdpo::train::reward::Scored {
            score: s,
            feedback: None,
            error: None,
            failed: false,
            components: Vec::new(),
        })
        .collect();
    let report = probe_teacher(&ctx, &rollout, &scored, &plan, &inputs).unwrap();
    let success = |tokens: &[Vec<u32>]| {
        let even = tokens
            .iter()
            .filter(|t| t.first().is_some_and(|x| x % 2 == 0));
        even.count() as f64 / tokens.len() as f64
    };
    assert_eq!(report.teacher_success, Some(success(&uncached)));
    let student_prompts: Vec<Vec<u32>> = chosen
        .iter()
        .map(|&i| rollout.requests[i].prompt_ids.clone())
        .collect();
    assert_eq!(
        report.student_success,
        Some(success(&cached(&student_prompts)))
    );
    // Every reprompted sample here has a demonstration; the group's only success gets none.
    assert_eq!(report.teacher_success_feedback, None);
    assert_eq!(report.successful_with_signal, Some(0.0));
    assert_eq!(report.kl_successful, None);
    assert!(report.kl_failed.is_some_and(|kl| kl > 0.0));
}

/// The probe draws no random numbers: a run with it every step trains exactly as one without
/// it, and its metrics appear on probe steps only. With every sample failed and given feedback,
/// the probe's KL over failed samples is the step's `teacher_kl` (two computations, 1e-4).
pub fn teacher_probe_leaves_training_unchanged<I: Target>() {
    let _serial = serial();
    let feedback_only = || {
        Rewards::new()
            .add(
                reward_fn("never", |_| {
                    Ok(RewardOutput::with_feedback(
                        0.0,
                        "Wrong: try another digit.",
                    ))
                }),
                1.0,
            )
            .unwrap()
    };
    let run = |every: usize| {
        let mut cfg = small_config();
        cfg.teacher_probe_every = every;
        let mut t = trainer::<I>(cfg, feedback_only());
        let reports: Vec<_> = (0..3).map(|_| t.step().unwrap()).collect();
        // Parameter ids differ between two models; compare the values in a fixed order.
        let mut values: Vec<Vec<u32>> = params_of::<I, _>(&t.policy().valid())
            .into_values()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect();
        values.sort();
        (reports, values)
    };
    let (probed, probed_params) = run(2);
    let (plain, plain_params) = run(0);
    assert_eq!(probed_params, plain_params, "{}", I::NAME);
    for (a, b) in probed.iter().zip(&plain) {
        assert_eq!(a.metrics[names::LOSS], b.metrics[names::LOSS]);
        assert!(!b.metrics.contains_key(names::PROBE_KL_FAILED));
    }
    let has = |r: &sdpo::train::StepReport| r.metrics.contains_key(names::PROBE_KL_FAILED);
    assert_eq!(
        probed.iter().map(has).collect::<Vec<_>>(),
        [true, true, false]
    );
    let m = &probed[0].metrics;
    let (probe, loss) = (m[names::PROBE_KL_FAILED], m[names::TEACHER_KL]);
    assert!(
        (probe - loss).abs() <= 1e-4 * loss.abs().max(1.0),
        "{probe} vs {loss}"
    );
    assert!(m.contains_key(names::PROBE_TEACHER_SUCCESS_FEEDBACK));
    assert!(!m.contains_key(names::PROBE_TEACHER_SUCCESS_DEMONSTRATION));
    assert!(!m.contains_key(names::PROBE_KL_SUCCESSFUL));
}

/// `self_distillation/teacher_kl` is the mean KL(teacher ‖ student) over the response tokens of
/// samples with a teacher signal, on the full vocabulary of the temperature-scaled logits
/// (checked against a float64 computation from the same logits, 1e-4 relative); a batch without
/// a signal has none.
pub fn teacher_kl_is_the_mean_kl_over_the_tokens_with_a_teacher_signal<I: Target>() {
    let _serial = serial();
    let cfg = small_config();
    let t = trainer::<I>(cfg.clone(), parity_rewards());
    let device = Default::default();
    let tok = char_tokenizer().unwrap();
    let prompt = tok.encode("12+3=\n> ", false).unwrap();
    let response = tok.encode("15", false).unwrap();
    let (p_ids, p_mask) = left_pad::<B<I>>(&[prompt.clone(), prompt], 0, &device);
    let r_ids = Tensor::<B<I>, 2, burn::tensor::Int>::from_data(
        TensorData::new(
            response
                .iter()
                .chain(&response)
                .map(|&x| x as i64)
                .collect::<Vec<_>>(),
            [2, 2],
        ),
        &device,
    );
    let r_mask = Tensor::<B<I>, 2>::ones([2, 2], &device);
    let (ids, mask) = concat_prompt_response(p_ids, p_mask, r_ids.clone(), r_mask.clone());
    let student = host(
        response_logits(t.policy(), ids.clone(), mask.clone(), 2, Some(1.0))
            .unwrap()
            .detach(),
    );
    let vocab = student.len() / 4;
    let teacher: Vec<f32> = (0..4 * vocab)
        .map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.0)
        .collect();
    let kl_with = |signal: [f32; 2]| {
        let batch = TrainBatch {
            ids: ids.clone(),
            mask: mask.clone(),
            response_ids: r_ids.clone(),
            response_mask: r_mask.clone(),
            self_distillation_mask: Tensor::from_data(
                TensorData::new(signal.to_vec(), [2]),
                &device,
            ),
            teacher: TeacherSignal::Logits(Tensor::from_data(
                TensorData::new(teacher.clone(), [2, 2, vocab]),
                &device,
            )),
            old_log_probs: None,
            advantages: None,
            rollout_log_probs: None,
            settings: pass_settings(&cfg.sdpo),
        };
        t.policy().loss(batch).unwrap().1.teacher_kl
    };
    let log_softmax = |row: &[f32]| {
        let row: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        common::log_softmax(&row)
    };
    // Sample 1's two tokens (rows 2 and 3 of [2, 2, vocab]).
    let want: f64 = (2..4)
        .map(|r| {
            let s = log_softmax(&student[r * vocab..(r + 1) * vocab]);
            let q = log_softmax(&teacher[r * vocab..(r + 1) * vocab]);
            q.iter()
                .zip(&s)
                .map(|(b, a)| b.exp() * (b - a))
                .sum::<f64>()
        })
        .sum::<f64>()
        / 2.0;
    let got = kl_with([0.0, 1.0]).expect("a sample with a teacher signal");
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "{}: teacher KL {got} vs float64 {want}",
        I::NAME
    );
    assert_eq!(kl_with([0.0, 0.0]), None);
}

pub fn ema_moves_the_teacher_by_exactly_the_rate_and_frozen_never_moves<I: Target>() {
    let _serial = serial();
    let mut cfg = small_config();
    cfg.sdpo.teacher_update_rate = 0.25;
    let mut t = trainer::<I>(cfg.clone(), parity_rewards());
    let teacher0 = match t.teacher().weights() {
        Some(TeacherWeights::Model(m)) => params_of(m),
        other => panic!("ema without LoRA holds a model copy, found {other:?}"),
    };
    t.step().unwrap();
    let student1 = params_of(&t.policy().lm.valid());
    let teacher1 = match t.teacher().weights() {
        Some(TeacherWeights::Model(m)) => params_of(m),
        _ => unreachable!(),
    };
    let mut moved = 0;
    for (id, t0) in &teacher0 {
        let (s1, t1) = (&student1[id], &teacher1[id]);
        for k in 0..t0.len() {
            let want = 0.75 * t0[k] + 0.25 * s1[k];
            assert!(
                (t1[k] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{} vs {want}",
                t1[k]
            );
            moved += usize::from(t1[k] != t0[k]);
        }
    }
    assert!(
        moved > 0,
        "the student did not move, so the EMA test proves nothing"
    );

    cfg.sdpo.teacher_mode = TeacherMode::Frozen;
    let mut t = trainer::<I>(cfg, parity_rewards());
    let frozen0 = match t.teacher().weights() {
        Some(TeacherWeights::Model(m)) => params_of(m),
        _ => unreachable!(),
    };
    let student0 = params_of(&t.policy().lm.valid());
    t.step().unwrap();
    t.step().unwrap();
    let frozen2 = match t.teacher().weights() {
        Some(TeacherWeights::Model(m)) => params_of(m),
        _ => unreachable!(),
    };
    assert_eq!(frozen0, frozen2);
    assert_ne!(student0, params_of(&t.policy().lm.valid()));
}

pub fn teacher_memory_is_one_copy_adapters_only_or_nothing<I: Target>() {
    let _serial = serial();
    let model_bytes = {
        let t = trainer::<I>(small_config(), parity_rewards());
        param_bytes::<B<I>, _>(&t.policy().lm)
    };
    for (mode, lora, expect_model_copy) in [
        (TeacherMode::Ema, false, true),
        (TeacherMode::Frozen, false, true),
        (TeacherMode::TrustRegion, false, true),
        (TeacherMode::Live, false, false),
        (TeacherMode::LoraEma, true, false),
    ] {
        let mut cfg = small_config();
        cfg.sdpo.teacher_mode = mode;
        cfg.lora = lora.then(LoraConfig::default);
        let t = trainer::<I>(cfg, parity_rewards());
        let teacher_bytes = t.teacher().weights().map_or(0, param_bytes::<I, _>);
        match (expect_model_copy, mode) {
            (true, _) => assert_eq!(teacher_bytes, model_bytes, "{mode:?}"),
            (false, TeacherMode::Live) => assert_eq!(teacher_bytes, 0),
            _ => {
                let adapters = param_bytes::<B<I>, _>(t.policy().lora.as_ref().unwrap());
                assert_eq!(teacher_bytes, adapters);
                assert!(
                    adapters * 3 < model_bytes,
                    "{adapters} adapter bytes vs {model_bytes}"
                );
            }
        }
    }
}

pub fn lora_training_leaves_every_base_weight_bit_identical<I: Target>() {
    let _serial = serial();
    let mut cfg = small_config();
    cfg.lora = Some(LoraConfig::default());
    cfg.sdpo.teacher_mode = TeacherMode::LoraEma;
    let mut t = trainer::<I>(cfg, parity_rewards());
    let base0 = params_of(&t.policy().lm.valid());
    let lora0 = params_of(&t.policy().lora.as_ref().unwrap().valid());
    t.step().unwrap();
    t.step().unwrap();
    assert_eq!(base0, params_of(&t.policy().lm.valid()));
    assert_ne!(lora0, params_of(&t.policy().lora.as_ref().unwrap().valid()));
}

pub fn resume_continues_bit_identically<I: Target>() {
    let _serial = serial();
    let cfg = TrainConfig {
        mini_batches: 2,
        ..small_config()
    };
    let mut straight = trainer::<I>(cfg.clone(), parity_rewards());
    let mut straight_reports = Vec::new();
    for _ in 0..4 {
        straight_reports.push(straight.step().unwrap());
    }

    let dir = tempfile::tempdir().unwrap();
    let mut first = trainer::<I>(cfg.clone(), parity_rewards());
    first.step().unwrap();
    first.step().unwrap();
    let ckpt = first.save_checkpoint(dir.path()).unwrap();
    drop(first);
    let mut resumed = trainer::<I>(cfg, parity_rewards());
    resumed.load_checkpoint(&ckpt).unwrap();
    assert_eq!(resumed.steps_done(), 2);
    let mut resumed_reports = Vec::new();
    for _ in 0..2 {
        resumed_reports.push(resumed.step().unwrap());
    }
    for (a, b) in straight_reports[2..].iter().zip(&resumed_reports) {
        assert_eq!(a.samples, b.samples);
        for key in ["loss", "grad_norm", "reward/mean", "learning_rate"] {
            assert_eq!(a.metrics[key].to_bits(), b.metrics[key].to_bits(), "{key}");
        }
    }
    let same = |a: Vec<Vec<f32>>, b: Vec<Vec<f32>>| {
        a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
            })
    };
    assert!(same(
        values_in_order(&straight.policy().valid()),
        values_in_order(&resumed.policy().valid())
    ));
    let teacher = |t: &SdpoTrainer<B<I>>| match t.teacher().weights() {
        Some(TeacherWeights::Model(m)) => values_in_order(m),
        _ => unreachable!(),
    };
    assert!(same(teacher(&straight), teacher(&resumed)));
}

pub fn a_checkpoint_from_another_kind_of_run_is_refused_by_name<I: Target>() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer::<I>(small_config(), parity_rewards());
    t.step().unwrap();
    let ckpt = t.save_checkpoint(dir.path()).unwrap();
    let mut cfg = small_config();
    cfg.sdpo.teacher_mode = TeacherMode::Live;
    let mut other = trainer::<I>(cfg, parity_rewards());
    let err = other.load_checkpoint(&ckpt).unwrap_err().to_string();
    assert!(
        err.contains("state.json") && err.contains("teacher_mode"),
        "{err}"
    );
    std::fs::write(ckpt.join("optimizer.mpk"), b"garbage").unwrap();
    let mut same = trainer::<I>(small_config(), parity_rewards());
    let err = same.load_checkpoint(&ckpt).unwrap_err().to_string();
    assert!(err.contains("optimizer.mpk"), "{err}");
}

/// A prompt and response of the addition task as one `[1, P + 2]` batch on the inner backend,
/// with the response length.
fn scoring_batch<I: Backend>() -> (
    Tensor<I, 2, burn::tensor::Int>,
    Tensor<I, 2, burn::tensor::Bool>,
    usize,
) {
    let device = Default::default();
    let tok = char_tokenizer().unwrap();
    let prompt = tok.encode("12+3=\n> ", false).unwrap();
    let response = tok.encode("15", false).unwrap();
    let (p_ids, p_mask) = left_pad::<I>(&[prompt], 0, &device);
    let r = response.len();
    let r_ids = Tensor::from_data(
        TensorData::new(
            response.iter().map(|&x| x as i64).collect::<Vec<_>>(),
            [1, r],
        ),
        &device,
    );
    let (ids, mask) = concat_prompt_response(p_ids, p_mask, r_ids, Tensor::ones([1, r], &device));
    (ids, mask, r)
}

fn host<I: Backend>(t: Tensor<I, 3>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

pub fn trust_region_is_the_reference_at_rate_0_and_live_at_rate_1_on_the_teacher_input<
    I: Target,
>() {
    let _serial = serial();
    let (ids, mask, r) = scoring_batch::<I>();
    for rate in [0.0, 1.0] {
        let mut cfg = small_config();
        cfg.sdpo.teacher_mode = TeacherMode::TrustRegion;
        cfg.sdpo.teacher_update_rate = rate;
        let mut t = trainer::<I>(cfg, parity_rewards());
        t.step().unwrap();
        t.step().unwrap();
        let student = t.policy().valid();
        let teacher = host(
            t.teacher()
                .logits(&student, ids.clone(), mask.clone(), r, 1.0)
                .unwrap(),
        );
        let live =
            host(response_logits(&student, ids.clone(), mask.clone(), r, Some(1.0)).unwrap());
        let reference = match t.teacher().weights() {
            Some(TeacherWeights::Model(m)) => {
                host(response_logits(m, ids.clone(), mask.clone(), r, Some(1.0)).unwrap())
            }
            other => panic!("trust-region without LoRA keeps the reference model, found {other:?}"),
        };
        assert_ne!(
            live, reference,
            "the student did not move: the test proves nothing"
        );
        if rate == 0.0 {
            assert_eq!(teacher, reference, "rate 0 is the reference, exactly");
        } else {
            // reference + 1·(student − reference): equal to the student up to one rounding.
            for (a, b) in teacher.iter().zip(&live) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }
}

pub fn live_teacher_is_the_student_on_the_teacher_input<I: Target>() {
    let _serial = serial();
    let (ids, mask, r) = scoring_batch::<I>();
    let mut cfg = small_config();
    cfg.sdpo.teacher_mode = TeacherMode::Live;
    let mut t = trainer::<I>(cfg, parity_rewards());
    t.step().unwrap();
    let student = t.policy().valid();
    let teacher = t
        .teacher()
        .logits(&student, ids.clone(), mask.clone(), r, 0.7)
        .unwrap();
    let live = response_logits(&student, ids, mask, r, Some(0.7)).unwrap();
    assert_eq!(host(teacher), host(live));
}

pub fn lora_ema_moves_only_the_adapters_by_exactly_the_rate<I: Target>() {
    let _serial = serial();
    let mut cfg = small_config();
    cfg.lora = Some(LoraConfig::default());
    cfg.sdpo.teacher_mode = TeacherMode::LoraEma;
    cfg.sdpo.teacher_update_rate = 0.25;
    let mut t = trainer::<I>(cfg, parity_rewards());
    let adapters = |t: &SdpoTrainer<B<I>>| match t.teacher().weights() {
        Some(TeacherWeights::Adapters(set)) => params_of(set),
        other => panic!("lora-ema keeps an adapter set, found {other:?}"),
    };
    let base0 = params_of(&t.policy().lm.valid());
    let teacher0 = adapters(&t);
    t.step().unwrap();
    let student1 = params_of(&t.policy().lora.as_ref().unwrap().valid());
    let teacher1 = adapters(&t);
    let mut moved = 0;
    for (id, t0) in &teacher0 {
        for (k, (&a, &s)) in t0.iter().zip(&student1[id]).enumerate() {
            let want = 0.75 * a + 0.25 * s;
            let got = teacher1[id][k];
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
            moved += usize::from(got != a);
        }
    }
    assert!(
        moved > 0,
        "the adapters did not move: the test proves nothing"
    );
    assert_eq!(base0, params_of(&t.policy().lm.valid()), "the base moved");
}

pub fn ema_teacher_stays_put_when_the_step_applied_no_update<I: Target>() {
    let _serial = serial();
    let mut t = trainer::<I>(small_config(), parity_rewards());
    t.step().unwrap(); // the student moves away from the teacher
                       // A teacher with one non-finite weight makes the distillation loss non-finite, so the
                       // next step skips its optimizer update; the EMA must then leave the teacher alone too.
    let Some(TeacherWeights::Model(m)) = t.teacher().weights().cloned() else {
        panic!("ema without LoRA keeps a model copy")
    };
    let mut poisoned = m;
    poisoned.model.norm.weight = poisoned.model.norm.weight.map(|w| w.mul_scalar(f32::NAN));
    t.teacher_mut()
        .set_weights(Some(TeacherWeights::Model(poisoned)));
    let teacher_before = match t.teacher().weights() {
        Some(TeacherWeights::Model(m)) => values_in_order(m),
        _ => unreachable!(),
    };
    let student_before = values_in_order(&t.policy().valid());
    let report = t.step().unwrap();
    assert_eq!(report.metrics["optimizer/skipped_steps"], 1.0);
    let bits = |v: Vec<Vec<f32>>| -> Vec<Vec<u32>> {
        v.into_iter()
            .map(|p| p.into_iter().map(f32::to_bits).collect())
            .collect()
    };
    let teacher_after = match t.teacher().weights() {
        Some(TeacherWeights::Model(m)) => values_in_order(m),
        _ => unreachable!(),
    };
    assert_eq!(
        bits(teacher_before),
        bits(teacher_after),
        "the teacher moved"
    );
    assert_eq!(
        bits(student_before),
        bits(values_in_order(&t.policy().valid()))
    );
}

pub fn on_policy_steps_run_one_student_forward_per_micro_batch<I: Target>() {
    let _serial = serial();
    // 2 prompts × 4 samples in micro-batches of 2: four passes. The IS clip is on, so before
    // this fix the step ran four more forwards for old log-probs.
    let mut cfg = small_config();
    cfg.micro_batch_size = 2;
    assert!(cfg.sdpo.is_clip.is_some());
    let mut t = trainer::<I>(cfg.clone(), parity_rewards());
    let m = t.step().unwrap().metrics;
    assert_eq!(m["perf/student_forwards"], 4.0);
    // Old log-probs are the pass's own, detached: every importance weight is exactly 1.
    assert_eq!(m["self_distillation/is_weight_mean"], 1.0);
    // The rollout drew with the same weights (KV-cache decode vs one full forward): rollout
    // IS weights are 1 up to rounding.
    assert!((m["rollout_is/weight_mean"] - 1.0).abs() < 1e-3, "{m:?}");
    // Two mini-batches (off-policy for the second): old log-probs need one pass per micro-batch.
    cfg.mini_batches = 2;
    let mut t = trainer::<I>(cfg, parity_rewards());
    assert_eq!(t.step().unwrap().metrics["perf/student_forwards"], 8.0);
}

pub fn the_blends_grpo_term_reaches_the_weights<I: Target>() {
    let _serial = serial();
    // No sample has a teacher signal (SD mask 0), so only the GRPO half of a 0.5 blend can
    // move the weights: its gradient must not be lost (it was, while the GRPO term read the
    // distillation's detached log-probs).
    let mut cfg = small_config();
    cfg.sdpo.distillation_weight = 0.5;
    let t = trainer::<I>(cfg.clone(), parity_rewards());
    let (ids, mask, r) = scoring_batch::<I>();
    let device = Default::default();
    let lift2 = |x: Tensor<I, 2>| Tensor::<B<I>, 2>::from_inner(x);
    let response_ids = Tensor::<B<I>, 2, burn::tensor::Int>::from_inner(
        ids.clone().slice([0..1, ids.dims()[1] - r..ids.dims()[1]]),
    );
    let vocab = t.policy().lm.config.vocab_size;
    let batch = TrainBatch {
        ids: Tensor::from_inner(ids),
        mask: Tensor::from_inner(mask),
        response_ids,
        response_mask: lift2(Tensor::ones([1, r], &device)),
        self_distillation_mask: Tensor::zeros([1], &device),
        teacher: TeacherSignal::Logits(Tensor::zeros([1, r, vocab], &device)),
        old_log_probs: None,
        advantages: Some(lift2(Tensor::ones([1, r], &device))),
        rollout_log_probs: None,
        settings: pass_settings(&cfg.sdpo),
    };
    let (loss, item) = t.policy().loss(batch).unwrap();
    assert_eq!(item.distillation_loss, Some(0.0));
    assert_eq!(
        item.clip_fraction,
        Some(0.0),
        "on-policy: the ratio is exactly 1"
    );
    let grads = loss.backward();
    let g = t
        .policy()
        .lm
        .model
        .embed_tokens
        .weight
        .grad(&grads)
        .unwrap();
    let norm: f32 = host_f32(g.powf_scalar(2.0).sum())
        .into_iter()
        .sum::<f32>()
        .sqrt();
    assert!(norm > 0.0, "no gradient from the GRPO term");
}
