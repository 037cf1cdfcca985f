//! Fused self-distillation loss kernels: a Burn backend extension.
//!
//! The composite loss ([`crate::loss::self_distillation_loss`] with
//! [`SdpoConfig::fused_loss`](crate::config::SdpoConfig::fused_loss) off)
//! makes several full passes over each `[batch, len, vocab]` tensor and, under
//! autodiff, keeps vocabulary-sized temporaries alive until the backward. A
//! backend that implements [`LossBackend`] with kernels computes, per row:
//!
//! - forward: the row maxima and log-sum-exps, the student's top-k by
//!   selection, the tail mass *from the entries outside the top-k* (not as
//!   `1 − Σ top-k`, which is rounding noise when the top-k holds nearly all
//!   the mass), the divergence over the support and its derivative, and the
//!   sampled token's log-probability — outputs `[n]`, saved state `[n, k]`
//!   and `[n, STATS]` ([`FusedSaved`]);
//! - backward: the student-logit gradient in one pass from the saved state.
//!
//! Implemented here: the CPU backends NdArray and Flex (feature `ndarray` /
//! `flex`; `f32` tensors, rows in parallel with rayon, SIMD `exp` through
//! pulp's run-time dispatch: [`cpu`]) and [`Autodiff`](burn::backend::Autodiff)
//! over any backend that has them; the CubeCL backends (feature `cubecl`: one
//! cube per row, shared-memory reductions) and Burn's fusion
//! wrapper over them (feature `fusion`: custom operations on the fusion
//! stream), which together are Burn's Wgpu and Cuda. Every other backend (and
//! other dtypes) runs the composite code, which stays the reference the
//! kernels are tested against.

pub mod cpu;
pub mod passes;
pub mod row;
pub mod select;
pub mod vmath;

mod autodiff;
mod backends;
#[cfg(feature = "cubecl")]
mod cube;
#[cfg(feature = "fusion")]
mod fusion;
mod host;

use burn::tensor::{
    backend::Backend,
    ops::{FloatTensor, IntTensor},
    DType, Int, Shape, Tensor,
};

use crate::config::{DistillationSupport, Divergence};

pub use row::STATS;

/// What the fused loss computes: the support and the divergence (both from
/// [`SdpoConfig`](crate::config::SdpoConfig)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedLoss {
    /// The entries the divergence sums over.
    pub support: DistillationSupport,
    /// The divergence.
    pub divergence: Divergence,
}

impl From<FusedLoss> for row::Kind {
    fn from(f: FusedLoss) -> Self {
        row::Kind {
            support: f.support,
            div: f.divergence.into(),
        }
    }
}

/// Outputs of the fused forward.
#[derive(Debug)]
pub struct FusedForward<B: Backend> {
    /// Per-row divergence (the sampled-token loss for that support), before
    /// any weight, `[n]`. Differentiable in the student logits under autodiff.
    pub loss: FloatTensor<B>,
    /// Student log-probability of each row's token, `[n]`, not differentiable.
    pub token_log_probs: FloatTensor<B>,
    /// What the backward needs.
    pub saved: FusedSaved<B>,
}

/// The state kept from the fused forward for its backward: per-row scalars
/// and, for top-k supports, `k` indices and coefficients per row. Nothing
/// vocabulary-sized.
#[derive(Debug)]
pub struct FusedSaved<B: Backend> {
    /// `[n, STATS]`: student max and log-sum, teacher max and log-sum, and two
    /// row coefficients (see [`row`]).
    pub stats: FloatTensor<B>,
    /// `[n, k]` coefficients of the selected entries (`k = 0` without top-k).
    pub coefs: FloatTensor<B>,
    /// `[n, k]` selected vocabulary indices.
    pub indices: IntTensor<B>,
}

impl<B: Backend> Clone for FusedSaved<B> {
    fn clone(&self) -> Self {
        Self {
            stats: self.stats.clone(),
            coefs: self.coefs.clone(),
            indices: self.indices.clone(),
        }
    }
}

/// A Burn backend as the loss needs it: with fused loss kernels where it has
/// them. The default methods say "no kernel", and the loss runs its composite
/// tensor code; a backend with kernels overrides both.
///
/// Implemented with kernels for NdArray and Flex (features `ndarray`/`flex`),
/// the CubeCL backends and their fusion wrapper (Wgpu, Cuda; features
/// `cubecl`, `fusion`), and `Autodiff<B>` over any implementor. A backend of your own
/// implements it with an empty `impl` to use the composite path.
pub trait LossBackend: Backend {
    /// The fused forward over rows: `student` and `teacher` are `[.., V]` with
    /// the same shape, `ids` is `[n]` with `n` the product of the leading
    /// dimensions. `None` when this backend has no kernel for these tensors
    /// (dtype, layout); the caller then runs the composite code.
    fn fused_distillation(
        student: FloatTensor<Self>,
        teacher: FloatTensor<Self>,
        ids: IntTensor<Self>,
        loss: FusedLoss,
    ) -> Option<FusedForward<Self>> {
        let _ = (student, teacher, ids, loss);
        None
    }

    /// The output shapes of [`Self::fused_distillation`] for tensors with this
    /// metadata (the `student`, `teacher` and `ids` shapes and the two float
    /// dtypes), or `None` where it has no kernel for them. A lazy wrapper
    /// (Burn's fusion) asks this before the kernel runs, so an implementor
    /// answers exactly as its forward will. `None` by default.
    fn fused_distillation_plan(
        student: &Shape,
        teacher: &Shape,
        ids: &Shape,
        floats: [DType; 2],
        loss: FusedLoss,
    ) -> Option<[Shape; 5]> {
        let _ = (student, teacher, ids, floats, loss);
        None
    }

    /// The gradient of `Σ_i grad_i · loss_i` with respect to `student`
    /// (same shape as `student`), from the state [`Self::fused_distillation`]
    /// saved. Only called after that returned `Some`.
    fn fused_distillation_backward(
        student: FloatTensor<Self>,
        teacher: FloatTensor<Self>,
        ids: IntTensor<Self>,
        saved: FusedSaved<Self>,
        grad: FloatTensor<Self>,
        loss: FusedLoss,
    ) -> FloatTensor<Self> {
        let _ = (student, teacher, ids, saved, grad, loss);
        unreachable!("fused_distillation_backward without a fused_distillation kernel")
    }
}

/// Whether `B` runs the fused loss kernels for `f32` tensors on `device`
/// (a one-row probe).
pub fn fused_available<B: LossBackend>(device: &B::Device) -> bool {
    let logits = Tensor::<B, 2>::zeros([1, 2], device);
    B::fused_distillation(
        logits.clone().into_primitive().tensor(),
        logits.into_primitive().tensor(),
        Tensor::<B, 1, Int>::zeros([1], device).into_primitive(),
        FusedLoss {
            support: DistillationSupport::SampledToken,
            divergence: Divergence::ReverseKl,
        },
    )
    .is_some()
}
