//! [`LossBackend`] for Burn's fusion wrapper (`Fusion<B>`, what `Wgpu` and
//! `Cuda` are with the `fusion` feature): the fused forward and backward are
//! queued on the fusion stream as custom operations that run the inner
//! backend's kernels. Fusion is lazy, so whether the kernels apply is decided
//! up front from the tensors' metadata
//! ([`LossBackend::fused_distillation_plan`]).

use std::marker::PhantomData;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Shape};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use super::{FusedForward, FusedLoss, FusedSaved, LossBackend};

/// The queued forward: three inputs, five outputs.
#[derive(Debug)]
struct ForwardOp<B> {
    desc: CustomOpIr,
    loss: FusedLoss,
    _backend: PhantomData<B>,
}

impl<B: FusionBackend + LossBackend> Operation<B::FusionRuntime> for ForwardOp<B> {
    fn execute(&self, handles: &mut HandleContainer<B::Handle>) {
        let ([student, teacher, ids], [loss, token_log_probs, stats, coefs, indices]) =
            self.desc.as_fixed();
        let out = B::fused_distillation(
            handles.get_float_tensor::<B>(student),
            handles.get_float_tensor::<B>(teacher),
            handles.get_int_tensor::<B>(ids),
            self.loss,
        )
        .expect("fused_distillation_plan accepted these tensors");
        handles.register_float_tensor::<B>(&loss.id, out.loss);
        handles.register_float_tensor::<B>(&token_log_probs.id, out.token_log_probs);
        handles.register_float_tensor::<B>(&stats.id, out.saved.stats);
        handles.register_float_tensor::<B>(&coefs.id, out.saved.coefs);
        handles.register_int_tensor::<B>(&indices.id, out.saved.indices);
    }
}

/// The queued backward: seven inputs, the student-logit gradient out.
#[derive(Debug)]
struct BackwardOp<B> {
    desc: CustomOpIr,
    loss: FusedLoss,
    _backend: PhantomData<B>,
}

impl<B: FusionBackend + LossBackend> Operation<B::FusionRuntime> for BackwardOp<B> {
    fn execute(&self, handles: &mut HandleContainer<B::Handle>) {
        let ([student, teacher, ids, stats, coefs, indices, grad], [out]) = self.desc.as_fixed();
        let student = handles.get_float_tensor::<B>(student);
        let teacher = handles.get_float_tensor::<B>(teacher);
        let ids = handles.get_int_tensor::<B>(ids);
        let saved = FusedSaved {
            stats: handles.get_float_tensor::<B>(stats),
            coefs: handles.get_float_tensor::<B>(coefs),
            indices: handles.get_int_tensor::<B>(indices),
        };
        let grad = handles.get_float_tensor::<B>(grad);
        let g = B::fused_distillation_backward(student, teacher, ids, saved, grad, self.loss);
        handles.register_float_tensor::<B>(&out.id, g);
    }
}

impl<B: FusionBackend + LossBackend> LossBackend for Fusion<B> {
    fn fused_distillation(
        student: FloatTensor<Self>,
        teacher: FloatTensor<Self>,
        ids: IntTensor<Self>,
        loss: FusedLoss,
    ) -> Option<FusedForward<Self>> {
        let shapes = B::fused_distillation_plan(
            &student.shape,
            &teacher.shape,
            &ids.shape,
            [student.dtype, teacher.dtype],
            loss,
        )?;
        let client = student.client.clone();
        let streams = OperationStreams::with_inputs([&student, &teacher, &ids]);
        let dtypes = [
            student.dtype,
            student.dtype,
            student.dtype,
            student.dtype,
            ids.dtype,
        ];
        let outputs = shapes
            .into_iter()
            .zip(dtypes)
            .map(|(shape, dtype)| TensorIr::uninit(client.create_empty_handle(), shape, dtype))
            .collect::<Vec<_>>();
        let desc = CustomOpIr::new(
            "sdpo_fused_distillation",
            &[student.into_ir(), teacher.into_ir(), ids.into_ir()],
            &outputs,
        );
        let op = ForwardOp::<B> {
            desc: desc.clone(),
            loss,
            _backend: PhantomData,
        };
        let [loss, token_log_probs, stats, coefs, indices] = client
            .register(streams, OperationIr::Custom(desc), op)
            .outputs();
        Some(FusedForward {
            loss,
            token_log_probs,
            saved: FusedSaved {
                stats,
                coefs,
                indices,
            },
        })
    }

    fn fused_distillation_backward(
        student: FloatTensor<Self>,
        teacher: FloatTensor<Self>,
        ids: IntTensor<Self>,
        saved: FusedSaved<Self>,
        grad: FloatTensor<Self>,
        loss: FusedLoss,
    ) -> FloatTensor<Self> {
        let client = student.client.clone();
        let inputs = [
            &student,
            &teacher,
            &ids,
            &saved.stats,
            &saved.coefs,
            &saved.indices,
            &grad,
        ];
        let streams = OperationStreams::with_inputs(inputs);
        let out = TensorIr::uninit(
            client.create_empty_handle(),
            student.shape.clone(),
            student.dtype,
        );
        let inputs = [
            student.into_ir(),
            teacher.into_ir(),
            ids.into_ir(),
            saved.stats.into_ir(),
            saved.coefs.into_ir(),
            saved.indices.into_ir(),
            grad.into_ir(),
        ];
        let desc = CustomOpIr::new("sdpo_fused_distillation_backward", &inputs, &[out]);
        let op = BackwardOp::<B> {
            desc: desc.clone(),
            loss,
            _backend: PhantomData,
        };
        client
            .register(streams, OperationIr::Custom(desc), op)
            .output()
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
