//! The glue between a CPU backend's tensors and the row kernels of [`cpu`]:
//! read the logits in place as rows, run the kernels, wrap the results as the
//! backend's tensors.

use burn::tensor::{
    backend::Backend,
    ops::{FloatTensor, IntTensor},
    Int, Tensor, TensorData, TensorMetadata, TensorPrimitive,
};

use super::cpu::{self, HostRows};
use super::{FusedForward, FusedLoss, FusedSaved, STATS};

/// A CPU backend whose `f32` float tensors can be read in place as rows.
pub(crate) trait HostBackend: Backend {
    /// Runs `f` on the rows of `tensor`, or gives `None` when it is not `f32`
    /// or its last dimension is not contiguous.
    fn with_rows<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(&HostRows<'_>) -> R) -> Option<R>;
}

/// [`LossBackend::fused_distillation`](super::LossBackend::fused_distillation)
/// of a CPU backend.
pub(crate) fn forward<B: HostBackend>(
    student: FloatTensor<B>,
    teacher: FloatTensor<B>,
    ids: IntTensor<B>,
    loss: FusedLoss,
) -> Option<FusedForward<B>> {
    let device = B::float_device(&student);
    B::with_rows(&student, |s| {
        B::with_rows(&teacher, |t| run_forward::<B>(s, t, ids, loss, &device))
    })
    .flatten()
    .flatten()
}

/// [`LossBackend::fused_distillation_backward`](super::LossBackend::fused_distillation_backward)
/// of a CPU backend.
pub(crate) fn backward<B: HostBackend>(
    student: FloatTensor<B>,
    teacher: FloatTensor<B>,
    ids: IntTensor<B>,
    saved: FusedSaved<B>,
    grad: FloatTensor<B>,
    loss: FusedLoss,
) -> FloatTensor<B> {
    let shape = student.shape().to_vec();
    let device = B::float_device(&student);
    B::with_rows(&student, |s| {
        B::with_rows(&teacher, |t| {
            run_backward::<B>((s, t), ids, saved, grad, loss, (shape, &device))
        })
    })
    .flatten()
    .expect("the forward read these tensors as rows")
}

/// The forward on rows; `None` when the rows do not fit together.
fn run_forward<B: Backend>(
    student: &HostRows<'_>,
    teacher: &HostRows<'_>,
    ids: IntTensor<B>,
    loss: FusedLoss,
    device: &B::Device,
) -> Option<FusedForward<B>> {
    if student.count() != teacher.count() || student.len() != teacher.len() {
        return None;
    }
    let ids = ints::<B>(ids);
    if ids.len() != student.count() {
        return None;
    }
    let out = cpu::forward(student, teacher, &ids, loss.into());
    let n = out.loss.len();
    let k = out.saved.slots;
    let float = |values: Vec<f32>, shape: Vec<usize>| {
        B::float_from_data(TensorData::new(values, shape), device)
    };
    Some(FusedForward {
        loss: float(out.loss, vec![n]),
        token_log_probs: float(out.token_log_probs, vec![n]),
        saved: FusedSaved {
            stats: float(out.saved.stats, vec![n, STATS]),
            coefs: float(out.saved.coefs, vec![n, k]),
            indices: B::int_from_data(TensorData::new(out.saved.indices, [n, k]), device),
        },
    })
}

/// The backward on rows; the gradient has `shape`.
fn run_backward<B: Backend>(
    (student, teacher): (&HostRows<'_>, &HostRows<'_>),
    ids: IntTensor<B>,
    saved: FusedSaved<B>,
    grad: FloatTensor<B>,
    loss: FusedLoss,
    (shape, device): (Vec<usize>, &B::Device),
) -> FloatTensor<B> {
    let slots = saved.coefs.shape().last().copied().unwrap_or(0);
    let saved = cpu::SavedBatch {
        stats: floats::<B>(saved.stats),
        coefs: floats::<B>(saved.coefs),
        indices: ints::<B>(saved.indices),
        slots,
    };
    let out = cpu::backward(
        student,
        teacher,
        &ints::<B>(ids),
        loss.into(),
        &saved,
        &floats::<B>(grad),
    );
    B::float_from_data(TensorData::new(out, shape), device)
}

/// A float tensor's values, flattened.
fn floats<B: Backend>(x: FloatTensor<B>) -> Vec<f32> {
    let n = x.shape().num_elements();
    Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(B::float_reshape(x, [n].into())))
        .into_data()
        .iter::<f32>()
        .collect()
}

/// An int tensor's values, flattened, as `i64`.
fn ints<B: Backend>(x: IntTensor<B>) -> Vec<i64> {
    let n = x.shape().num_elements();
    Tensor::<B, 1, Int>::from_primitive(B::int_reshape(x, [n].into()))
        .into_data()
        .iter::<i64>()
        .collect()
}
