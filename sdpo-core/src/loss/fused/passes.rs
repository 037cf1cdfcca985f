//! Passes over one vocabulary row (or a student/teacher pair of rows), each
//! dispatched once to the best instruction set of the machine by pulp.
//!
//! Sums are kept in SIMD `f32` lanes for blocks of [`BLOCK`] vectors and
//! added into `f64` between blocks, so a 150k-entry row sums with an error of
//! a few ulp rather than `√V` of them. Leftover entries (`V` not a multiple
//! of the vector width) run through the same generic code with
//! [`pulp::Scalar`].

use pulp::{Scalar, Simd, WithSimd};

use super::vmath::{exp_nonpos, scalar_exp, term_and_slope, Div};

/// Vectors summed in `f32` before the partial sum moves into `f64`.
const BLOCK: usize = 64;

/// `max(row)`, or NaN when the row holds a NaN or `+∞`, so that a broken row
/// gives a NaN loss as the composite code does (`−∞` entries are fine: a
/// token ruled out).
pub fn max(row: &[f32]) -> f32 {
    pulp::Arch::new().dispatch(Max(row))
}

struct Max<'a>(&'a [f32]);

impl WithSimd for Max<'_> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        let (head, tail) = S::as_simd_f32s(self.0);
        let mut best = simd.splat_f32s(f32::NEG_INFINITY);
        // Counts NaN entries (the only ones unequal to themselves).
        let mut nan = simd.splat_f32s(0.0);
        let (zero, one) = (simd.splat_f32s(0.0), simd.splat_f32s(1.0));
        for &x in head {
            best = simd.max_f32s(best, x);
            nan = simd.add_f32s(nan, simd.select_f32s(simd.equal_f32s(x, x), zero, one));
        }
        let mut m = simd.reduce_max_f32s(best);
        let mut broken = simd.reduce_sum_f32s(nan) > 0.0;
        for &x in tail {
            m = m.max(x);
            broken |= x.is_nan();
        }
        if broken || m == f32::INFINITY {
            f32::NAN
        } else {
            m
        }
    }
}

/// Sums of `exp` over a student row `s` and a teacher row `t`, split by the
/// student's top-k cut.
///
/// The totals are kept as (the entries below the row's maximum, summed in
/// lanes) + (how many entries equal it, counted exactly): a lane holding the
/// maximum's `exp(0) = 1` would drop every term below `ε/2` added to it, and
/// those terms are the whole of `log Σ` when one entry holds nearly all the
/// mass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExpSums {
    /// `Σ exp(s − max_s)`.
    pub student: f64,
    /// `Σ exp(t − max_t)`.
    pub teacher: f64,
    /// `Σ exp(s − max_s)` over the entries with `s < cut`.
    pub student_below: f64,
    /// `Σ exp(t − max_t)` over the entries with `s < cut`.
    pub teacher_below: f64,
    /// How many entries have `s == cut`.
    pub at_cut: usize,
}

/// [`ExpSums`] of a pair of rows; `cut = −∞` when no top-k split is needed.
pub fn exp_sums(s: &[f32], t: &[f32], max_s: f32, max_t: f32, cut: f32) -> ExpSums {
    pulp::Arch::new().dispatch(Sums {
        s,
        t,
        max_s,
        max_t,
        cut,
    })
}

struct Sums<'a> {
    s: &'a [f32],
    t: &'a [f32],
    max_s: f32,
    max_t: f32,
    cut: f32,
}

/// Lane accumulators of [`Sums`] for one SIMD type.
struct SumLanes<S: Simd> {
    /// Entries below the row maximum.
    student: S::f32s,
    teacher: S::f32s,
    /// Entries equal to the row maximum (each contributes exactly 1).
    student_peaks: S::f32s,
    teacher_peaks: S::f32s,
    student_below: S::f32s,
    teacher_below: S::f32s,
    at_cut: S::f32s,
}

impl<S: Simd> SumLanes<S> {
    #[inline(always)]
    fn new(simd: S) -> Self {
        let z = simd.splat_f32s(0.0);
        Self {
            student: z,
            teacher: z,
            student_peaks: z,
            teacher_peaks: z,
            student_below: z,
            teacher_below: z,
            at_cut: z,
        }
    }

    #[inline(always)]
    fn add(&mut self, simd: S, p: &Sums<'_>, s: S::f32s, t: S::f32s) {
        let (zero, one) = (simd.splat_f32s(0.0), simd.splat_f32s(1.0));
        let es = exp_nonpos(simd, simd.sub_f32s(s, simd.splat_f32s(p.max_s)));
        let peak = simd.equal_f32s(s, simd.splat_f32s(p.max_s));
        self.student = simd.add_f32s(self.student, simd.select_f32s(peak, zero, es));
        self.student_peaks = simd.add_f32s(self.student_peaks, simd.select_f32s(peak, one, zero));
        let below = simd.less_than_f32s(s, simd.splat_f32s(p.cut));
        self.student_below = simd.add_f32s(self.student_below, simd.select_f32s(below, es, zero));
        let at = simd.equal_f32s(s, simd.splat_f32s(p.cut));
        self.at_cut = simd.add_f32s(self.at_cut, simd.select_f32s(at, one, zero));
        let et = exp_nonpos(simd, simd.sub_f32s(t, simd.splat_f32s(p.max_t)));
        let peak = simd.equal_f32s(t, simd.splat_f32s(p.max_t));
        self.teacher = simd.add_f32s(self.teacher, simd.select_f32s(peak, zero, et));
        self.teacher_peaks = simd.add_f32s(self.teacher_peaks, simd.select_f32s(peak, one, zero));
        self.teacher_below = simd.add_f32s(self.teacher_below, simd.select_f32s(below, et, zero));
    }

    #[inline(always)]
    fn flush(self, simd: S, into: &mut ExpSums) {
        into.student += simd.reduce_sum_f32s(self.student) as f64
            + simd.reduce_sum_f32s(self.student_peaks) as f64;
        into.teacher += simd.reduce_sum_f32s(self.teacher) as f64
            + simd.reduce_sum_f32s(self.teacher_peaks) as f64;
        into.student_below += simd.reduce_sum_f32s(self.student_below) as f64;
        into.teacher_below += simd.reduce_sum_f32s(self.teacher_below) as f64;
        into.at_cut += simd.reduce_sum_f32s(self.at_cut) as usize;
    }
}

impl WithSimd for Sums<'_> {
    type Output = ExpSums;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> ExpSums {
        let mut out = ExpSums::default();
        let (sh, st) = S::as_simd_f32s(self.s);
        let (th, tt) = S::as_simd_f32s(self.t);
        for (sb, tb) in sh.chunks(BLOCK).zip(th.chunks(BLOCK)) {
            let mut lanes = SumLanes::new(simd);
            for (&s, &t) in sb.iter().zip(tb) {
                lanes.add(simd, &self, s, t);
            }
            lanes.flush(simd, &mut out);
        }
        let mut lanes = SumLanes::new(Scalar);
        for (&s, &t) in st.iter().zip(tt) {
            lanes.add(Scalar, &self, s, t);
        }
        lanes.flush(Scalar, &mut out);
        out
    }
}

/// Log-probability offsets of a row: `log p = (x − max) − log_sum`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalizer {
    /// Row maximum.
    pub max: f32,
    /// `ln Σ exp(x − max)`.
    pub log_sum: f32,
}

impl Normalizer {
    /// The normalizer of a few values (the top-k entries of a row), in
    /// scalar code.
    pub fn of(values: impl Iterator<Item = f32> + Clone) -> Self {
        let max = values.clone().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = values.map(|x| scalar_exp(x - max) as f64).sum();
        Self {
            max,
            log_sum: sum.ln() as f32,
        }
    }

    /// The log-probability of a logit of this row.
    #[inline(always)]
    pub fn log_prob(self, x: f32) -> f32 {
        (x - self.max) - self.log_sum
    }

    #[inline(always)]
    fn log_probs<S: Simd>(self, simd: S, x: S::f32s) -> S::f32s {
        simd.sub_f32s(
            simd.sub_f32s(x, simd.splat_f32s(self.max)),
            simd.splat_f32s(self.log_sum),
        )
    }
}

/// Full-vocabulary divergence of a row pair: `(Σ terms, Σ slopes)` (see
/// [`term_and_slope`]).
pub fn full_divergence(
    s: &[f32],
    t: &[f32],
    ns: Normalizer,
    nt: Normalizer,
    div: Div,
) -> (f64, f64) {
    pulp::Arch::new().dispatch(FullDivergence { s, t, ns, nt, div })
}

struct FullDivergence<'a> {
    s: &'a [f32],
    t: &'a [f32],
    ns: Normalizer,
    nt: Normalizer,
    div: Div,
}

impl FullDivergence<'_> {
    #[inline(always)]
    fn sum<S: Simd>(&self, simd: S, s: &[S::f32s], t: &[S::f32s]) -> (f64, f64) {
        let (mut terms, mut slopes) = (0.0f64, 0.0f64);
        for (sb, tb) in s.chunks(BLOCK).zip(t.chunks(BLOCK)) {
            let mut term_acc = simd.splat_f32s(0.0);
            let mut slope_acc = simd.splat_f32s(0.0);
            for (&s, &t) in sb.iter().zip(tb) {
                let (term, slope) = term_and_slope(
                    simd,
                    self.ns.log_probs(simd, s),
                    self.nt.log_probs(simd, t),
                    self.div,
                );
                term_acc = simd.add_f32s(term_acc, term);
                slope_acc = simd.add_f32s(slope_acc, slope);
            }
            terms += simd.reduce_sum_f32s(term_acc) as f64;
            slopes += simd.reduce_sum_f32s(slope_acc) as f64;
        }
        (terms, slopes)
    }
}

impl WithSimd for FullDivergence<'_> {
    type Output = (f64, f64);
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> (f64, f64) {
        let (sh, st) = S::as_simd_f32s(self.s);
        let (th, tt) = S::as_simd_f32s(self.t);
        let (a, b) = self.sum(simd, sh, th);
        let (c, d) = self.sum(Scalar, st, tt);
        (a + c, b + d)
    }
}

/// Writes `out_j = scale · p_j` with `p_j = exp(log_prob(s_j))`.
pub fn write_scaled_probs(s: &[f32], ns: Normalizer, scale: f32, out: &mut [f32]) {
    pulp::Arch::new().dispatch(ScaledProbs { s, ns, scale, out })
}

struct ScaledProbs<'a> {
    s: &'a [f32],
    ns: Normalizer,
    scale: f32,
    out: &'a mut [f32],
}

impl ScaledProbs<'_> {
    #[inline(always)]
    fn write<S: Simd>(ns: Normalizer, scale: f32, simd: S, s: &[S::f32s], out: &mut [S::f32s]) {
        let k = simd.splat_f32s(scale);
        for (o, &x) in out.iter_mut().zip(s) {
            *o = simd.mul_f32s(k, exp_nonpos(simd, ns.log_probs(simd, x)));
        }
    }
}

impl WithSimd for ScaledProbs<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (sh, st) = S::as_simd_f32s(self.s);
        let (oh, ot) = S::as_mut_simd_f32s(self.out);
        Self::write(self.ns, self.scale, simd, sh, oh);
        Self::write(self.ns, self.scale, Scalar, st, ot);
    }
}

/// Writes the full-vocabulary gradient `out_j = scale · (slope_j − p_j · total)`
/// where `total = Σ slope`.
pub fn write_full_gradient(
    s: &[f32],
    t: &[f32],
    (ns, nt): (Normalizer, Normalizer),
    total: f32,
    scale: f32,
    div: Div,
    out: &mut [f32],
) {
    let row = GradientRow {
        ns,
        nt,
        total,
        scale,
        div,
    };
    pulp::Arch::new().dispatch(FullGradient { s, t, row, out })
}

/// The row constants of the full-vocabulary gradient.
#[derive(Clone, Copy)]
struct GradientRow {
    ns: Normalizer,
    nt: Normalizer,
    total: f32,
    scale: f32,
    div: Div,
}

impl GradientRow {
    #[inline(always)]
    fn write<S: Simd>(self, simd: S, s: &[S::f32s], t: &[S::f32s], out: &mut [S::f32s]) {
        let k = simd.splat_f32s(self.scale);
        let g = simd.splat_f32s(self.total);
        for ((o, &s), &t) in out.iter_mut().zip(s).zip(t) {
            let a = self.ns.log_probs(simd, s);
            let (_, slope) = term_and_slope(simd, a, self.nt.log_probs(simd, t), self.div);
            let ps = exp_nonpos(simd, a);
            *o = simd.mul_f32s(k, simd.negate_mul_add_e_f32s(ps, g, slope));
        }
    }
}

struct FullGradient<'a> {
    s: &'a [f32],
    t: &'a [f32],
    row: GradientRow,
    out: &'a mut [f32],
}

impl WithSimd for FullGradient<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (sh, st) = S::as_simd_f32s(self.s);
        let (th, tt) = S::as_simd_f32s(self.t);
        let (oh, ot) = S::as_mut_simd_f32s(self.out);
        self.row.write(simd, sh, th, oh);
        self.row.write(Scalar, st, tt, ot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize, seed: u32) -> Vec<f32> {
        // A deterministic spread of logits in [-20, 20].
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (x as f32 / (1u32 << 24) as f32) * 40.0 - 20.0
            })
            .collect()
    }

    #[test]
    fn sums_match_f64_for_lengths_off_the_vector_width() {
        for n in [1usize, 7, 15, 17, 1000, 49_155] {
            let (s, t) = (row(n, 1), row(n, 2));
            let (ms, mt) = (max(&s), max(&t));
            let cut = s[n / 2];
            let got = exp_sums(&s, &t, ms, mt, cut);
            let e = |x: f32, m: f32| ((x - m) as f64).exp();
            let want_s: f64 = s.iter().map(|&x| e(x, ms)).sum();
            let want_t: f64 = t.iter().map(|&x| e(x, mt)).sum();
            let below_s: f64 = s.iter().filter(|&&x| x < cut).map(|&x| e(x, ms)).sum();
            let below_t: f64 = s
                .iter()
                .zip(&t)
                .filter(|(&x, _)| x < cut)
                .map(|(_, &y)| e(y, mt))
                .sum();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs() + 1e-30;
            assert!(close(got.student, want_s), "n={n}");
            assert!(close(got.teacher, want_t), "n={n}");
            assert!(close(got.student_below, below_s), "n={n}");
            assert!(close(got.teacher_below, below_t), "n={n}");
            assert_eq!(got.at_cut, s.iter().filter(|&&x| x == cut).count());
        }
    }

    #[test]
    fn max_flags_nan_and_infinity() {
        let mut s = row(33, 3);
        assert_eq!(max(&s), s.iter().cloned().fold(f32::MIN, f32::max));
        s[31] = f32::NAN;
        assert!(max(&s).is_nan());
        s[31] = f32::INFINITY;
        assert!(max(&s).is_nan());
        s[31] = f32::NEG_INFINITY;
        assert!(!max(&s).is_nan());
    }
}
