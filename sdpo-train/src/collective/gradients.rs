//! The gradient all-reduce: every trainable parameter's gradient flattened into one buffer in
//! the module's visiting order (the same on every rank), one all-reduce, and the sums put
//! back. Two entries per parameter follow the values: whether the rank has a gradient for it
//! (a parameter no rank has a gradient for stays without one, as in one process) — and one
//! entry at the end: whether the rank's loss was finite.

use std::time::Instant;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::{Collective, CollectiveError};

/// What a gradient all-reduce moved and how long it took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReduceStats {
    /// Bytes of the fused buffer (f32 values and flags).
    pub bytes: usize,
    /// Seconds spent building the buffer, reducing it and putting the sums back.
    pub seconds: f64,
}

/// Takes the trainable parameters' gradients out of `grads` as flat parts, in visiting order
/// (zeros where the rank has none), with a presence flag each.
struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    device: burn::tensor::Device<B::InnerBackend>,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    present: Vec<f32>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.is_require_grad() {
            return;
        }
        let (part, present) = match self.grads.remove::<B::InnerBackend, D>(param.id) {
            Some(g) => (g.flatten::<1>(0, D - 1), 1.0),
            None => (
                Tensor::zeros([param.shape().num_elements()], &self.device),
                0.0,
            ),
        };
        self.parts.push(part);
        self.present.push(present);
    }
}

/// Puts the reduced gradients back where some rank had one.
struct Restore<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    reduced: Tensor<B::InnerBackend, 1>,
    present: &'a [f32],
    offset: usize,
    index: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Restore<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.is_require_grad() {
            return;
        }
        let shape = param.shape();
        let numel = shape.num_elements();
        if self.present[self.index] > 0.0 {
            let part = self.reduced.clone().narrow(0, self.offset, numel);
            let dims: [usize; D] = shape.dims();
            self.grads
                .register::<B::InnerBackend, D>(param.id, part.reshape(dims));
        }
        self.offset += numel;
        self.index += 1;
    }
}

/// Sums `grads` over the ranks of `collective` in place and returns whether every rank's loss
/// was finite (`finite` is this rank's), with what the reduce moved.
///
/// # Errors
/// [`CollectiveError`] from the all-reduce.
pub fn all_reduce_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    finite: bool,
    collective: &dyn Collective<B::InnerBackend>,
    what: &str,
) -> Result<(bool, ReduceStats), CollectiveError> {
    let t0 = Instant::now();
    let device = module.devices().into_iter().next().unwrap_or_default();
    let mut flatten = Flatten::<B> {
        grads,
        device: device.clone(),
        parts: Vec::new(),
        present: Vec::new(),
    };
    module.visit(&mut flatten);
    let Flatten {
        grads,
        mut parts,
        mut present,
        ..
    } = flatten;
    present.push(if finite { 0.0 } else { 1.0 });
    let flags = present.len();
    parts.push(Tensor::from_floats(present.as_slice(), &device));
    let buffer = Tensor::cat(parts, 0);
    let len = buffer.dims()[0];
    let reduced = collective.all_reduce_tensor(what, buffer)?;
    let flag_values: Vec<f32> = reduced
        .clone()
        .narrow(0, len - flags, flags)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .map_err(|e| CollectiveError::Engine {
            what: what.to_string(),
            message: format!("reading the reduced flags: {e:?}"),
        })?;
    module.visit(&mut Restore::<B> {
        grads,
        reduced,
        present: &flag_values,
        offset: 0,
        index: 0,
    });
    let all_finite = flag_values[flags - 1] == 0.0;
    Ok((
        all_finite,
        ReduceStats {
            bytes: len * std::mem::size_of::<f32>(),
            seconds: t0.elapsed().as_secs_f64(),
        },
    ))
}
