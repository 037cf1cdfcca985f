//! Elementwise functions Burn 0.21 lacks: `expm1`, `log(exp(a) + exp(b))`, `lerp`.

use burn::tensor::{backend::Backend, Tensor};

/// `exp(x) − 1`, precise near 0 (where `exp(x) − 1` cancels):
/// `expm1(x) = 2t / (1 − t)` with `t = tanh(x / 2)`.
///
/// Accurate for `x ≤ 0` (the only use here); for large positive `x` the
/// division loses precision as `t → 1`.
pub fn expm1<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let t = (x / 2.0).tanh();
    (t.clone() * 2.0) / (t.neg() + 1.0)
}

/// `log(exp(a) + exp(b))` elementwise: `m + log(exp(a − m) + exp(b − m))` with
/// `m = max(a, b)` detached.
///
/// The gradient flows only through the exponentials, so it is the softmax
/// weight of each side everywhere, ties included. (`max + log1p(exp(−|a − b|))`
/// is the same value, but at `a = b` Burn's `max_pair` sends the whole gradient
/// to `a` and `abs` sends none, which gives `a` weight 1 and `b` weight 0
/// instead of ½ each.)
pub fn log_add_exp<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let max = a.clone().max_pair(b.clone()).detach();
    let sum = (a - max.clone()).exp() + (b - max.clone()).exp();
    max + sum.log()
}

/// `a + w·(b − a)` (torch's `lerp(a, b, w)`).
pub fn lerp<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, w: f64) -> Tensor<B, D> {
    a.clone() + (b - a) * w
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f64>;

    fn vals<const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data().to_vec::<f64>().unwrap()
    }

    #[test]
    fn expm1_is_precise_near_zero_and_far_from_it() {
        let xs: [f64; 6] = [-1e-7, -1e-3, -0.5, -5.0, -40.0, 0.0];
        let t = Tensor::<B, 1>::from_data(xs, &Default::default());
        for (got, x) in vals(expm1(t)).into_iter().zip(xs) {
            let want = x.exp_m1();
            assert!(
                (got - want).abs() <= 1e-15 + 1e-13 * want.abs(),
                "x={x}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn log_add_exp_matches_definition() {
        let dev = Default::default();
        let a = Tensor::<B, 1>::from_data([0.0, -1000.0, 5.0], &dev);
        let b = Tensor::<B, 1>::from_data([0.0, -1001.0, -3.0], &dev);
        let got = vals(log_add_exp(a, b));
        let want = [
            2f64.ln(),
            -1000.0 + (1.0 + (-1f64).exp()).ln(),
            5.0 + (1.0 + (-8f64).exp()).ln(),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
    }

    #[test]
    fn log_add_exp_splits_the_gradient_evenly_at_ties() {
        use burn::backend::Autodiff;
        let dev = Default::default();
        let a = Tensor::<Autodiff<B>, 1>::from_data([0.5, 2.0], &dev).require_grad();
        let b = Tensor::<Autodiff<B>, 1>::from_data([0.5, 0.0], &dev).require_grad();
        let grads = log_add_exp(a.clone(), b.clone()).sum().backward();
        let ga = a.grad(&grads).unwrap().into_data().to_vec::<f64>().unwrap();
        let gb = b.grad(&grads).unwrap().into_data().to_vec::<f64>().unwrap();
        let w = 1.0 / (1.0 + (-2.0f64).exp());
        for (got, want) in ga.iter().chain(&gb).zip([0.5, w, 0.5, 1.0 - w]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn lerp_matches_torch() {
        let dev = Default::default();
        let a = Tensor::<B, 1>::from_data([1.0, 2.0], &dev);
        let b = Tensor::<B, 1>::from_data([3.0, -2.0], &dev);
        assert_eq!(vals(lerp(a, b, 0.25)), vec![1.5, 1.0]);
    }
}
