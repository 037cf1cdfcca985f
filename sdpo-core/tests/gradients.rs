//! Autodiff gradients of the self-distillation loss against central finite
//! differences (float64), and detachment of everything but the student.
//!
//! Finite differences check the full-logit supports with `is_clip` off, where
//! the loss is a plain function of the student logits. With `is_clip` on or in
//! sampled-token mode the reference detaches part of the expression, so its
//! gradient is not the derivative of the loss value; those gradients are
//! checked against PyTorch autograd in `tests/golden_loss.rs`.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use sdpo_core::loss::{self_distillation_loss, DistillationBatch};
use sdpo_core::{LossAggMode, SdpoConfig};

type Inner = NdArray<f64>;
type B = Autodiff<Inner>;

const BATCH: usize = 2;
const LEN: usize = 3;
const VOCAB: usize = 7;

fn loss_value(
    student: Tensor<Inner, 3>,
    teacher: Tensor<Inner, 3>,
    mask: Tensor<Inner, 2>,
    cfg: &SdpoConfig,
) -> f64 {
    let dev = student.device();
    self_distillation_loss(
        DistillationBatch {
            student_logits: student,
            teacher_logits: teacher,
            response_ids: Tensor::<Inner, 2, Int>::from_data(
                TensorData::from([[0i64, 3, 6], [2, 2, 5]]),
                &dev,
            ),
            response_mask: mask,
            old_log_probs: None,
            self_distillation_mask: Some(Tensor::from_data(TensorData::from([1.0f64, 1.0]), &dev)),
            rollout_is_weights: None,
        },
        cfg,
    )
    .loss
    .into_scalar()
}

fn check(cfg: SdpoConfig) {
    let dev = Default::default();
    <Inner as Backend>::seed(&dev, 7);
    let student =
        Tensor::<Inner, 3>::random([BATCH, LEN, VOCAB], Distribution::Normal(0.0, 2.0), &dev);
    let teacher =
        Tensor::<Inner, 3>::random([BATCH, LEN, VOCAB], Distribution::Normal(0.0, 2.0), &dev);
    let mask = Tensor::<Inner, 2>::from_data(
        TensorData::from([[1.0f64, 1.0, 0.0], [1.0, 1.0, 1.0]]),
        &dev,
    );

    let s = Tensor::<B, 3>::from_inner(student.clone()).require_grad();
    let t = Tensor::<B, 3>::from_inner(teacher.clone()).require_grad();
    let out = self_distillation_loss(
        DistillationBatch {
            student_logits: s.clone(),
            teacher_logits: t.clone(),
            response_ids: Tensor::<B, 2, Int>::from_data(
                TensorData::from([[0i64, 3, 6], [2, 2, 5]]),
                &dev,
            ),
            response_mask: Tensor::from_inner(mask.clone()),
            old_log_probs: None,
            self_distillation_mask: Some(Tensor::from_data(TensorData::from([1.0f64, 1.0]), &dev)),
            rollout_is_weights: None,
        },
        &cfg,
    );
    let grads = out.loss.backward();
    let analytic = s.grad(&grads).unwrap().into_data().to_vec::<f64>().unwrap();
    // The teacher is detached: no gradient reaches it.
    let teacher_grad = t
        .grad(&grads)
        .map(|g| g.abs().max().into_scalar())
        .unwrap_or(0.0);
    assert_eq!(teacher_grad, 0.0, "teacher received a gradient ({cfg:?})");

    let base = student.clone().into_data().to_vec::<f64>().unwrap();
    let h = 1e-6;
    for (i, a) in analytic.iter().enumerate() {
        let shifted = |delta: f64| {
            let mut v = base.clone();
            v[i] += delta;
            Tensor::<Inner, 3>::from_data(TensorData::new(v, [BATCH, LEN, VOCAB]), &dev)
        };
        let fd = (loss_value(shifted(h), teacher.clone(), mask.clone(), &cfg)
            - loss_value(shifted(-h), teacher.clone(), mask.clone(), &cfg))
            / (2.0 * h);
        // Central differences in float64: truncation O(h²) ≈ 1e-12, rounding
        // O(eps/h) ≈ 1e-10; 1e-7 leaves room without hiding real errors.
        assert!(
            (a - fd).abs() < 1e-7,
            "entry {i}: autodiff {a} vs finite difference {fd} ({cfg:?})"
        );
    }
    // Masked positions (sample 0, position 2) get exactly zero gradient.
    for v in 0..VOCAB {
        assert_eq!(analytic[2 * VOCAB + v], 0.0);
    }
}

fn base() -> SdpoConfig {
    SdpoConfig {
        is_clip: None,
        distillation_topk: Some(3),
        ..SdpoConfig::default()
    }
}

#[test]
fn gradients_match_finite_differences_for_every_support_and_alpha() {
    for alpha in [0.0, 0.35, 1.0] {
        check(SdpoConfig { alpha, ..base() });
        check(SdpoConfig {
            alpha,
            distillation_add_tail: false,
            ..base()
        });
        check(SdpoConfig {
            alpha,
            distillation_topk: None,
            ..base()
        });
    }
}

#[test]
fn gradients_match_finite_differences_for_every_aggregation() {
    for mode in [
        LossAggMode::TokenMean,
        LossAggMode::SeqMeanTokenSum,
        LossAggMode::SeqMeanTokenMean,
        LossAggMode::SeqMeanTokenSumNorm,
    ] {
        check(SdpoConfig {
            loss_agg_mode: mode,
            ..base()
        });
    }
}

#[test]
fn importance_ratio_and_old_log_probs_are_detached() {
    let dev = Default::default();
    <B as Backend>::seed(&dev, 11);
    let student =
        Tensor::<B, 3>::random([1, 2, 5], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let old = Tensor::<B, 2>::from_data(TensorData::from([[-1.0f64, -2.0]]), &dev).require_grad();
    let rollout = Tensor::<B, 2>::from_data(TensorData::from([[0.5f64, 2.0]]), &dev).require_grad();
    let cfg = SdpoConfig {
        is_clip: Some(2.0),
        ..base()
    };
    let out = self_distillation_loss(
        DistillationBatch {
            student_logits: student.clone(),
            teacher_logits: Tensor::random([1, 2, 5], Distribution::Normal(0.0, 1.0), &dev),
            response_ids: Tensor::<B, 2, Int>::from_data(TensorData::from([[1i64, 4]]), &dev),
            response_mask: Tensor::ones([1, 2], &dev),
            old_log_probs: Some(old.clone()),
            self_distillation_mask: None,
            rollout_is_weights: Some(rollout.clone()),
        },
        &cfg,
    );
    let grads = out.loss.backward();
    assert!(student.grad(&grads).is_some());
    let zero_or_none =
        |g: Option<Tensor<Inner, 2>>| g.map(|g| g.abs().max().into_scalar()).unwrap_or(0.0) == 0.0;
    assert!(
        zero_or_none(old.grad(&grads)),
        "old_log_probs received a gradient"
    );
    // Rollout IS weights are data: whatever Burn tracks, the loss must not
    // depend on them through the graph in a way that changes the student grad.
    let _ = rollout.grad(&grads);
}

#[test]
fn all_masked_batch_is_zero_with_finite_zero_gradient() {
    let dev = Default::default();
    <B as Backend>::seed(&dev, 13);
    for cfg in [
        SdpoConfig::default(),
        SdpoConfig {
            loss_agg_mode: LossAggMode::SeqMeanTokenMean,
            ..SdpoConfig::default()
        },
        SdpoConfig {
            loss_agg_mode: LossAggMode::SeqMeanTokenSum,
            distillation_topk: None,
            ..SdpoConfig::default()
        },
        SdpoConfig {
            full_logit_distillation: false,
            alpha: 1.0,
            ..SdpoConfig::default()
        },
    ] {
        let student = Tensor::<B, 3>::random([2, 3, 200], Distribution::Normal(0.0, 1.0), &dev)
            .require_grad();
        let out = self_distillation_loss(
            DistillationBatch {
                student_logits: student.clone(),
                teacher_logits: Tensor::random([2, 3, 200], Distribution::Normal(0.0, 1.0), &dev),
                response_ids: Tensor::<B, 2, Int>::zeros([2, 3], &dev),
                response_mask: Tensor::ones([2, 3], &dev),
                old_log_probs: Some(Tensor::zeros([2, 3], &dev)),
                // Nothing succeeded: no sample has a teacher signal.
                self_distillation_mask: Some(Tensor::zeros([2], &dev)),
                rollout_is_weights: None,
            },
            &cfg,
        );
        assert_eq!(out.loss.clone().into_scalar(), 0.0, "{cfg:?}");
        let grads = out.loss.backward();
        let g = student.grad(&grads).unwrap();
        assert!(!g.clone().is_nan().any().into_scalar());
        assert_eq!(g.abs().max().into_scalar(), 0.0);
    }
}
