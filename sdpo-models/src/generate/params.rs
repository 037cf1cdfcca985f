//! Sampling knobs as data: [`SamplingParams`] and its validation.

use serde::{Deserialize, Serialize};

use super::GenerationError;

/// How tokens are drawn during generation.
///
/// The repetition penalty first changes the logits of tokens already in the row (prompt or
/// generated); then filters are applied in this order to the distribution
/// `softmax(logits / temperature)`: top-k, then top-p over what top-k kept, then min-p; the
/// survivors are renormalized and one token is drawn. Every filter keeps at least the most
/// likely token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy decoding (argmax). Default 1.0.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose mass is at least
    /// `top_p`, in `(0, 1]`; `1` turns it off. Default 1.0.
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens; `0` turns it off. Default 0.
    pub top_k: usize,
    /// Drop tokens whose probability is below `min_p` times the largest one, in `[0, 1)`; `0`
    /// turns it off. Default 0.0.
    pub min_p: f64,
    /// Most tokens generated per row (the stop token included). Default 256.
    pub max_new_tokens: usize,
    /// A row ends after it produces any of these ids (pass the tokenizer's eos ids). Default
    /// empty.
    pub stop_token_ids: Vec<u32>,
    /// Repetition penalty (transformers' `repetition_penalty`, CTRL's rule): the logit `l` of
    /// every token already in the row becomes `l / penalty` when positive, `l · penalty` when
    /// negative; `> 1` discourages repeats, `1` turns it off. Reported log-probs are those of
    /// the penalized distribution (the one drawn from). Default 1.0.
    pub repetition_penalty: f64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            max_new_tokens: 256,
            stop_token_ids: Vec::new(),
            repetition_penalty: 1.0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (temperature 0) of at most `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_new_tokens,
            ..Self::default()
        }
    }

    /// Whether tokens are chosen by argmax rather than drawn.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The temperature to score generated tokens with so that scoring matches the log-probs
    /// [`generate`](super::generate) reports: `None` for greedy decoding (plain
    /// log-softmax), `Some(temperature)` otherwise.
    pub fn scoring_temperature(&self) -> Option<f64> {
        (!self.is_greedy()).then_some(self.temperature)
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`GenerationError::InvalidParam`] naming the first bad field, its value and the
    /// accepted range.
    pub fn validate(&self) -> Result<(), GenerationError> {
        let bad = |field: &'static str, value: String, expected: &'static str| {
            Err(GenerationError::InvalidParam {
                field,
                value,
                expected,
            })
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "temperature",
                self.temperature.to_string(),
                "a finite number >= 0 (0 = greedy)",
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p.to_string(), "a number in (0, 1]");
        }
        if !(self.min_p >= 0.0 && self.min_p < 1.0) {
            return bad("min_p", self.min_p.to_string(), "a number in [0, 1)");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(
                "repetition_penalty",
                self.repetition_penalty.to_string(),
                "a finite number > 0 (1 = off)",
            );
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "0".to_string(), "at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(p: &SamplingParams) -> Option<(&'static str, String)> {
        match p.validate() {
            Ok(()) => None,
            Err(GenerationError::InvalidParam { field, value, .. }) => Some((field, value)),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let p = SamplingParams::default();
        assert_eq!(field_of(&p), None);
        assert_eq!(
            (p.temperature, p.top_p, p.top_k, p.min_p, p.max_new_tokens),
            (1.0, 1.0, 0, 0.0, 256)
        );
        assert!(p.stop_token_ids.is_empty());
        assert!(!p.is_greedy());
        assert!(SamplingParams::greedy(3).is_greedy());
    }

    #[test]
    fn validation_names_the_field_and_value() {
        let with = |f: fn(&mut SamplingParams)| {
            let mut p = SamplingParams::default();
            f(&mut p);
            field_of(&p)
        };
        let s = |f: &'static str, v: &str| Some((f, v.to_string()));
        assert_eq!(with(|p| p.temperature = -0.5), s("temperature", "-0.5"));
        assert_eq!(with(|p| p.temperature = f64::NAN), s("temperature", "NaN"));
        assert_eq!(with(|p| p.top_p = 0.0), s("top_p", "0"));
        assert_eq!(with(|p| p.top_p = 1.5), s("top_p", "1.5"));
        assert_eq!(with(|p| p.min_p = 1.0), s("min_p", "1"));
        assert_eq!(with(|p| p.min_p = -0.1), s("min_p", "-0.1"));
        assert_eq!(with(|p| p.max_new_tokens = 0), s("max_new_tokens", "0"));
        assert_eq!(with(|p| p.temperature = 0.0), None);
        assert_eq!(with(|p| p.top_p = 1.0), None);
        let msg = SamplingParams {
            top_p: 2.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(msg.contains("top_p") && msg.contains('2'), "{msg}");
    }

    #[test]
    fn serde_fills_defaults_and_rejects_unknown_fields() {
        let p: SamplingParams =
            serde_json::from_str(r#"{"temperature": 0.7, "stop_token_ids": [2]}"#).unwrap();
        assert_eq!(p.temperature, 0.7);
        assert_eq!(p.stop_token_ids, vec![2]);
        assert_eq!(p.max_new_tokens, 256);
        let err = serde_json::from_str::<SamplingParams>(r#"{"top_q": 0.5}"#).unwrap_err();
        assert!(err.to_string().contains("top_q"), "{err}");
        assert_eq!(p.scoring_temperature(), Some(0.7));
        assert_eq!(SamplingParams::greedy(1).scoring_temperature(), None);
    }
}
