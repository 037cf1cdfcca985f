//! Divergences between the student and teacher distributions over a support.

use burn::tensor::{backend::Backend, Tensor};

use super::math::{lerp, log_add_exp};
use crate::config::Divergence;

/// `p_target · (log p_target − log p_input)` elementwise: torch's
/// `kl_div(input, target, reduction="none", log_target=True)`.
pub fn kl_terms<B: Backend, const D: usize>(
    input: Tensor<B, D>,
    target: Tensor<B, D>,
) -> Tensor<B, D> {
    target.clone().exp() * (target - input)
}

/// Per-entry divergence terms between student and teacher log-probabilities;
/// summing them over the last dimension gives the divergence.
///
/// - `ForwardKl`: `p_t (log p_t − log p_s)`;
/// - `ReverseKl`: `p_s (log p_s − log p_t)`;
/// - `JensenShannon(α)`: with `log m = log((1−α) p_s + α p_t)`,
///   `lerp(p_s (log p_s − log m), p_t (log p_t − log m), α)`.
///
/// # Shapes
/// `student, teacher: [batch, len, K]` → `[batch, len, K]`.
pub fn divergence_terms<B: Backend>(
    student: Tensor<B, 3>,
    teacher: Tensor<B, 3>,
    divergence: Divergence,
) -> Tensor<B, 3> {
    match divergence {
        Divergence::ForwardKl => kl_terms(student, teacher),
        Divergence::ReverseKl => kl_terms(teacher, student),
        Divergence::JensenShannon(alpha) => {
            let mixture = log_add_exp(
                student.clone() + (1.0 - alpha).ln(),
                teacher.clone() + alpha.ln(),
            );
            let kl_teacher = kl_terms(mixture.clone(), teacher);
            let kl_student = kl_terms(mixture, student);
            lerp(kl_student, kl_teacher, alpha)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f64>;

    fn div(p: [f64; 2], q: [f64; 2], d: Divergence) -> f64 {
        let dev = Default::default();
        let s = Tensor::<B, 3>::from_data([[[p[0].ln(), p[1].ln()]]], &dev);
        let t = Tensor::<B, 3>::from_data([[[q[0].ln(), q[1].ln()]]], &dev);
        divergence_terms(s, t, d).sum().into_scalar()
    }

    #[test]
    fn hand_computed_two_token_cases() {
        let (p, q) = ([0.25, 0.75], [0.5, 0.5]);
        let fwd = 0.5 * (0.5f64 / 0.25).ln() + 0.5 * (0.5f64 / 0.75).ln();
        let rev = 0.25 * (0.25f64 / 0.5).ln() + 0.75 * (0.75f64 / 0.5).ln();
        assert!((div(p, q, Divergence::ForwardKl) - fwd).abs() < 1e-12);
        assert!((div(p, q, Divergence::ReverseKl) - rev).abs() < 1e-12);
        let m = [0.375, 0.625];
        let kl = |a: [f64; 2]| a[0] * (a[0] / m[0]).ln() + a[1] * (a[1] / m[1]).ln();
        let jsd = 0.5 * kl(p) + 0.5 * kl(q);
        assert!((div(p, q, Divergence::JensenShannon(0.5)) - jsd).abs() < 1e-12);
    }

    #[test]
    fn identical_distributions_have_zero_divergence() {
        let p = [0.3, 0.7];
        for d in [
            Divergence::ForwardKl,
            Divergence::ReverseKl,
            Divergence::JensenShannon(0.3),
        ] {
            assert!(div(p, p, d).abs() < 1e-15);
        }
    }
}
