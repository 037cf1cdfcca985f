//! Parameter accounting: how many bytes a module's parameters take, and forcing lazy
//! parameters to their values.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor};

/// Bytes held by a module's float parameters (element count × element size), e.g. to check
/// that a LoRA-EMA teacher holds only adapters. Lazily initialized parameters are counted
/// without being initialized, at the backend's default float size.
pub fn param_bytes<B: Backend, M: Module<B>>(module: &M) -> usize {
    let mut counter = ByteCounter { bytes: 0 };
    module.visit(&mut counter);
    counter.bytes
}

struct ByteCounter {
    bytes: usize,
}

impl<B: Backend> ModuleVisitor<B> for ByteCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let elements = param.lazy_shape().num_elements();
        let dtype = if param.is_initialized() {
            param.val().dtype()
        } else {
            Tensor::<B, 1>::empty([0], &param.lazy_device()).dtype()
        };
        self.bytes += elements * dtype.size();
    }
}

/// Initializes every lazily initialized parameter of `module` in place.
///
/// A lazy parameter that is cloned before it is read draws its own random values in each
/// clone; materialize a freshly built module before cloning it when the copies must agree.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    module.visit(&mut Materializer);
}

struct Materializer;

impl<B: Backend> ModuleVisitor<B> for Materializer {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::LinearConfig;

    type B = NdArray<f32>;

    #[test]
    fn counts_f32_bytes_with_and_without_initialization() {
        let device = Default::default();
        let linear = LinearConfig::new(3, 5).init::<B>(&device);
        // weight 3·5 + bias 5, f32
        assert_eq!(param_bytes(&linear), 20 * 4);
        assert!(!linear.weight.is_initialized());
        materialize(&linear);
        assert!(linear.weight.is_initialized());
        assert_eq!(param_bytes(&linear), 20 * 4);
    }

    #[test]
    fn materialized_clones_agree() {
        let device = Default::default();
        let linear = LinearConfig::new(4, 4).init::<B>(&device);
        materialize(&linear);
        let copy = linear.clone();
        assert_eq!(
            copy.weight.val().into_data(),
            linear.weight.val().into_data()
        );
    }
}
