//! What a LoRA adapter set looks like: rank, scale, dropout and which projections it adapts.

use serde::{Deserialize, Serialize};

use super::error::LoraError;
use crate::arch::Projection;

/// The projections a LoRA adapter can target, by their Hugging Face module names (PEFT's
/// `target_modules` vocabulary for Llama / Qwen models).
pub const TARGET_MODULES: [&str; 7] = [
    Projection::Q.name(),
    Projection::K.name(),
    Projection::V.name(),
    Projection::O.name(),
    Projection::Gate.name(),
    Projection::Up.name(),
    Projection::Down.name(),
];

/// LoRA hyper-parameters, the fields PEFT's `LoraConfig` calls `r`, `lora_alpha`,
/// `lora_dropout` and `target_modules`.
///
/// Each targeted projection `W` becomes `y = W x + (alpha / rank) · B(A(dropout(x)))` with
/// `A: in → rank` (Kaiming-uniform, like PEFT) and `B: rank → out` (zeros), so a fresh adapter
/// set leaves the model unchanged.
///
/// Read from RON or JSON with every field optional (`#[serde(default)]`); a misspelled field
/// is an error. Call [`LoraConfig::validate`] before use ([`LoraSet::new`](super::LoraSet::new)
/// does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update `A·B` (PEFT `r`). Default 8.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank` (PEFT `lora_alpha`).
    /// Default 16.
    pub alpha: f64,
    /// Dropout probability on the adapter input while training (PEFT `lora_dropout`); it is
    /// a no-op on a backend without autodiff. Default 0.
    pub dropout: f64,
    /// Module names to adapt, a subset of [`TARGET_MODULES`] (PEFT `target_modules`).
    /// Default: all seven projections.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: TARGET_MODULES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl LoraConfig {
    /// The factor `alpha / rank` applied to the adapter output.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether the projection called `name` (`q_proj`, ...) is adapted.
    pub fn targets(&self, name: &str) -> bool {
        self.target_modules.iter().any(|t| t == name)
    }

    /// Checks the values, quoting the field and the bad value.
    ///
    /// # Errors
    /// [`LoraError::InvalidConfig`] when `rank` is 0, `alpha` is not a finite positive
    /// number, `dropout` is outside `[0, 1)`, `target_modules` is empty, repeats a name or
    /// names a module that is not one of [`TARGET_MODULES`].
    pub fn validate(&self) -> Result<(), LoraError> {
        let invalid = |field: &'static str, value: String, reason: String| {
            Err(LoraError::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        if self.rank == 0 {
            return invalid("rank", "0".into(), "the rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return invalid(
                "alpha",
                self.alpha.to_string(),
                "must be a finite positive number".into(),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid(
                "dropout",
                self.dropout.to_string(),
                "must be in [0, 1)".into(),
            );
        }
        if self.target_modules.is_empty() {
            return invalid(
                "target_modules",
                "[]".into(),
                format!("name at least one of {}", TARGET_MODULES.join(", ")),
            );
        }
        for (i, name) in self.target_modules.iter().enumerate() {
            if !TARGET_MODULES.contains(&name.as_str()) {
                return invalid(
                    "target_modules",
                    format!("{name:?}"),
                    format!("unknown module; valid: {}", TARGET_MODULES.join(", ")),
                );
            }
            if self.target_modules[..i].contains(name) {
                return invalid("target_modules", format!("{name:?}"), "listed twice".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_rank_8_alpha_16_all_projections() {
        let c = LoraConfig::default();
        assert_eq!((c.rank, c.alpha, c.dropout), (8, 16.0, 0.0));
        assert_eq!(c.target_modules, TARGET_MODULES);
        assert_eq!(c.scale(), 2.0);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_target_is_rejected_listing_the_valid_ones() {
        let c = LoraConfig {
            target_modules: vec!["q_proj".into(), "qkv_proj".into()],
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("target_modules") && err.contains("qkv_proj"),
            "{err}"
        );
        assert!(
            err.contains("gate_proj") && err.contains("down_proj"),
            "{err}"
        );
    }

    #[test]
    fn bad_numbers_name_their_field() {
        for (c, field) in [
            (
                LoraConfig {
                    rank: 0,
                    ..Default::default()
                },
                "rank",
            ),
            (
                LoraConfig {
                    alpha: f64::NAN,
                    ..Default::default()
                },
                "alpha",
            ),
            (
                LoraConfig {
                    dropout: 1.0,
                    ..Default::default()
                },
                "dropout",
            ),
            (
                LoraConfig {
                    target_modules: vec![],
                    ..Default::default()
                },
                "target_modules",
            ),
            (
                LoraConfig {
                    target_modules: vec!["v_proj".into(), "v_proj".into()],
                    ..Default::default()
                },
                "target_modules",
            ),
        ] {
            let err = c.validate().unwrap_err();
            assert!(
                matches!(&err, LoraError::InvalidConfig { field: f, .. } if *f == field),
                "{err}"
            );
        }
    }

    #[test]
    fn json_fields_default_and_typos_fail() {
        let c: LoraConfig = serde_json::from_str(r#"{"rank": 4}"#).unwrap();
        assert_eq!((c.rank, c.alpha), (4, 16.0));
        let err = serde_json::from_str::<LoraConfig>(r#"{"rnak": 4}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rnak"), "{err}");
    }
}
