//! [`LossBackend`] for Burn's backends: the CPU kernels on NdArray and Flex,
//! the CubeCL kernels on `CubeBackend` (Wgpu, Cuda; their fusion wrapper is in
//! [`super::fusion`]).

#[allow(unused_imports)]
use super::LossBackend;

/// The two [`LossBackend`] methods of a [`HostBackend`](super::host::HostBackend):
/// the CPU kernels.
#[cfg(any(feature = "ndarray", feature = "flex"))]
macro_rules! host_kernels {
    () => {
        fn fused_distillation(
            student: burn::tensor::ops::FloatTensor<Self>,
            teacher: burn::tensor::ops::FloatTensor<Self>,
            ids: burn::tensor::ops::IntTensor<Self>,
            loss: crate::loss::fused::FusedLoss,
        ) -> Option<crate::loss::fused::FusedForward<Self>> {
            crate::loss::fused::host::forward(student, teacher, ids, loss)
        }

        fn fused_distillation_backward(
            student: burn::tensor::ops::FloatTensor<Self>,
            teacher: burn::tensor::ops::FloatTensor<Self>,
            ids: burn::tensor::ops::IntTensor<Self>,
            saved: crate::loss::fused::FusedSaved<Self>,
            grad: burn::tensor::ops::FloatTensor<Self>,
            loss: crate::loss::fused::FusedLoss,
        ) -> burn::tensor::ops::FloatTensor<Self> {
            crate::loss::fused::host::backward(student, teacher, ids, saved, grad, loss)
        }
    };
}

#[cfg(feature = "ndarray")]
mod ndarray_impl {
    use super::super::{cpu::HostRows, host::HostBackend, LossBackend};
    use burn::backend::ndarray::{
        FloatNdArrayElement, IntNdArrayElement, NdArray, NdArrayTensor, QuantElement, SharedArray,
    };
    use burn::tensor::ops::FloatTensor;
    use ndarray::Axis;

    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> HostBackend for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
        fn with_rows<R>(
            tensor: &FloatTensor<Self>,
            f: impl FnOnce(&HostRows<'_>) -> R,
        ) -> Option<R> {
            let NdArrayTensor::F32(storage) = tensor else {
                return None;
            };
            let view = storage.view();
            let last = view.ndim().checked_sub(1)?;
            let rows = view
                .lanes(Axis(last))
                .into_iter()
                .map(|lane| lane.to_slice())
                .collect::<Option<Vec<_>>>()?;
            Some(f(&HostRows::from_rows(rows, view.shape()[last])?))
        }
    }

    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> LossBackend for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
        host_kernels!();
    }
}

#[cfg(feature = "flex")]
mod flex_impl {
    use super::super::{cpu::HostRows, host::HostBackend, LossBackend};
    use burn::backend::flex::Flex;
    use burn::tensor::{ops::FloatTensor, DType};

    impl HostBackend for Flex {
        fn with_rows<R>(
            tensor: &FloatTensor<Self>,
            f: impl FnOnce(&HostRows<'_>) -> R,
        ) -> Option<R> {
            if tensor.dtype() != DType::F32 {
                return None;
            }
            let layout = tensor.layout();
            let rows = HostRows::strided(
                tensor.storage::<f32>(),
                layout.shape(),
                layout.strides(),
                layout.start_offset(),
            )?;
            Some(f(&rows))
        }
    }

    impl LossBackend for Flex {
        host_kernels!();
    }
}

#[cfg(feature = "cubecl")]
impl<R, F, I, BT> LossBackend for burn_cubecl::CubeBackend<R, F, I, BT>
where
    R: burn_cubecl::CubeRuntime,
    F: burn_cubecl::FloatElement,
    I: burn_cubecl::IntElement,
    BT: burn_cubecl::BoolElement,
    Self: burn::tensor::backend::Backend<
        FloatTensorPrimitive = burn_cubecl::tensor::CubeTensor<R>,
        IntTensorPrimitive = burn_cubecl::tensor::CubeTensor<R>,
    >,
{
    fn fused_distillation(
        student: burn::tensor::ops::FloatTensor<Self>,
        teacher: burn::tensor::ops::FloatTensor<Self>,
        ids: burn::tensor::ops::IntTensor<Self>,
        loss: super::FusedLoss,
    ) -> Option<super::FusedForward<Self>> {
        let [loss, token_log_probs, stats, coefs, indices] =
            super::cube::launch_forward(student, teacher, ids, loss)?;
        Some(super::FusedForward {
            loss,
            token_log_probs,
            saved: super::FusedSaved {
                stats,
                coefs,
                indices,
            },
        })
    }

    fn fused_distillation_backward(
        student: burn::tensor::ops::FloatTensor<Self>,
        teacher: burn::tensor::ops::FloatTensor<Self>,
        ids: burn::tensor::ops::IntTensor<Self>,
        saved: super::FusedSaved<Self>,
        grad: burn::tensor::ops::FloatTensor<Self>,
        loss: super::FusedLoss,
    ) -> burn::tensor::ops::FloatTensor<Self> {
        let saved = [saved.stats, saved.coefs, saved.indices];
        super::cube::launch_backward(student, teacher, ids, saved, grad, loss)
    }

    fn fused_distillation_plan(
        student: &burn::tensor::Shape,
        teacher: &burn::tensor::Shape,
        ids: &burn::tensor::Shape,
        floats: [burn::tensor::DType; 2],
        loss: super::FusedLoss,
    ) -> Option<[burn::tensor::Shape; 5]> {
        super::cube::accepts(student, teacher, ids, floats, loss).map(|p| p.output_shapes())
    }
}
