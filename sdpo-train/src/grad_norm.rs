//! Global gradient-norm clipping, as PyTorch's `clip_grad_norm_`.
//!
//! Burn's `GradientClippingConfig::Norm` clips each parameter tensor on its own; TRL and verl
//! clip the norm of all gradients together. This computes `‖g‖₂` over every gradient of the
//! module and scales all of them by `max_norm / (‖g‖ + 1e-6)` when that is below 1.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use burn::tensor::Tensor;

/// The float parameter ids of a module, in visiting order.
struct Ids(Vec<ParamId>);

impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.id);
    }
}

/// Sum of squared gradient entries per parameter, read on the inner backend.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.total += g.powi_scalar(2).sum().into_scalar().elem::<f64>();
        }
    }
}

/// Scales every gradient by one factor.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The global L2 norm of `grads` over `module`'s parameters.
pub fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut v = SquaredNorm { grads, total: 0.0 };
    module.visit(&mut v);
    v.total.sqrt()
}

/// Clips `grads` in place to global norm `max_norm` and returns the norm before clipping.
/// A non-finite norm leaves the gradients as they are (the caller decides to skip the step).
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = global_norm::<B, M>(module, grads);
    let factor = max_norm / (norm + 1e-6);
    if norm.is_finite() && factor < 1.0 {
        module.visit(&mut Scale { grads, factor });
    }
    norm
}

/// The ids of every float parameter of `module` (used to count what the optimizer sees).
pub fn param_ids<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(
    module: &M,
) -> Vec<ParamId> {
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Distribution;

    type B = Autodiff<NdArray<f32>>;

    #[derive(Module, Debug)]
    struct Two<B: burn::tensor::backend::Backend> {
        a: Linear<B>,
        b: Linear<B>,
    }

    #[test]
    fn clips_all_tensors_by_one_factor() {
        let dev = Default::default();
        <NdArray<f32> as burn::tensor::backend::Backend>::seed(&dev, 3);
        let m = Two::<B> {
            a: LinearConfig::new(3, 4).init(&dev),
            b: LinearConfig::new(4, 2).init(&dev),
        };
        let x = Tensor::<B, 2>::random([5, 3], Distribution::Normal(0.0, 1.0), &dev);
        let loss =
            m.b.forward(m.a.forward(x))
                .powi_scalar(2)
                .sum()
                .mul_scalar(10.0);
        let mut grads = GradientsParams::from_grads(loss.backward(), &m);
        let before = global_norm::<B, _>(&m, &grads);
        // Reference: sqrt of the sum of squares of every gradient entry.
        let mut manual = 0.0f64;
        for lin in [&m.a, &m.b] {
            let w = grads.get::<NdArray<f32>, 2>(lin.weight.id).unwrap();
            manual += w.powi_scalar(2).sum().into_scalar() as f64;
            let bias = lin.bias.as_ref().unwrap();
            let g = grads.get::<NdArray<f32>, 1>(bias.id).unwrap();
            manual += g.powi_scalar(2).sum().into_scalar() as f64;
        }
        assert!(
            (before - manual.sqrt()).abs() < 1e-3 * before,
            "{before} vs {}",
            manual.sqrt()
        );
        assert!(before > 1.0);
        let reported = clip_global_norm::<B, _>(&m, &mut grads, 1.0);
        assert_eq!(reported, before);
        let after = global_norm::<B, _>(&m, &grads);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
        // Below the threshold nothing changes.
        let again = clip_global_norm::<B, _>(&m, &mut grads, 10.0);
        assert!((global_norm::<B, _>(&m, &grads) - again).abs() < 1e-9);
    }
}
