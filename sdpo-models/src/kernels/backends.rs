//! [`DecoderBackend`] for Burn's backends: the CPU kernels on NdArray and Flex, the CubeCL
//! attention kernel on `CubeBackend` (Wgpu, Cuda; their fusion wrapper is in
//! [`super::fusion`]), the composite code under `Autodiff`.

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;

use super::DecoderBackend;

/// Autodiff differentiates the composite code; the inner backend's kernels are for
/// inference (generation, the teacher's forward, scoring), which runs on the inner backend.
impl<B: DecoderBackend, C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy>
    DecoderBackend for Autodiff<B, C>
where
    Autodiff<B, C>: Backend,
{
}

#[cfg(feature = "ndarray")]
mod ndarray_impl {
    use super::super::host::{host_decoder_kernels, Host, HostBackend};
    use super::super::DecoderBackend;
    use burn::backend::ndarray::{
        FloatNdArrayElement, IntNdArrayElement, NdArray, NdArrayTensor, QuantElement, SharedArray,
    };
    use burn::tensor::ops::FloatTensor;

    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> HostBackend for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
        fn with_host<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(Host<'_>) -> R) -> Option<R> {
            let NdArrayTensor::F32(storage) = tensor else {
                return None;
            };
            let view = storage.view();
            let strides = view
                .strides()
                .iter()
                .map(|&s| usize::try_from(s).ok())
                .collect::<Option<Vec<_>>>()?;
            // Contiguous in some order, so the slice starts at the first element (strides
            // are non-negative).
            let data = view.as_slice_memory_order()?;
            Some(f(Host {
                data,
                shape: view.shape().to_vec(),
                strides,
            }))
        }
    }

    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> DecoderBackend
        for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
        host_decoder_kernels!();
    }
}

#[cfg(feature = "flex")]
mod flex_impl {
    use super::super::host::{host_decoder_kernels, Host, HostBackend};
    use super::super::DecoderBackend;
    use burn::backend::flex::Flex;
    use burn::tensor::{ops::FloatTensor, DType, TensorMetadata};

    impl HostBackend for Flex {
        fn with_host<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(Host<'_>) -> R) -> Option<R> {
            if tensor.dtype() != DType::F32 {
                return None;
            }
            let layout = tensor.layout();
            let strides = layout
                .strides()
                .iter()
                .map(|&s| usize::try_from(s).ok())
                .collect::<Option<Vec<_>>>()?;
            let data = tensor.storage::<f32>().get(layout.start_offset()..)?;
            Some(f(Host {
                data,
                shape: layout.shape().to_vec(),
                strides,
            }))
        }
    }

    impl DecoderBackend for Flex {
        host_decoder_kernels!();

        /// Flex's `slice_assign` copies the whole destination (it takes a second reference
        /// to the buffer before asking for it mutably), which would make every cache append
        /// a copy of the cache; this writes in place when the buffer is not shared.
        fn fused_write_positions(
            mut buffer: FloatTensor<Self>,
            start: usize,
            values: FloatTensor<Self>,
        ) -> Result<FloatTensor<Self>, (FloatTensor<Self>, FloatTensor<Self>)> {
            let [batch, capacity, heads, dim] = buffer.shape().dims::<4>();
            let [vb, new, vh, vd] = values.shape().dims::<4>();
            let whole =
                buffer.layout().contiguous_offsets() == Some((0, batch * capacity * heads * dim));
            if buffer.dtype() != DType::F32
                || !whole
                || [vb, vh, vd] != [batch, heads, dim]
                || start + new > capacity
            {
                return Err((buffer, values));
            }
            let written = Self::with_host(&values, |v| {
                let src = v.contiguous()?;
                let dst = buffer.try_storage_mut::<f32>()?;
                super::super::host::write_positions(
                    dst,
                    src,
                    [batch, capacity, heads * dim],
                    start,
                );
                Some(())
            });
            match written.flatten() {
                Some(()) => Ok(buffer),
                None => Err((buffer, values)),
            }
        }
    }
}

#[cfg(feature = "cubecl")]
impl<R, F, I, BT> DecoderBackend for burn_cubecl::CubeBackend<R, F, I, BT>
where
    R: burn_cubecl::CubeRuntime,
    F: burn_cubecl::FloatElement,
    I: burn_cubecl::IntElement,
    BT: burn_cubecl::BoolElement,
    Self: burn::tensor::backend::Backend<
        FloatTensorPrimitive = burn_cubecl::tensor::CubeTensor<R>,
        IntTensorPrimitive = burn_cubecl::tensor::CubeTensor<R>,
        BoolTensorPrimitive = burn_cubecl::tensor::CubeTensor<R>,
    >,
{
    fn fused_attention(
        q: burn::tensor::ops::FloatTensor<Self>,
        keys: burn::tensor::ops::FloatTensor<Self>,
        values: burn::tensor::ops::FloatTensor<Self>,
        key_mask: burn::tensor::ops::BoolTensor<Self>,
        layout: super::AttentionLayout,
    ) -> Option<burn::tensor::ops::FloatTensor<Self>> {
        use burn::tensor::{ops::BoolTensorOps, IntDType, TensorMetadata};
        let floats = [q.dtype(), keys.dtype(), values.dtype()];
        if !super::cube::accepts(&q.shape(), &keys.shape(), &values.shape(), floats, layout) {
            return None;
        }
        let mask = <Self as BoolTensorOps<Self>>::bool_into_int(key_mask, IntDType::I32);
        super::cube::launch::<R>(q, keys, values, mask, layout)
    }

    fn fused_attention_accepts(
        q: &burn::tensor::Shape,
        keys: &burn::tensor::Shape,
        values: &burn::tensor::Shape,
        floats: [burn::tensor::DType; 3],
        layout: super::AttentionLayout,
    ) -> bool {
        super::cube::accepts(q, keys, values, floats, layout)
    }
}
