//! [`LossBackend`](super::LossBackend) for Burn's CubeCL backends (Wgpu, Cuda,
//! …): the fused loss as one forward and one backward kernel launch
//! ([`kernels`]), on `f32` logits.

mod kernels;

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
    CubeRuntime,
};

use cubecl::prelude::*;

use super::row::{min_log_tail, Kind};
use super::vmath::Div;
use super::{FusedLoss, STATS};
use crate::config::DistillationSupport;
use kernels::{ConstsLaunch, RowShapeLaunch};

/// Threads per cube (one cube per row), capped by the device.
const THREADS: u32 = 256;

/// What one launch needs besides the tensors.
pub(crate) struct Plan {
    rows: usize,
    vocab: usize,
    k: usize,
    /// Row stride of the saved coefficients and indices (`k`, at least 1).
    width: usize,
    support: u32,
    div: u32,
    consts: [f32; 5],
}

impl Plan {
    fn new(shape: &[usize], loss: FusedLoss) -> Option<Self> {
        let (&vocab, lead) = shape.split_last()?;
        let rows: usize = lead.iter().product();
        let kind = Kind::from(loss);
        let support = match kind.support {
            DistillationSupport::TopKTail(_) => kernels::TOPK_TAIL,
            DistillationSupport::TopKRenormalized(_) => kernels::TOPK_RENORMALIZED,
            DistillationSupport::FullVocabulary => kernels::FULL_VOCABULARY,
            DistillationSupport::SampledToken => kernels::SAMPLED_TOKEN,
        };
        // The JSD constants are only read by the JSD kernels.
        let (div, [w_s, w_t, ln_w_s, ln_w_t]) = match kind.div {
            Div::Forward => (kernels::FORWARD_KL, [0.0; 4]),
            Div::Reverse => (kernels::REVERSE_KL, [0.0; 4]),
            Div::Jsd {
                w_s,
                w_t,
                ln_w_s,
                ln_w_t,
            } => (kernels::JSD, [w_s, w_t, ln_w_s, ln_w_t]),
        };
        let fits = |x: usize| u32::try_from(x).is_ok();
        let fine = rows > 0 && vocab > 0 && fits(rows) && fits(vocab) && fits(rows * vocab);
        let k = kind.slots(vocab);
        fine.then_some(Self {
            rows,
            vocab,
            k,
            width: k.max(1),
            support,
            div,
            consts: [w_s, w_t, ln_w_s, ln_w_t, min_log_tail() as f32],
        })
    }

    /// The shapes of the forward's outputs: loss, token log-probabilities,
    /// stats, coefficients, indices.
    pub(crate) fn output_shapes(&self) -> [Shape; 5] {
        let (n, w) = (self.rows, self.width);
        [
            Shape::from(vec![n]),
            Shape::from(vec![n]),
            Shape::from(vec![n, STATS]),
            Shape::from(vec![n, w]),
            Shape::from(vec![n, w]),
        ]
    }

    fn shape<R: Runtime>(&self) -> RowShapeLaunch<R> {
        RowShapeLaunch::new(
            self.rows as u32,
            self.vocab as u32,
            self.k as u32,
            self.width as u32,
        )
    }

    fn consts<R: Runtime>(&self) -> ConstsLaunch<R> {
        let [w_s, w_t, ln_w_s, ln_w_t, floor] = self.consts;
        ConstsLaunch::new(w_s, w_t, ln_w_s, ln_w_t, floor)
    }

    /// One cube per row, rows spread over two grid axes past 65 535.
    fn grid<R: CubeRuntime>(&self, client: &ComputeClient<R>) -> (CubeCount, CubeDim, u32) {
        let hw = client.properties().hardware.max_cube_dim.0;
        let threads = THREADS.min(hw.max(1));
        let threads = 1 << (31 - threads.leading_zeros());
        let rows = self.rows as u32;
        let x = rows.min(65_535);
        (
            CubeCount::Static(x, rows.div_ceil(x), 1),
            CubeDim::new_1d(threads),
            threads,
        )
    }
}

/// The plan of a forward over tensors with these shapes and float dtypes, or
/// `None` where the kernels do not apply (non-`f32` logits, shapes that do
/// not fit together or in `u32`). Decided from metadata alone, so a lazy
/// wrapper (fusion) can ask before the kernel runs.
pub(crate) fn accepts(
    student: &Shape,
    teacher: &Shape,
    ids: &Shape,
    floats: [DType; 2],
    loss: FusedLoss,
) -> Option<Plan> {
    let plan = Plan::new(student, loss)?;
    let fine = floats == [DType::F32; 2] && teacher == student && ids.num_elements() == plan.rows;
    fine.then_some(plan)
}

/// Checks the inputs and launches the forward (`None` for non-`f32` logits
/// or shapes that do not fit: the composite code runs then); outputs are `[n]`, `[n]`, `[n, STATS]`,
/// `[n, width]`, `[n, width]`.
pub(crate) fn launch_forward<R: CubeRuntime>(
    student: CubeTensor<R>,
    teacher: CubeTensor<R>,
    ids: CubeTensor<R>,
    loss: FusedLoss,
) -> Option<[CubeTensor<R>; 5]> {
    let plan = accepts(
        &student.shape(),
        &teacher.shape(),
        &ids.shape(),
        [student.dtype, teacher.dtype],
        loss,
    )?;
    let (student, teacher, ids) = (
        into_contiguous(student),
        into_contiguous(teacher),
        into_contiguous(ids),
    );
    let client = student.client.clone();
    let device = student.device.clone();
    let [loss_shape, lp_shape, stats_shape, coefs_shape, indices_shape] = plan.output_shapes();
    let empty = |shape: Shape, dtype: DType| {
        empty_device_contiguous_dtype::<R>(client.clone(), device.clone(), shape, dtype)
    };
    let out = [
        empty(loss_shape, DType::F32),
        empty(lp_shape, DType::F32),
        empty(stats_shape, DType::F32),
        empty(coefs_shape, DType::F32),
        empty(indices_shape, ids.dtype),
    ];
    let (count, dim, threads) = plan.grid(&client);
    let int: StorageType = ids.dtype.into();
    kernels::forward_kernel::launch::<R>(
        &client,
        count,
        dim,
        student.into_tensor_arg(),
        teacher.into_tensor_arg(),
        ids.into_tensor_arg(),
        out[0].clone().into_tensor_arg(),
        out[1].clone().into_tensor_arg(),
        out[2].clone().into_tensor_arg(),
        out[3].clone().into_tensor_arg(),
        out[4].clone().into_tensor_arg(),
        plan.shape(),
        plan.consts(),
        plan.support,
        plan.div,
        threads,
        int,
    );
    Some(out)
}

/// Launches the backward: the gradient of `Σ grad_i · loss_i` in the student
/// logits, shaped as `student`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_backward<R: CubeRuntime>(
    student: CubeTensor<R>,
    teacher: CubeTensor<R>,
    ids: CubeTensor<R>,
    [stats, coefs, indices]: [CubeTensor<R>; 3],
    grad: CubeTensor<R>,
    loss: FusedLoss,
) -> CubeTensor<R> {
    let shape = student.shape();
    let plan = Plan::new(&shape, loss).expect("the forward accepted this shape");
    let [student, teacher, ids, stats, coefs, indices, grad] =
        [student, teacher, ids, stats, coefs, indices, grad].map(into_contiguous);
    let client = student.client.clone();
    let out = empty_device_contiguous_dtype::<R>(
        client.clone(),
        student.device.clone(),
        shape,
        DType::F32,
    );
    let (count, dim, _) = plan.grid(&client);
    let int: StorageType = ids.dtype.into();
    kernels::backward_kernel::launch::<R>(
        &client,
        count,
        dim,
        student.into_tensor_arg(),
        teacher.into_tensor_arg(),
        ids.into_tensor_arg(),
        stats.into_tensor_arg(),
        coefs.into_tensor_arg(),
        indices.into_tensor_arg(),
        grad.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        plan.shape(),
        plan.consts(),
        plan.support,
        plan.div,
        int,
    );
    out
}
