//! The fused loss of one position: forward (divergence, sampled-token
//! log-probability, what the backward needs) and backward (the gradient of the
//! student logits), with the same formulas as the composite code in
//! [`crate::loss`].
//!
//! Saved between the two, per row: `STATS` scalars and, for top-k supports,
//! the `k` selected indices and a coefficient per index. With `P_j` the
//! student's probabilities, `G` and `c` row scalars and `d_i` the
//! coefficients, the gradient of the top-k and sampled-token supports is
//! `g · P_j · c` at entries outside the top-k and `g · (d_i − P_j · G)` at
//! `j = I_i`, plus, for the sampled-token loss, `g·r` at the sampled token:
//!
//! | support | `c` | `G` | `d_i` |
//! |---|---|---|---|
//! | top-k + tail | `slope_tail / P_tail − G` (`−G` when the tail is clamped) | `Σ slopes` | `slope_i` |
//! | top-k renormalized | 0 | 0 | `slope_i − q_i Σ slopes` |
//! | full vocabulary | — (recomputed per entry: `slope_j − P_j Σ slopes`) | | |
//! | sampled token | `−r` | 0 | |

use crate::config::DistillationSupport;

use super::passes::{self, ExpSums, Normalizer};
use super::select::TopK;
use super::vmath::{scalar_exp, scalar_term_and_slope, Div};

/// Scalars saved per row: student max and log-sum, teacher max and log-sum,
/// and the two row coefficients `c` and `G` of the module docs.
pub const STATS: usize = 6;

/// The reference's clamp of the tail bucket: the tail's log-probability is at
/// least `ln(−expm1(−1e-7))` (top-k log-mass clamped to `−1e-7`).
pub(crate) fn min_log_tail() -> f64 {
    (-(-1e-7f64).exp_m1()).ln()
}

/// What the fused loss computes: the support and the divergence.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// Which entries the divergence sums over.
    pub support: DistillationSupport,
    /// The divergence, with its constants.
    pub div: Div,
}

impl Kind {
    /// Indices saved per row for a vocabulary of `v` entries.
    pub fn slots(&self, v: usize) -> usize {
        match self.support {
            DistillationSupport::TopKTail(k) | DistillationSupport::TopKRenormalized(k) => k.min(v),
            DistillationSupport::FullVocabulary | DistillationSupport::SampledToken => 0,
        }
    }
}

/// The forward results of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowLoss {
    /// The row's divergence (or sampled-token loss), before any weight.
    pub loss: f32,
    /// Student log-probability of the sampled token.
    pub token_log_prob: f32,
}

/// Where a row writes what its backward needs.
pub struct Saved<'a> {
    /// `[STATS]`.
    pub stats: &'a mut [f32],
    /// `[slots]` coefficients `d_i`.
    pub coefs: &'a mut [f32],
    /// `[slots]` selected vocabulary indices.
    pub indices: &'a mut [i64],
}

/// Per-thread scratch space.
#[derive(Debug, Default)]
pub struct Scratch {
    top: TopK,
}

/// Forward of one row: student logits `s`, teacher logits `t`, sampled token
/// `id`. A row with NaN or infinite logits, or an `id` outside the row, gives
/// NaN everywhere (as the composite code's arithmetic would).
pub fn forward(
    s: &[f32],
    t: &[f32],
    id: i64,
    kind: Kind,
    scratch: &mut Scratch,
    saved: Saved<'_>,
) -> RowLoss {
    let v = s.len();
    let max_s = passes::max(s);
    let max_t = passes::max(t);
    if !max_s.is_finite() || !max_t.is_finite() || id < 0 || id as usize >= v {
        return broken(saved);
    }
    let id = id as usize;
    let top = match kind.support {
        DistillationSupport::TopKTail(k) | DistillationSupport::TopKRenormalized(k) => {
            scratch.top.select(s, k)
        }
        _ => &[],
    };
    let cut = top.last().map_or(f32::NEG_INFINITY, |e| e.0);
    let mut sums = passes::exp_sums(s, t, max_s, max_t, cut);
    add_unselected_ties(s, t, (max_s, max_t), top, &mut sums);
    let ns = Normalizer {
        max: max_s,
        log_sum: sums.student.ln() as f32,
    };
    let nt = Normalizer {
        max: max_t,
        log_sum: sums.teacher.ln() as f32,
    };
    let token_log_prob = ns.log_prob(s[id]);
    saved.stats[..4].copy_from_slice(&[ns.max, ns.log_sum, nt.max, nt.log_sum]);
    for (slot, e) in saved.indices.iter_mut().zip(top) {
        *slot = e.1 as i64;
    }

    let (loss, c, g) = match kind.support {
        DistillationSupport::SampledToken => {
            let r = token_log_prob - nt.log_prob(t[id]);
            (r * token_log_prob, -r, 0.0)
        }
        DistillationSupport::FullVocabulary => {
            let (loss, total) = passes::full_divergence(s, t, ns, nt, kind.div);
            (loss as f32, 0.0, total as f32)
        }
        DistillationSupport::TopKTail(_) => {
            topk_tail(t, (ns, nt), &sums, top, kind.div, saved.coefs)
        }
        DistillationSupport::TopKRenormalized(_) => {
            (topk_renormalized(t, top, kind.div, saved.coefs), 0.0, 0.0)
        }
    };
    saved.stats[4] = c;
    saved.stats[5] = g;
    RowLoss {
        loss,
        token_log_prob,
    }
}

/// NaN outputs for a broken row.
fn broken(saved: Saved<'_>) -> RowLoss {
    saved.stats.fill(f32::NAN);
    saved.coefs.fill(f32::NAN);
    saved.indices.fill(0);
    RowLoss {
        loss: f32::NAN,
        token_log_prob: f32::NAN,
    }
}

/// Entries equal to the k-th value but not selected belong to the tail; the
/// SIMD pass only put entries strictly below it there.
fn add_unselected_ties(
    s: &[f32],
    t: &[f32],
    (max_s, max_t): (f32, f32),
    top: &[(f32, u32)],
    sums: &mut ExpSums,
) {
    let Some(&(cut, _)) = top.last() else {
        return;
    };
    let selected_at_cut = top.iter().filter(|e| e.0 == cut).count();
    if sums.at_cut <= selected_at_cut {
        return;
    }
    for (j, (&x, &y)) in s.iter().zip(t).enumerate() {
        if x == cut && !top.iter().any(|e| e.1 as usize == j) {
            sums.student_below += scalar_exp(x - max_s) as f64;
            sums.teacher_below += scalar_exp(y - max_t) as f64;
        }
    }
}

/// Top-k + tail: divergence over the k entries and the tail bucket (each
/// side's tail from its own mass outside the top-k, clamped as the
/// reference does). Writes `d_i`; returns `(loss, c, G)`.
fn topk_tail(
    t: &[f32],
    (ns, nt): (Normalizer, Normalizer),
    sums: &ExpSums,
    top: &[(f32, u32)],
    div: Div,
    coefs: &mut [f32],
) -> (f32, f32, f32) {
    let (mut loss, mut total) = (0.0f64, 0.0f64);
    for (d, &(x, j)) in coefs.iter_mut().zip(top) {
        let (term, slope) = scalar_term_and_slope(ns.log_prob(x), nt.log_prob(t[j as usize]), div);
        loss += term as f64;
        total += slope as f64;
        *d = slope;
    }
    let floor = min_log_tail();
    let tail_s = sums.student_below.ln() - sums.student.ln();
    let tail_t = sums.teacher_below.ln() - sums.teacher.ln();
    let clamped = tail_s.is_nan() || tail_s < floor;
    let (term, slope) =
        scalar_term_and_slope(tail_s.max(floor) as f32, tail_t.max(floor) as f32, div);
    loss += term as f64;
    let c = if clamped {
        // The reference's clamp cuts the tail's gradient.
        -total
    } else {
        total += slope as f64;
        slope as f64 / tail_s.exp() - total
    };
    (loss as f32, c as f32, total as f32)
}

/// Top-k renormalized: both sides renormalized over the student's top-k.
/// Writes `d_i = slope_i − q_i Σ slopes`; returns the loss.
fn topk_renormalized(t: &[f32], top: &[(f32, u32)], div: Div, coefs: &mut [f32]) -> f32 {
    let tv = |j: u32| t[j as usize];
    let ns = Normalizer::of(top.iter().map(|e| e.0));
    let nt = Normalizer::of(top.iter().map(|e| tv(e.1)));
    let (mut loss, mut total) = (0.0f64, 0.0f64);
    for (d, &(x, j)) in coefs.iter_mut().zip(top) {
        let (term, slope) = scalar_term_and_slope(ns.log_prob(x), nt.log_prob(tv(j)), div);
        loss += term as f64;
        total += slope as f64;
        *d = slope;
    }
    for (d, &(x, _)) in coefs.iter_mut().zip(top) {
        *d -= scalar_exp(ns.log_prob(x)) * total as f32;
    }
    loss as f32
}

/// What a row's backward reads.
pub struct SavedRow<'a> {
    /// `[STATS]`.
    pub stats: &'a [f32],
    /// `[slots]`.
    pub coefs: &'a [f32],
    /// `[slots]`.
    pub indices: &'a [i64],
}

/// Backward of one row: writes `out = grad · ∂loss/∂s` (see the module docs).
pub fn backward(
    s: &[f32],
    t: &[f32],
    id: i64,
    kind: Kind,
    saved: SavedRow<'_>,
    grad: f32,
    out: &mut [f32],
) {
    let st = saved.stats;
    if grad == 0.0 {
        out.fill(0.0);
        return;
    }
    if st.iter().any(|x| x.is_nan()) {
        out.fill(f32::NAN);
        return;
    }
    let ns = Normalizer {
        max: st[0],
        log_sum: st[1],
    };
    let nt = Normalizer {
        max: st[2],
        log_sum: st[3],
    };
    let (c, g) = (st[4], st[5]);
    match kind.support {
        DistillationSupport::FullVocabulary => {
            passes::write_full_gradient(s, t, (ns, nt), g, grad, kind.div, out);
        }
        DistillationSupport::TopKRenormalized(_) => {
            out.fill(0.0);
            for (&d, &j) in saved.coefs.iter().zip(saved.indices) {
                out[j as usize] = grad * d;
            }
        }
        DistillationSupport::TopKTail(_) => {
            passes::write_scaled_probs(s, ns, grad * c, out);
            for (&d, &j) in saved.coefs.iter().zip(saved.indices) {
                let p = scalar_exp(ns.log_prob(s[j as usize]));
                out[j as usize] = grad * (d - p * g);
            }
        }
        DistillationSupport::SampledToken => {
            passes::write_scaled_probs(s, ns, grad * c, out);
            out[id as usize] -= grad * c;
        }
    }
}
