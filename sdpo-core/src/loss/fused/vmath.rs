//! Vector math for the fused CPU kernels, generic over [`pulp::Simd`] so one
//! source serves every instruction set pulp dispatches to at run time (AVX-512,
//! AVX2+FMA, SSE4, NEON, scalar) and, through [`pulp::Scalar`], single values.
//!
//! Only what the loss needs: `exp` of non-positive arguments (logits minus
//! their row maximum, log-probabilities), `log1p` on `[0, 1]` (inside
//! `log_add_exp`), and the per-entry divergence terms with their derivative.

use pulp::Simd;

use crate::config::Divergence;

/// `exp(x)` for `x ≤ 0`: Cody–Waite range reduction `x = n·ln 2 + r`,
/// `|r| ≤ ln 2 / 2`, and Cephes' degree-7 polynomial (≈ 1 ulp). Arguments
/// below `ln(2⁻¹²⁶)` give exactly 0 (as does `−∞`); positive arguments are
/// treated as 0. A NaN argument gives NaN on SIMD paths; callers keep NaN out.
#[inline(always)]
pub fn exp_nonpos<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5·2²³: adding it rounds to an integer kept in the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    const SHIFT_BITS: u32 = 0x4B40_0000;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // ln(2⁻¹²⁶): below it 2ⁿ is not a normal float.
    const MIN_ARG: f32 = -87.336_54;

    let zero = simd.splat_f32s(0.0);
    let x = simd.min_f32s(x, zero);
    let t = simd.mul_add_e_f32s(x, simd.splat_f32s(LOG2E), simd.splat_f32s(SHIFT));
    let n = simd.sub_f32s(t, simd.splat_f32s(SHIFT));
    let r = simd.mul_add_e_f32s(n, simd.splat_f32s(-LN2_HI), x);
    let r = simd.mul_add_e_f32s(n, simd.splat_f32s(-LN2_LO), r);

    let mut p = simd.splat_f32s(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = simd.mul_add_e_f32s(p, r, simd.splat_f32s(c));
    }
    let r2 = simd.mul_f32s(r, r);
    let y = simd.add_f32s(simd.mul_add_e_f32s(p, r2, r), simd.splat_f32s(1.0));

    // 2ⁿ from the integer in t's low bits: (n + 127) << 23.
    let biased = simd.add_u32s(
        simd.transmute_u32s_f32s(t),
        simd.splat_u32s(127u32.wrapping_sub(SHIFT_BITS)),
    );
    let scale = simd.transmute_f32s_u32s(simd.wrapping_dyn_shl_u32s(biased, simd.splat_u32s(23)));
    let out = simd.mul_f32s(y, scale);
    simd.select_f32s(simd.less_than_f32s(x, simd.splat_f32s(MIN_ARG)), zero, out)
}

/// `log(1 + e)` for `e ∈ [0, 1]`: `2·atanh(u)` with `u = e / (2 + e) ≤ 1/3`,
/// an odd series to `u¹⁵` (relative error below 2e-9 before rounding); no
/// cancellation for small `e`.
#[inline(always)]
pub fn log1p_unit<S: Simd>(simd: S, e: S::f32s) -> S::f32s {
    let u = simd.div_f32s(e, simd.add_f32s(e, simd.splat_f32s(2.0)));
    let u2 = simd.mul_f32s(u, u);
    let mut p = simd.splat_f32s(1.0 / 15.0);
    for c in [
        1.0 / 13.0,
        1.0 / 11.0,
        1.0 / 9.0,
        1.0 / 7.0,
        1.0 / 5.0,
        1.0 / 3.0,
        1.0,
    ] {
        p = simd.mul_add_e_f32s(p, u2, simd.splat_f32s(c));
    }
    simd.mul_f32s(simd.mul_f32s(u, p), simd.splat_f32s(2.0))
}

/// The divergence, with the constants its per-entry formula needs.
#[derive(Debug, Clone, Copy)]
pub enum Div {
    /// `p_t (b − a)`.
    Forward,
    /// `p_s (a − b)`.
    Reverse,
    /// Generalized Jensen–Shannon with mixture weight `alpha` on the teacher.
    Jsd {
        /// `1 − α`.
        w_s: f32,
        /// `α`.
        w_t: f32,
        /// `ln(1 − α)`.
        ln_w_s: f32,
        /// `ln α`.
        ln_w_t: f32,
    },
}

impl From<Divergence> for Div {
    fn from(d: Divergence) -> Self {
        match d {
            Divergence::ForwardKl => Div::Forward,
            Divergence::ReverseKl => Div::Reverse,
            Divergence::JensenShannon(alpha) => Div::Jsd {
                w_s: (1.0 - alpha) as f32,
                w_t: alpha as f32,
                ln_w_s: (1.0 - alpha).ln() as f32,
                ln_w_t: alpha.ln() as f32,
            },
        }
    }
}

/// The divergence term of one support entry with student log-probability `a`
/// and teacher log-probability `b`, and its derivative with respect to `a`:
///
/// - forward KL: `p_t (b − a)`, derivative `−p_t`;
/// - reverse KL: `p_s (a − b)`, derivative `p_s (a − b + 1)`;
/// - JSD(α), `log m = log_add_exp(a + ln(1−α), b + ln α)`:
///   `(1−α) p_s (a − log m) + α p_t (b − log m)`, derivative
///   `(1−α) p_s (a − log m)` (the `log m` terms cancel).
///
/// Returns `(term, derivative)`.
#[inline(always)]
pub fn term_and_slope<S: Simd>(simd: S, a: S::f32s, b: S::f32s, div: Div) -> (S::f32s, S::f32s) {
    match div {
        Div::Forward => {
            let pt = exp_nonpos(simd, b);
            (simd.mul_f32s(pt, simd.sub_f32s(b, a)), simd.neg_f32s(pt))
        }
        Div::Reverse => {
            let ps = exp_nonpos(simd, a);
            let d = simd.sub_f32s(a, b);
            (
                simd.mul_f32s(ps, d),
                simd.mul_f32s(ps, simd.add_f32s(d, simd.splat_f32s(1.0))),
            )
        }
        Div::Jsd {
            w_s,
            w_t,
            ln_w_s,
            ln_w_t,
        } => {
            let ps = exp_nonpos(simd, a);
            let pt = exp_nonpos(simd, b);
            let sa = simd.add_f32s(a, simd.splat_f32s(ln_w_s));
            let sb = simd.add_f32s(b, simd.splat_f32s(ln_w_t));
            let hi = simd.max_f32s(sa, sb);
            let lo = simd.min_f32s(sa, sb);
            let log_m = simd.add_f32s(
                hi,
                log1p_unit(simd, exp_nonpos(simd, simd.sub_f32s(lo, hi))),
            );
            let slope = simd.mul_f32s(
                simd.mul_f32s(simd.splat_f32s(w_s), ps),
                simd.sub_f32s(a, log_m),
            );
            let teacher = simd.mul_f32s(
                simd.mul_f32s(simd.splat_f32s(w_t), pt),
                simd.sub_f32s(b, log_m),
            );
            (simd.add_f32s(slope, teacher), slope)
        }
    }
}

/// [`term_and_slope`] for one entry, in scalar code.
pub fn scalar_term_and_slope(a: f32, b: f32, div: Div) -> (f32, f32) {
    term_and_slope(pulp::Scalar, a, b, div)
}

/// [`exp_nonpos`] of one value.
pub fn scalar_exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    exp_nonpos(pulp::Scalar, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ExpAll<'a>(&'a [f32], &'a mut [f32]);
    impl pulp::WithSimd for ExpAll<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let (xs, xt) = S::as_simd_f32s(self.0);
            let (ys, yt) = S::as_mut_simd_f32s(self.1);
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = exp_nonpos(simd, x);
            }
            for (y, &x) in yt.iter_mut().zip(xt) {
                *y = scalar_exp(x);
            }
        }
    }

    #[test]
    fn exp_is_within_two_ulp_on_every_instruction_set() {
        let xs: Vec<f32> = (0..200_000).map(|i| -(i as f32) * 4.4e-4).collect();
        let mut ys = vec![0.0; xs.len()];
        pulp::Arch::new().dispatch(ExpAll(&xs, &mut ys));
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            if want < f32::MIN_POSITIVE as f64 {
                assert!(y == 0.0 || (y as f64 - want).abs() < 1e-37, "x={x}");
                continue;
            }
            let ulp = (want as f32).abs() * f32::EPSILON;
            assert!(
                ((y as f64) - want).abs() <= 2.0 * ulp as f64,
                "x={x}: {y} vs {want}"
            );
        }
        for x in [0.0f32, -0.0, -1e-30, -87.0, -88.0, -1e4, f32::NEG_INFINITY] {
            let y = scalar_exp(x);
            assert!((y as f64 - (x as f64).exp()).abs() <= 1e-7 * (x as f64).exp() + 1e-38);
        }
        assert!(scalar_exp(f32::NAN).is_nan());
    }

    #[test]
    fn log1p_is_precise_from_tiny_to_one() {
        for e in [0.0f32, 1e-30, 1e-8, 1e-4, 0.1, 0.5, 0.9, 1.0] {
            let got = log1p_unit(pulp::Scalar, e) as f64;
            let want = (e as f64).ln_1p();
            assert!(
                (got - want).abs() <= 2.0 * f32::EPSILON as f64 * want.max(1e-38),
                "{e}"
            );
        }
    }

    #[test]
    fn terms_and_slopes_match_the_formulas() {
        let (a, b) = (0.3f64.ln(), 0.6f64.ln());
        let (pa, pb) = (0.3, 0.6);
        let check = |div: Divergence, term: f64, slope: f64| {
            let (t, s) = scalar_term_and_slope(a as f32, b as f32, div.into());
            assert!((t as f64 - term).abs() < 1e-6, "{div:?} term {t} vs {term}");
            assert!(
                (s as f64 - slope).abs() < 1e-6,
                "{div:?} slope {s} vs {slope}"
            );
        };
        check(Divergence::ForwardKl, pb * (b - a), -pb);
        check(Divergence::ReverseKl, pa * (a - b), pa * (a - b + 1.0));
        let alpha = 0.25;
        let m = (1.0 - alpha) * pa + alpha * pb;
        let slope = (1.0 - alpha) * pa * (a - m.ln());
        check(
            Divergence::JensenShannon(alpha),
            slope + alpha * pb * (b - m.ln()),
            slope,
        );
        // The slope is the derivative of the term in `a` (with p_s = e^a).
        for div in [
            Divergence::ForwardKl,
            Divergence::ReverseKl,
            Divergence::JensenShannon(0.7),
        ] {
            let h = 1e-3f32;
            let f = |a: f32| scalar_term_and_slope(a, b as f32, div.into()).0 as f64;
            let fd = (f(a as f32 + h) - f(a as f32 - h)) / (2.0 * h as f64);
            let (_, s) = scalar_term_and_slope(a as f32, b as f32, div.into());
            assert!((fd - s as f64).abs() < 2e-3, "{div:?}: {fd} vs {s}");
        }
    }
}
