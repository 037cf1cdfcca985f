//! Autodiff gradients of the self-distillation loss against central finite
//! differences, and detachment of everything but the student.
//!
//! Finite differences check the full-logit supports with `is_clip` off, where
//! the loss is a plain function of the student logits. With `is_clip` on or in
//! sampled-token mode the reference detaches part of the expression, so its
//! gradient is not the derivative of the loss value; those gradients are
//! checked against PyTorch autograd in `loss.rs`.
//!
//! The differences are taken in float32 on the backend under test (one test binary cannot mix
//! float widths: Burn 0.21 keeps the default float dtype per device).

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Int, Tensor, TensorData};
use sdpo::core::loss::{self_distillation_loss, DistillationBatch, LossBackend};
use sdpo::core::{LossAggMode, SdpoConfig};

use crate::common::{host_f64, serial};
use crate::Target;

const BATCH: usize = 2;
const LEN: usize = 3;
const VOCAB: usize = 7;

/// Central-difference step in float32.
const STEP: f64 = 1e-2;

/// Rounding eps*|loss|/h ~ 1e-7/1e-2 = 1e-5 and truncation h^2*|f'''|/6 ~ 1e-5 on these O(1)
/// logits; 5e-4 is 25 times that and still two orders below a wrong gradient term (O(0.1) per
/// entry here). The float32 gradients' own precision is checked against PyTorch's float64
/// autograd to 1e-5 in `loss.rs`.
const TOLERANCE: f64 = 5e-4;

fn scalar<I: Backend>(t: Tensor<I, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

fn response_ids<I: Backend>(dev: &I::Device) -> Tensor<I, 2, Int> {
    Tensor::from_data(TensorData::from([[0i64, 3, 6], [2, 2, 5]]), dev)
}

fn loss_value<I: LossBackend>(
    student: Tensor<I, 3>,
    teacher: Tensor<I, 3>,
    mask: Tensor<I, 2>,
    cfg: &SdpoConfig,
) -> f64 {
    let dev = student.device();
    scalar(
        self_distillation_loss(
            DistillationBatch {
                student_logits: student,
                teacher_logits: teacher,
                response_ids: response_ids(&dev),
                response_mask: mask,
                old_log_probs: None,
                self_distillation_mask: Some(Tensor::ones([BATCH], &dev)),
                rollout_is_weights: None,
            },
            cfg,
        )
        .loss,
    )
}

fn check<I: LossBackend>(cfg: SdpoConfig) {
    let _serial = serial();
    let dev = Default::default();
    I::seed(&dev, 7);
    let student = Tensor::<I, 3>::random([BATCH, LEN, VOCAB], Distribution::Normal(0.0, 2.0), &dev);
    let teacher = Tensor::<I, 3>::random([BATCH, LEN, VOCAB], Distribution::Normal(0.0, 2.0), &dev);
    let mask = Tensor::<I, 2>::from_data(
        TensorData::from([[1.0f32, 1.0, 0.0], [1.0, 1.0, 1.0]]),
        &dev,
    );

    let s = Tensor::<Autodiff<I>, 3>::from_inner(student.clone()).require_grad();
    let t = Tensor::<Autodiff<I>, 3>::from_inner(teacher.clone()).require_grad();
    let out = self_distillation_loss(
        DistillationBatch {
            student_logits: s.clone(),
            teacher_logits: t.clone(),
            response_ids: response_ids(&dev),
            response_mask: Tensor::from_inner(mask.clone()),
            old_log_probs: None,
            self_distillation_mask: Some(Tensor::ones([BATCH], &dev)),
            rollout_is_weights: None,
        },
        &cfg,
    );
    let grads = out.loss.backward();
    let analytic = host_f64(s.grad(&grads).unwrap());
    // The teacher is detached: no gradient reaches it.
    let teacher_grad = t.grad(&grads).map(|g| scalar(g.abs().max())).unwrap_or(0.0);
    assert_eq!(teacher_grad, 0.0, "teacher received a gradient ({cfg:?})");

    let base = host_f64(student);
    let h = STEP;
    for (i, a) in analytic.iter().enumerate() {
        let shifted = |delta: f64| {
            let mut v = base.clone();
            v[i] += delta;
            Tensor::<I, 3>::from_data(TensorData::new(v, [BATCH, LEN, VOCAB]), &dev)
        };
        if i == 0 {
            eprintln!(
                "DBG {} {} {}",
                h,
                loss_value(shifted(h), teacher.clone(), mask.clone(), &cfg),
                loss_value(shifted(-h), teacher.clone(), mask.clone(), &cfg)
            );
            eprintln!("{:?}", &base[..4]);
        }
        let fd = (loss_value(shifted(h), teacher.clone(), mask.clone(), &cfg)
            - loss_value(shifted(-h), teacher.clone(), mask.clone(), &cfg))
            / (2.0 * h);
        assert!(
            (a - fd).abs() < TOLERANCE,
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

/// Full-logit supports × α against finite differences.
/// Both the fused kernels (where the backend has them) and the composite code.
pub fn gradients_match_finite_differences_for_every_support_and_alpha<T: Target>() {
    for fused_loss in [true, false] {
        for alpha in [0.0, 0.35, 1.0] {
            let base = SdpoConfig {
                alpha,
                fused_loss,
                ..base()
            };
            check::<T>(base.clone());
            check::<T>(SdpoConfig {
                distillation_add_tail: false,
                ..base.clone()
            });
            check::<T>(SdpoConfig {
                distillation_topk: None,
                ..base
            });
        }
    }
}

/// Every aggregation mode against finite differences.
pub fn gradients_match_finite_differences_for_every_aggregation<T: Target>() {
    for mode in [
        LossAggMode::TokenMean,
        LossAggMode::SeqMeanTokenSum,
        LossAggMode::SeqMeanTokenMean,
        LossAggMode::SeqMeanTokenSumNorm,
    ] {
        check::<T>(SdpoConfig {
            loss_agg_mode: mode,
            ..base()
        });
    }
}

/// No gradient reaches `old_log_probs`; the student gets one.
pub fn importance_ratio_and_old_log_probs_are_detached<T: Target>() {
    type B<T> = Autodiff<T>;
    let _serial = serial();
    let dev = Default::default();
    T::seed(&dev, 11);
    let student =
        Tensor::<B<T>, 3>::random([1, 2, 5], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let old =
        Tensor::<B<T>, 2>::from_data(TensorData::from([[-1.0f32, -2.0]]), &dev).require_grad();
    let rollout =
        Tensor::<B<T>, 2>::from_data(TensorData::from([[0.5f32, 2.0]]), &dev).require_grad();
    let cfg = SdpoConfig {
        is_clip: Some(2.0),
        ..base()
    };
    let out = self_distillation_loss(
        DistillationBatch {
            student_logits: student.clone(),
            teacher_logits: Tensor::random([1, 2, 5], Distribution::Normal(0.0, 1.0), &dev),
            response_ids: Tensor::<B<T>, 2, Int>::from_data(TensorData::from([[1i64, 4]]), &dev),
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
        |g: Option<Tensor<T, 2>>| g.map(|g| scalar(g.abs().max())).unwrap_or(0.0) == 0.0;
    assert!(
        zero_or_none(old.grad(&grads)),
        "old_log_probs received a gradient"
    );
    // Rollout IS weights are data: whatever Burn tracks, the loss must not
    // depend on them through the graph in a way that changes the student grad.
    let _ = rollout.grad(&grads);
}

/// Nothing to distil: the loss is exactly 0 and the gradient exactly 0, never NaN.
pub fn all_masked_batch_is_zero_with_finite_zero_gradient<T: Target>() {
    type B<T> = Autodiff<T>;
    let _serial = serial();
    let dev = Default::default();
    T::seed(&dev, 13);
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
        let student = Tensor::<B<T>, 3>::random([2, 3, 200], Distribution::Normal(0.0, 1.0), &dev)
            .require_grad();
        let out = self_distillation_loss(
            DistillationBatch {
                student_logits: student.clone(),
                teacher_logits: Tensor::random([2, 3, 200], Distribution::Normal(0.0, 1.0), &dev),
                response_ids: Tensor::<B<T>, 2, Int>::zeros([2, 3], &dev),
                response_mask: Tensor::ones([2, 3], &dev),
                old_log_probs: Some(Tensor::zeros([2, 3], &dev)),
                // Nothing succeeded: no sample has a teacher signal.
                self_distillation_mask: Some(Tensor::zeros([2], &dev)),
                rollout_is_weights: None,
            },
            &cfg,
        );
        assert_eq!(scalar(out.loss.clone()), 0.0, "{cfg:?}");
        let grads = out.loss.backward();
        let g = student.grad(&grads).unwrap();
        assert!(host_f64(g.clone()).iter().all(|x| x.is_finite()));
        assert_eq!(scalar(g.abs().max()), 0.0);
    }
}
