//! [`LossBackend`] for Burn's backends: the CPU kernels on NdArray and Flex,
//! the composite fallback elsewhere.

#[cfg(any(feature = "ndarray", feature = "flex"))]
use burn::tensor::{
    ops::{FloatTensor, FloatTensorOps, IntTensor},
    TensorMetadata,
};

#[allow(unused_imports)]
use super::{cpu::HostRows, LossBackend};
#[cfg(any(feature = "ndarray", feature = "flex"))]
use super::{host_backward, host_forward, FusedForward, FusedLoss, FusedSaved};

#[cfg(feature = "ndarray")]
mod ndarray_impl {
    use super::*;
    use burn::backend::ndarray::{
        FloatNdArrayElement, IntNdArrayElement, NdArray, NdArrayTensor, QuantElement, SharedArray,
    };
    use ndarray::{ArrayView, Axis, IxDyn};

    /// The rows of an `f32` view, in place (`None` when a row is strided).
    fn rows<'a>(view: &'a ArrayView<'_, f32, IxDyn>) -> Option<HostRows<'a>> {
        let last = view.ndim().checked_sub(1)?;
        let len = view.shape()[last];
        let rows = view
            .lanes(Axis(last))
            .into_iter()
            .map(|lane| lane.to_slice())
            .collect::<Option<Vec<_>>>()?;
        HostRows::from_rows(rows, len)
    }

    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> LossBackend for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
        fn fused_distillation(
            student: FloatTensor<Self>,
            teacher: FloatTensor<Self>,
            ids: IntTensor<Self>,
            loss: FusedLoss,
        ) -> Option<FusedForward<Self>> {
            let (NdArrayTensor::F32(s), NdArrayTensor::F32(t)) = (&student, &teacher) else {
                return None;
            };
            let (sv, tv) = (s.view(), t.view());
            let device = Self::float_device(&student);
            host_forward::<Self>(&rows(&sv)?, &rows(&tv)?, ids, loss, &device)
        }

        fn fused_distillation_backward(
            student: FloatTensor<Self>,
            teacher: FloatTensor<Self>,
            ids: IntTensor<Self>,
            saved: FusedSaved<Self>,
            grad: FloatTensor<Self>,
            loss: FusedLoss,
        ) -> FloatTensor<Self> {
            let shape = student.shape().to_vec();
            let device = Self::float_device(&student);
            match (&student, &teacher) {
                (NdArrayTensor::F32(s), NdArrayTensor::F32(t)) => {
                    let (sv, tv) = (s.view(), t.view());
                    match (rows(&sv), rows(&tv)) {
                        (Some(s), Some(t)) => host_backward::<Self>(
                            (&s, &t),
                            ids,
                            saved,
                            grad,
                            loss,
                            (shape, &device),
                        ),
                        _ => unreachable!("the forward read these rows in place"),
                    }
                }
                _ => unreachable!("the forward ran on f32 tensors"),
            }
        }
    }
}

#[cfg(feature = "flex")]
mod flex_impl {
    use super::*;
    use burn::backend::flex::{Flex, FlexTensor};
    use burn::tensor::DType;

    /// The rows of an `f32` tensor, in place.
    fn rows(t: &FlexTensor) -> Option<HostRows<'_>> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let layout = t.layout();
        HostRows::strided(
            t.storage::<f32>(),
            layout.shape(),
            layout.strides(),
            layout.start_offset(),
        )
    }

    impl LossBackend for Flex {
        fn fused_distillation(
            student: FloatTensor<Self>,
            teacher: FloatTensor<Self>,
            ids: IntTensor<Self>,
            loss: FusedLoss,
        ) -> Option<FusedForward<Self>> {
            let device = Self::float_device(&student);
            host_forward::<Self>(&rows(&student)?, &rows(&teacher)?, ids, loss, &device)
        }

        fn fused_distillation_backward(
            student: FloatTensor<Self>,
            teacher: FloatTensor<Self>,
            ids: IntTensor<Self>,
            saved: FusedSaved<Self>,
            grad: FloatTensor<Self>,
            loss: FusedLoss,
        ) -> FloatTensor<Self> {
            let shape = student.shape().to_vec();
            let device = Self::float_device(&student);
            match (rows(&student), rows(&teacher)) {
                (Some(s), Some(t)) => {
                    host_backward::<Self>((&s, &t), ids, saved, grad, loss, (shape, &device))
                }
                _ => unreachable!("the forward read these rows in place"),
            }
        }
    }
}

#[cfg(feature = "cubecl")]
impl<R, F, I, BT> LossBackend for burn_cubecl::CubeBackend<R, F, I, BT>
where
    R: burn_cubecl::CubeRuntime,
    F: burn_cubecl::FloatElement,
    I: burn_cubecl::IntElement,
    BT: burn_cubecl::BoolElement,
    Self: burn::tensor::backend::Backend,
{
}

#[cfg(feature = "fusion")]
impl<B: burn_fusion::FusionBackend> LossBackend for burn_fusion::Fusion<B> {}
