//! [`LossBackend`] for `Autodiff<B>`: the inner backend's fused forward,
//! recorded as one graph node whose backward is the inner backend's fused
//! backward. Only the student logits receive a gradient; the state kept until
//! the backward is the inner forward's [`FusedSaved`] (per-row scalars and
//! `k` entries per row) plus handles to the input tensors.

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn::tensor::{
    backend::{AutodiffBackend, Backend},
    ops::{FloatTensor, IntTensor},
    DType, Shape,
};

use super::{FusedForward, FusedLoss, FusedSaved, LossBackend};

/// What the backward of the fused loss needs.
struct State<B: Backend> {
    student: FloatTensor<B>,
    teacher: FloatTensor<B>,
    ids: IntTensor<B>,
    saved: FusedSaved<B>,
    loss: FusedLoss,
}

impl<B: Backend> Clone for State<B> {
    fn clone(&self) -> Self {
        Self {
            student: self.student.clone(),
            teacher: self.teacher.clone(),
            ids: self.ids.clone(),
            saved: self.saved.clone(),
            loss: self.loss,
        }
    }
}

impl<B: Backend> std::fmt::Debug for State<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedDistillationState")
            .field("loss", &self.loss)
            .finish_non_exhaustive()
    }
}

/// The graph node of the fused loss.
#[derive(Debug)]
struct FusedDistillation;

impl<B: LossBackend> Backward<B, 1> for FusedDistillation {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [student_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = student_node {
            let s = ops.state;
            let student_grad =
                B::fused_distillation_backward(s.student, s.teacher, s.ids, s.saved, grad, s.loss);
            grads.register::<B>(node.id, student_grad);
        }
    }
}

impl<B: LossBackend, C: CheckpointStrategy> LossBackend for Autodiff<B, C> {
    fn fused_distillation(
        student: FloatTensor<Self>,
        teacher: FloatTensor<Self>,
        ids: IntTensor<Self>,
        loss: FusedLoss,
    ) -> Option<FusedForward<Self>> {
        let inner = B::fused_distillation(
            student.primitive.clone(),
            teacher.primitive.clone(),
            ids.clone(),
            loss,
        )?;
        let constant = <Self as AutodiffBackend>::from_inner;
        let saved = FusedSaved {
            stats: constant(inner.saved.stats.clone()),
            coefs: constant(inner.saved.coefs.clone()),
            indices: inner.saved.indices.clone(),
        };
        let token_log_probs = constant(inner.token_log_probs);
        let out = match FusedDistillation
            .prepare::<C>([student.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                State {
                    student: student.primitive,
                    teacher: teacher.primitive,
                    ids,
                    saved: inner.saved,
                    loss,
                },
                inner.loss,
            ),
            OpsKind::UnTracked(prep) => prep.finish(inner.loss),
        };
        Some(FusedForward {
            loss: out,
            token_log_probs,
            saved,
        })
    }

    /// The inner backend's gradient, as a constant of this graph (the fused
    /// loss has no second derivative here).
    fn fused_distillation_backward(
        student: FloatTensor<Self>,
        teacher: FloatTensor<Self>,
        ids: IntTensor<Self>,
        saved: FusedSaved<Self>,
        grad: FloatTensor<Self>,
        loss: FusedLoss,
    ) -> FloatTensor<Self> {
        let inner = FusedSaved {
            stats: saved.stats.primitive,
            coefs: saved.coefs.primitive,
            indices: saved.indices,
        };
        <Self as AutodiffBackend>::from_inner(B::fused_distillation_backward(
            student.primitive,
            teacher.primitive,
            ids,
            inner,
            grad.primitive,
            loss,
        ))
    }

    fn fused_distillation_plan(
        student: &Shape,
        teacher: &Shape,
        ids: &Shape,
        floats: [DType; 2],
        loss: FusedLoss,
    ) -> Option<[Shape; 5]> {
        B::fused_distillation_plan(student, teacher, ids, floats, loss)
    }
}
