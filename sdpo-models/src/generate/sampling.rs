//! Host-side token selection from one row of logits: temperature, top-k, top-p, min-p and one
//! draw. Pure functions of `(logits, params, u)`, testable without a model: the reference the
//! device path ([`super::select`], which generation uses) is tested against.
//!
//! Top-k and top-p use partial selection (`select_nth_unstable`), never a sort of the whole
//! vocabulary: top-k sorts only its `k` survivors, and top-p sorts a growing prefix (64, 256,
//! ... tokens) until the nucleus mass is reached.

use std::cmp::Ordering;

use super::SamplingParams;

/// The first prefix length tried when searching for the nucleus.
const NUCLEUS_FIRST_PREFIX: usize = 64;

/// A chosen token and its log-probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampledToken {
    /// Token id.
    pub id: u32,
    /// `log p(id)` under `softmax(logits / temperature)` over the full vocabulary, before any
    /// filtering (plain `log_softmax` when greedy).
    pub log_prob: f64,
}

/// A token that survived the filters, with its renormalized probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Probability after filtering and renormalization (the survivors sum to 1).
    pub prob: f64,
}

/// Why a row of logits cannot be sampled from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// The row has no entries.
    #[error("cannot sample from an empty row of logits")]
    Empty,
    /// A logit is NaN or infinite.
    #[error("logit of token {index} is {value}; logits must be finite")]
    NonFinite {
        /// Token id of the bad logit.
        index: usize,
        /// Its value.
        value: f32,
    },
}

/// One row at a temperature: scaled logits, their log-normalizer and probabilities.
struct Scaled {
    /// `logits / temperature` (temperature 1 when greedy).
    scaled: Vec<f64>,
    /// `log Σ exp(scaled)`.
    log_z: f64,
    /// `softmax(scaled)`.
    probs: Vec<f64>,
    /// Index of the largest logit (the lowest one among ties).
    argmax: usize,
}

impl Scaled {
    fn new(logits: &[f32], temperature: f64) -> Result<Self, SamplingError> {
        if logits.is_empty() {
            return Err(SamplingError::Empty);
        }
        if let Some((index, &value)) = logits.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(SamplingError::NonFinite { index, value });
        }
        let t = if temperature == 0.0 { 1.0 } else { temperature };
        let scaled: Vec<f64> = logits.iter().map(|&x| f64::from(x) / t).collect();
        let mut argmax = 0;
        for (i, &x) in scaled.iter().enumerate() {
            if x > scaled[argmax] {
                argmax = i;
            }
        }
        let max = scaled[argmax];
        let mut probs: Vec<f64> = scaled.iter().map(|&x| (x - max).exp()).collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        Ok(Self {
            log_z: max + sum.ln(),
            scaled,
            probs,
            argmax,
        })
    }

    fn log_prob(&self, id: usize) -> f64 {
        self.scaled[id] - self.log_z
    }

    /// Descending probability, ties broken by ascending id.
    fn descending(&self, a: usize, b: usize) -> Ordering {
        self.scaled[b].total_cmp(&self.scaled[a]).then(a.cmp(&b))
    }

    /// Ids surviving top-k, top-p and min-p: in descending probability when top-k or top-p
    /// is on, otherwise in id order.
    fn filter(&self, params: &SamplingParams) -> Vec<usize> {
        let n = self.scaled.len();
        let mut ids: Vec<usize> = (0..n).collect();
        let desc = |a: &usize, b: &usize| self.descending(*a, *b);
        if params.top_k > 0 && params.top_k < n {
            ids.select_nth_unstable_by(params.top_k - 1, desc);
            // Tokens tied with the k-th are kept too (as torch's `logits < topk[-1]` does).
            let kth = self.scaled[ids[params.top_k - 1]];
            ids.retain(|&i| self.scaled[i] >= kth);
            ids.sort_unstable_by(desc);
        }
        if params.top_p < 1.0 {
            // Sorts (a prefix of) `ids` itself; cheap when top-k already sorted them.
            let keep = self.nucleus_len(&mut ids, params.top_p);
            // Tokens tied with the last one of the nucleus are kept too.
            let last = self.scaled[ids[keep - 1]];
            ids.retain(|&i| self.scaled[i] >= last);
            ids.sort_unstable_by(desc);
        }
        if params.min_p > 0.0 {
            let threshold = params.min_p * self.probs[self.argmax];
            // The most likely token always passes: min_p < 1.
            ids.retain(|&i| self.probs[i] >= threshold);
        }
        ids
    }

    /// Length of the smallest descending-probability prefix of `ids` holding at least `top_p`
    /// of their mass; leaves that prefix sorted at the front of `ids`.
    fn nucleus_len(&self, ids: &mut [usize], top_p: f64) -> usize {
        let n = ids.len();
        let target = top_p * ids.iter().map(|&i| self.probs[i]).sum::<f64>();
        let desc = |a: &usize, b: &usize| self.descending(*a, *b);
        let mut prefix = NUCLEUS_FIRST_PREFIX.min(n);
        loop {
            if prefix < n {
                ids.select_nth_unstable_by(prefix - 1, desc);
            }
            ids[..prefix].sort_unstable_by(desc);
            let mut mass = 0.0;
            for (j, &i) in ids[..prefix].iter().enumerate() {
                // Token j is kept while the mass before it is short of the target, so the
                // first token is always kept.
                if mass >= target {
                    return j;
                }
                mass += self.probs[i];
            }
            if mass >= target || prefix == n {
                return prefix;
            }
            prefix = (prefix * 4).min(n);
        }
    }
}

/// The host reference of [`super::select::apply_repetition_penalty`]: every logit of a token
/// in `seen` becomes `l / penalty` when positive, `l · penalty` otherwise (each token once,
/// however often it was seen).
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f64) {
    let mut done = vec![false; logits.len()];
    for &id in seen {
        let i = id as usize;
        if i < logits.len() && !done[i] {
            done[i] = true;
            let l = f64::from(logits[i]);
            logits[i] = if l > 0.0 { l / penalty } else { l * penalty } as f32;
        }
    }
}

/// The tokens `params` allows and their renormalized probabilities: one token with
/// probability 1 when greedy.
///
/// # Errors
/// [`SamplingError`] for an empty row or a non-finite logit.
pub fn candidates(
    logits: &[f32],
    params: &SamplingParams,
) -> Result<Vec<Candidate>, SamplingError> {
    let row = Scaled::new(logits, params.temperature)?;
    if params.is_greedy() {
        return Ok(vec![Candidate {
            id: row.argmax as u32,
            prob: 1.0,
        }]);
    }
    let kept = row.filter(params);
    let total: f64 = kept.iter().map(|&i| row.probs[i]).sum();
    Ok(kept
        .into_iter()
        .map(|i| Candidate {
            id: i as u32,
            prob: row.probs[i] / total,
        })
        .collect())
}

/// Chooses a token from one row of logits: the argmax when greedy, otherwise the token whose
/// cumulative renormalized probability first exceeds `u` (inverse-CDF draw over the survivors
/// of the filters in id order, `u` uniform in `[0, 1)`).
///
/// # Errors
/// [`SamplingError`] for an empty row or a non-finite logit.
pub fn sample_token(
    logits: &[f32],
    params: &SamplingParams,
    u: f64,
) -> Result<SampledToken, SamplingError> {
    let row = Scaled::new(logits, params.temperature)?;
    let id = if params.is_greedy() {
        row.argmax
    } else {
        let mut kept = row.filter(params);
        kept.sort_unstable();
        let total: f64 = kept.iter().map(|&i| row.probs[i]).sum();
        let target = u * total;
        let mut mass = 0.0;
        // Rounding can leave `target` at or above the summed mass: fall back to the last one.
        let mut chosen = kept[kept.len() - 1];
        for &i in &kept {
            mass += row.probs[i];
            if target < mass {
                chosen = i;
                break;
            }
        }
        chosen
    };
    Ok(SampledToken {
        id: id as u32,
        log_prob: row.log_prob(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams::default();
        f(&mut p);
        p
    }

    /// Logits whose softmax is exactly `probs` (up to rounding).
    fn logits_of(probs: &[f64]) -> Vec<f32> {
        probs.iter().map(|p| p.ln() as f32).collect()
    }

    fn ids(c: &[Candidate]) -> Vec<u32> {
        c.iter().map(|c| c.id).collect()
    }

    #[test]
    fn top_k_keeps_the_k_largest() {
        let logits = [0.5f32, 3.0, -1.0, 2.0, 2.5, 0.0, 1.0];
        let c = candidates(&logits, &params(|p| p.top_k = 3)).unwrap();
        assert_eq!(ids(&c), vec![1, 4, 3]);
        let z: f64 = [3.0f64, 2.5, 2.0].iter().map(|x| x.exp()).sum();
        for (cand, x) in c.iter().zip([3.0f64, 2.5, 2.0]) {
            assert!((cand.prob - x.exp() / z).abs() < 1e-6);
        }
        // k at or above the vocabulary keeps everything.
        let all = candidates(&logits, &params(|p| p.top_k = 50)).unwrap();
        assert_eq!(all.len(), logits.len());
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        let logits = logits_of(&[0.1, 0.45, 0.05, 0.3, 0.1]);
        // 0.45 < 0.6 <= 0.45 + 0.3: two tokens.
        let c = candidates(&logits, &params(|p| p.top_p = 0.6)).unwrap();
        assert_eq!(ids(&c), vec![1, 3]);
        assert!((c[0].prob - 0.45 / 0.75).abs() < 1e-6);
        // A mass the first token already holds keeps one token.
        let one = candidates(&logits, &params(|p| p.top_p = 0.4)).unwrap();
        assert_eq!(ids(&one), vec![1]);
        // 0.9 needs 0.45 + 0.3 + 0.1 + 0.1 = 0.95; the tie at 0.1 keeps both.
        let four = candidates(&logits, &params(|p| p.top_p = 0.9)).unwrap();
        assert_eq!(ids(&four), vec![1, 3, 0, 4]);
    }

    #[test]
    fn top_p_over_a_large_vocabulary_grows_its_prefix() {
        // 1000 tokens with decreasing probabilities; the nucleus needs more than 64 of them.
        let raw: Vec<f64> = (0..1000).map(|i| 1.0 / (1.0 + i as f64)).collect();
        let total: f64 = raw.iter().sum();
        let probs: Vec<f64> = raw.iter().map(|p| p / total).collect();
        let mut order: Vec<usize> = (0..1000).collect();
        // Shuffle ids so that the probabilities are not already in id order.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for i in (1..1000).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut shuffled = vec![0.0; 1000];
        for (rank, &id) in order.iter().enumerate() {
            shuffled[id] = probs[rank];
        }
        let top_p = 0.8;
        let mut mass = 0.0;
        let want = probs
            .iter()
            .take_while(|&&p| {
                let keep = mass < top_p;
                mass += p;
                keep
            })
            .count();
        assert!(
            want > 64,
            "test needs a nucleus wider than the first prefix"
        );
        let c = candidates(&logits_of(&shuffled), &params(|p| p.top_p = top_p)).unwrap();
        assert_eq!(
            ids(&c),
            order[..want].iter().map(|&i| i as u32).collect::<Vec<_>>()
        );
    }

    #[test]
    fn top_p_applies_to_what_top_k_kept() {
        let logits = logits_of(&[0.4, 0.3, 0.2, 0.1]);
        // Renormalized over the top-2 set, 0.4 / 0.7 > 0.5 already: one token (over the full
        // distribution 0.4 < 0.5 would have kept two).
        let c = candidates(
            &logits,
            &params(|p| {
                p.top_k = 2;
                p.top_p = 0.5;
            }),
        )
        .unwrap();
        assert_eq!(ids(&c), vec![0]);
    }

    #[test]
    fn min_p_drops_tokens_below_the_threshold() {
        let logits = logits_of(&[0.5, 0.2, 0.05, 0.25]);
        // threshold 0.45 * 0.5 = 0.225: keeps 0.5 and 0.25.
        let c = candidates(&logits, &params(|p| p.min_p = 0.45)).unwrap();
        assert_eq!(ids(&c), vec![0, 3]);
        assert!((c[0].prob - 0.5 / 0.75).abs() < 1e-6);
        // A high threshold still keeps the most likely token.
        let one = candidates(&logits, &params(|p| p.min_p = 0.99)).unwrap();
        assert_eq!(ids(&one), vec![0]);
    }

    #[test]
    fn temperature_sharpens_and_zero_is_argmax() {
        let logits = [1.0f32, 2.0, 0.0];
        let at = |t: f64| candidates(&logits, &params(|p| p.temperature = t)).unwrap();
        let hot = at(2.0);
        let cold = at(0.5);
        assert!(cold[1].prob > hot[1].prob);
        let z: f64 = [0.5f64, 1.0, 0.0].iter().map(|x| x.exp()).sum();
        assert!((hot[1].prob - 1f64.exp() / z).abs() < 1e-9);
        assert_eq!(ids(&at(0.0)), vec![1]);
        let greedy = sample_token(&logits, &SamplingParams::greedy(1), 0.99).unwrap();
        assert_eq!(greedy.id, 1);
        let lse = (1f64.exp() + 2f64.exp() + 1.0).ln();
        assert!((greedy.log_prob - (2.0 - lse)).abs() < 1e-12);
    }

    #[test]
    fn log_prob_is_over_the_full_vocabulary_before_filtering() {
        let logits = [1.0f32, 2.0, 0.0, 1.5];
        let p = params(|p| {
            p.temperature = 0.7;
            p.top_k = 1;
        });
        let t = sample_token(&logits, &p, 0.3).unwrap();
        assert_eq!(t.id, 1);
        let scaled: Vec<f64> = logits.iter().map(|&x| f64::from(x) / 0.7).collect();
        let lse = scaled.iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!((t.log_prob - (scaled[1] - lse)).abs() < 1e-12);
    }

    #[test]
    fn inverse_cdf_draw_walks_the_survivors() {
        let logits = logits_of(&[0.25, 0.5, 0.25]);
        let draw = |u: f64| {
            sample_token(&logits, &SamplingParams::default(), u)
                .unwrap()
                .id
        };
        assert_eq!(draw(0.0), 0);
        assert_eq!(draw(0.2), 0);
        assert_eq!(draw(0.3), 1);
        assert_eq!(draw(0.74), 1);
        assert_eq!(draw(0.8), 2);
        assert_eq!(draw(1.0 - 1e-12), 2);
    }

    /// 20k draws at a fixed seed: each token's count lies within 3 standard deviations
    /// (sqrt(n·p·(1−p))) of n·p. Seeded, so the outcome is fixed; a sampler that drew from
    /// the wrong distribution (e.g. without the temperature, or off by one in the CDF walk)
    /// misses by tens of sigmas.
    #[test]
    fn empirical_frequencies_match_the_distribution() {
        let logits = [0.3f32, -1.2, 2.0, 0.9, 0.0];
        let p = params(|p| p.temperature = 0.8);
        let probs: Vec<f64> = candidates(&logits, &p)
            .unwrap()
            .iter()
            .map(|c| c.prob)
            .collect();
        let n = 20_000;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut counts = [0usize; 5];
        for _ in 0..n {
            counts[sample_token(&logits, &p, rng.random()).unwrap().id as usize] += 1;
        }
        for (i, (&c, &q)) in counts.iter().zip(&probs).enumerate() {
            let mean = n as f64 * q;
            let sigma = (n as f64 * q * (1.0 - q)).sqrt();
            assert!(
                (c as f64 - mean).abs() <= 3.0 * sigma,
                "token {i}: {c} draws, expected {mean:.0} ± {sigma:.0}"
            );
        }
    }

    #[test]
    fn bad_rows_are_errors() {
        let p = SamplingParams::default();
        assert_eq!(sample_token(&[], &p, 0.5), Err(SamplingError::Empty));
        assert!(matches!(
            sample_token(&[0.0, f32::NAN], &p, 0.5),
            Err(SamplingError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            candidates(&[f32::INFINITY], &p),
            Err(SamplingError::NonFinite { index: 0, .. })
        ));
    }
}
