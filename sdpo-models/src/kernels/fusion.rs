//! [`DecoderBackend`] for Burn's fusion wrapper (`Fusion<B>`, what `Wgpu` and `Cuda` are with
//! the `fusion` feature): the attention kernel is queued on the fusion stream as a custom
//! operation that runs the inner backend's kernel. Fusion is lazy, so whether the kernel
//! applies is decided up front from the tensors' metadata
//! ([`DecoderBackend::fused_attention_accepts`]). Everything else stays composite, and
//! Burn's fusion compiles those elementwise and reduction chains into kernels of its own.

use std::marker::PhantomData;

use burn::tensor::ops::{BoolTensor, FloatTensor};
use burn::tensor::{DType, Shape};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use super::{AttentionLayout, DecoderBackend};

/// The queued attention: four inputs, one output.
#[derive(Debug)]
struct AttentionOp<B> {
    desc: CustomOpIr,
    layout: AttentionLayout,
    _backend: PhantomData<B>,
}

impl<B: FusionBackend + DecoderBackend> Operation<B::FusionRuntime> for AttentionOp<B> {
    fn execute(&self, handles: &mut HandleContainer<B::Handle>) {
        let ([q, keys, values, mask], [out]) = self.desc.as_fixed();
        let result = B::fused_attention(
            handles.get_float_tensor::<B>(q),
            handles.get_float_tensor::<B>(keys),
            handles.get_float_tensor::<B>(values),
            handles.get_bool_tensor::<B>(mask),
            self.layout,
        )
        .expect("fused_attention_accepts accepted these tensors");
        handles.register_float_tensor::<B>(&out.id, result);
    }
}

impl<B: FusionBackend + DecoderBackend> DecoderBackend for Fusion<B> {
    fn fused_attention(
        q: FloatTensor<Self>,
        keys: FloatTensor<Self>,
        values: FloatTensor<Self>,
        key_mask: BoolTensor<Self>,
        layout: AttentionLayout,
    ) -> Option<FloatTensor<Self>> {
        let floats = [q.dtype, keys.dtype, values.dtype];
        if !B::fused_attention_accepts(&q.shape, &keys.shape, &values.shape, floats, layout) {
            return None;
        }
        let client = q.client.clone();
        let streams = OperationStreams::with_inputs([&q, &keys, &values, &key_mask]);
        let out = TensorIr::uninit(client.create_empty_handle(), q.shape.clone(), q.dtype);
        let desc = CustomOpIr::new(
            "sdpo_fused_attention",
            &[
                q.into_ir(),
                keys.into_ir(),
                values.into_ir(),
                key_mask.into_ir(),
            ],
            &[out],
        );
        let op = AttentionOp::<B> {
            desc: desc.clone(),
            layout,
            _backend: PhantomData,
        };
        Some(
            client
                .register(streams, OperationIr::Custom(desc), op)
                .output(),
        )
    }

    fn fused_attention_accepts(
        q: &Shape,
        keys: &Shape,
        values: &Shape,
        floats: [DType; 3],
        layout: AttentionLayout,
    ) -> bool {
        B::fused_attention_accepts(q, keys, values, floats, layout)
    }
}
