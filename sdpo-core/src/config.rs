//! [`SdpoConfig`]: every knob of the algorithm, its default and its meaning.
//!
//! Field names follow the reference (the authors' verl fork,
//! `actor_rollout_ref.actor.self_distillation.*` and `policy_loss.*`), so a
//! reference YAML translates line by line. Defaults are the reference's
//! experiment defaults. The config is plain serde: RON files are read with
//! [`SdpoConfig::from_ron_str`] / [`SdpoConfig::from_ron_file`], unknown fields
//! are rejected with their name and position.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::error::ConfigError;
use crate::template::Template;

/// Declares an enum that (de)serializes as one of a fixed set of strings (the
/// reference's spellings, e.g. `"trust-region"`, `"token-mean"`), so RON files
/// read `teacher_mode: "ema"` and an unknown value lists the allowed ones.
macro_rules! string_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const VARIANTS: &'static [&'static str] = &[$($text),+];

            /// The reference's spelling of the value.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        "unknown {} `{}`, expected one of: {}",
                        stringify!($name), other, Self::VARIANTS.join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// How the teacher that scores the student's answers is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TeacherMode {
    /// Exponential moving average of the student's weights (the reference's
    /// default): `teacher ← (1 − rate)·teacher + rate·student`.
    #[default]
    Ema,
    /// The initial weights, never updated.
    Frozen,
    /// The current student itself (no extra weights).
    Live,
    /// Teacher logits = `lerp(reference logits, student logits, rate)`, with the
    /// reference being the initial weights.
    TrustRegion,
    /// Student and teacher are two LoRA adapter sets over one frozen base; the
    /// EMA touches only the adapter weights.
    LoraEma,
}

/// How a per-token loss matrix is reduced to a scalar (the reference's
/// `loss_agg_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LossAggMode {
    /// Sum over all unmasked tokens divided by their count (at least 1).
    #[default]
    TokenMean,
    /// Per sequence: sum over its tokens; then the mean over sequences with at
    /// least one unmasked token.
    SeqMeanTokenSum,
    /// Per sequence: mean over its tokens; then the mean over sequences with at
    /// least one unmasked token.
    SeqMeanTokenMean,
    /// Sum over all unmasked tokens divided by the padded response length (Dr.
    /// GRPO's constant normalizer).
    SeqMeanTokenSumNorm,
}

string_enum!(TeacherMode {
    Ema => "ema",
    Frozen => "frozen",
    Live => "live",
    TrustRegion => "trust-region",
    LoraEma => "lora-ema",
});

string_enum!(LossAggMode {
    TokenMean => "token-mean",
    SeqMeanTokenSum => "seq-mean-token-sum",
    SeqMeanTokenMean => "seq-mean-token-mean",
    SeqMeanTokenSumNorm => "seq-mean-token-sum-norm",
});

/// The level of the rollout importance-sampling correction (verl's
/// `rollout_is_level`): how the ratio between the policy being trained and the
/// policy that generated the rollout is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RolloutIsLevel {
    /// No correction.
    None,
    /// One weight per token: `exp(log π_old − log π_rollout)`.
    #[default]
    Token,
    /// One weight per sequence, the product of its token ratios, on every token.
    Sequence,
}

string_enum!(RolloutIsLevel {
    None => "none",
    Token => "token",
    Sequence => "sequence",
});

/// Rollout importance sampling (verl's `rollout_is`, truncated mode): the
/// losses' per-token terms are multiplied by `min(ratio, threshold)`, detached.
/// It corrects for the difference between the log-probs the rollout was drawn
/// with (the KV-cache decode) and those the trainer computes (a full forward),
/// and, with several mini-batches, for nothing else: both are the same weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutIs {
    /// `"token"` (default, as verl's SDPO recipe), `"sequence"` or `"none"`.
    pub level: RolloutIsLevel,
    /// Upper bound of a weight (verl's `rollout_is_threshold`). Default 2.0.
    pub threshold: f64,
}

impl Default for RolloutIs {
    fn default() -> Self {
        Self {
            level: RolloutIsLevel::Token,
            threshold: 2.0,
        }
    }
}

/// What to do when a teacher prompt is longer than `max_reprompt_len` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepromptTruncation {
    /// Keep the last `max_reprompt_len` tokens.
    Left,
    /// Keep the first `max_reprompt_len` tokens (the reference's default).
    #[default]
    Right,
    /// Fail the step with an error naming the sample.
    Error,
}

string_enum!(RepromptTruncation {
    Left => "left",
    Right => "right",
    Error => "error",
});

/// The distillation target, derived from `full_logit_distillation`,
/// `distillation_topk` and `distillation_add_tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistillationSupport {
    /// The student's top-k tokens plus one bucket for the remaining mass.
    TopKTail(usize),
    /// The student's top-k tokens, both distributions renormalized over them.
    TopKRenormalized(usize),
    /// The whole vocabulary.
    FullVocabulary,
    /// Only the sampled token (reverse KL as a policy-gradient estimator).
    SampledToken,
}

/// The divergence between student and teacher, derived from `alpha`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Divergence {
    /// `alpha = 0`: `KL(teacher ‖ student)`.
    ForwardKl,
    /// `alpha = 1`: `KL(student ‖ teacher)`.
    ReverseKl,
    /// `0 < alpha < 1`: the generalized Jensen–Shannon divergence through the
    /// mixture `(1 − alpha)·p_s + alpha·p_t`.
    JensenShannon(f64),
}

/// Every knob of SDPO, serde + RON. `Default` is the reference's defaults.
///
/// Sections: distillation loss, teacher, reprompting, policy (GRPO) side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdpoConfig {
    // ---- distillation loss -------------------------------------------------
    /// Divergence interpolation: 0 = forward KL `KL(teacher‖student)`, 1 =
    /// reverse KL `KL(student‖teacher)`, in between = generalized Jensen–Shannon.
    /// Default 0.5. Reference: `self_distillation.alpha`.
    pub alpha: f64,
    /// Distill over a distribution of tokens (top-k or full vocabulary) rather
    /// than only the sampled token. Default `true`. Reference:
    /// `self_distillation.full_logit_distillation`. `false` requires `alpha = 1`.
    pub full_logit_distillation: bool,
    /// Restrict full-logit distillation to the student's top-k tokens; `None`
    /// uses the whole vocabulary. Default `Some(100)`. Reference:
    /// `self_distillation.distillation_topk`.
    pub distillation_topk: Option<usize>,
    /// With top-k: add a tail bucket holding `1 − Σ top-k probability`
    /// (otherwise both distributions are renormalized over the top-k). Default
    /// `true`. Reference: `self_distillation.distillation_add_tail`.
    pub distillation_add_tail: bool,
    /// Clip of the per-token importance weight `exp(logp_student − logp_old)`
    /// (detached, log-ratio clamped to ±20); `None` disables it. Default
    /// `Some(2.0)`. Reference: `self_distillation.is_clip`.
    pub is_clip: Option<f64>,
    /// Reduction of the per-token loss to a scalar. Default `token-mean`.
    /// Reference: `actor.loss_agg_mode`.
    pub loss_agg_mode: LossAggMode,
    /// λ in `loss = (1 − λ)·policy loss + λ·distillation loss`: 1 is pure SDPO,
    /// 0 is GRPO. Default 1.0. (Not in the reference, which switches by
    /// `policy_loss.loss_mode`.)
    pub distillation_weight: f64,
    /// Compute the distillation loss with the backend's fused kernels where it
    /// has them (NdArray and Flex on `f32`: see `loss::fused`); `false` runs the
    /// composite tensor code, the reference the kernels are tested against.
    /// Default `true`. (Not in the reference.)
    pub fused_loss: bool,

    // ---- teacher -----------------------------------------------------------
    /// Where the teacher's weights come from. Default `ema`. Reference:
    /// `self_distillation.teacher_regularization` (`ema` | `trust-region`).
    #[serde(alias = "teacher_regularization")]
    pub teacher_mode: TeacherMode,
    /// EMA rate for `ema` / `lora-ema`, or the mixing coefficient for
    /// `trust-region`. Default 0.05. Reference:
    /// `self_distillation.teacher_update_rate`.
    pub teacher_update_rate: f64,
    /// Update the EMA teacher once every this many training steps. Default 1.
    pub teacher_sync_steps: usize,

    // ---- reprompting -------------------------------------------------------
    /// A sample with sequence reward `>=` this is a success. Default 1.0.
    /// Reference: `self_distillation.success_reward_threshold`.
    pub success_reward_threshold: f64,
    /// Never show a sample its own success as the demonstration. Default `true`.
    /// Reference: `self_distillation.dont_reprompt_on_self_success`.
    pub dont_reprompt_on_self_success: bool,
    /// Strip `<think>…</think>` blocks from demonstrations. Default `true`.
    /// Reference: `self_distillation.remove_thinking_from_demonstration`.
    pub remove_thinking_from_demonstration: bool,
    /// Put the verifier's feedback text into the teacher prompt. Default `true`.
    /// Reference: `self_distillation.include_environment_feedback`.
    pub include_environment_feedback: bool,
    /// Use feedback only for samples without a demonstration. Default `true`.
    /// Reference: `self_distillation.environment_feedback_only_without_solution`.
    pub environment_feedback_only_without_solution: bool,
    /// Maximum teacher-prompt length in tokens. Default 10240. Reference:
    /// `self_distillation.max_reprompt_len`.
    pub max_reprompt_len: usize,
    /// What to do with a longer teacher prompt. Default `right`. Reference:
    /// `self_distillation.reprompt_truncation`.
    pub reprompt_truncation: RepromptTruncation,
    /// The teacher's user message; placeholders `{prompt}` (required),
    /// `{solution}` (required) and `{feedback}` (required when feedback is on).
    /// Reference: `self_distillation.reprompt_template`.
    pub reprompt_template: String,
    /// The demonstration section; placeholder `{successful_previous_attempt}`.
    /// Reference: `self_distillation.solution_template`.
    pub solution_template: String,
    /// The feedback section; placeholder `{feedback_raw}`. Reference:
    /// `self_distillation.feedback_template`.
    pub feedback_template: String,

    // ---- policy (GRPO) side -------------------------------------------------
    /// Lower PPO clip: the ratio is clipped at `1 − clip_ratio_low`. Default
    /// 0.2. Reference: `actor.clip_ratio_low`.
    pub clip_ratio_low: f64,
    /// Upper PPO clip: the ratio is clipped at `1 + clip_ratio_high`. Default
    /// 0.2 (0.28 is DAPO's clip-higher). Reference: `actor.clip_ratio_high`.
    pub clip_ratio_high: f64,
    /// Dual-clip bound for negative advantages (must be > 1). Default 3.0.
    /// Reference: `actor.clip_ratio_c`.
    pub clip_ratio_c: f64,
    /// Divide group-centred advantages by the group's standard deviation.
    /// Default `true`. Reference: `algorithm.norm_adv_by_std_in_grpo`.
    pub norm_adv_by_std_in_grpo: bool,
}

/// The reference's default reprompt template.
pub const DEFAULT_REPROMPT_TEMPLATE: &str =
    "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n";
/// The reference's default solution template.
pub const DEFAULT_SOLUTION_TEMPLATE: &str =
    "\nCorrect solution:\n\n{successful_previous_attempt}\n\n";
/// The reference's default feedback template.
pub const DEFAULT_FEEDBACK_TEMPLATE: &str =
    "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback_raw}\n\n";

impl Default for SdpoConfig {
    fn default() -> Self {
        Self {
            alpha: 0.5,
            full_logit_distillation: true,
            distillation_topk: Some(100),
            distillation_add_tail: true,
            is_clip: Some(2.0),
            loss_agg_mode: LossAggMode::TokenMean,
            distillation_weight: 1.0,
            fused_loss: true,
            teacher_mode: TeacherMode::Ema,
            teacher_update_rate: 0.05,
            teacher_sync_steps: 1,
            success_reward_threshold: 1.0,
            dont_reprompt_on_self_success: true,
            remove_thinking_from_demonstration: true,
            include_environment_feedback: true,
            environment_feedback_only_without_solution: true,
            max_reprompt_len: 10240,
            reprompt_truncation: RepromptTruncation::Right,
            reprompt_template: DEFAULT_REPROMPT_TEMPLATE.to_string(),
            solution_template: DEFAULT_SOLUTION_TEMPLATE.to_string(),
            feedback_template: DEFAULT_FEEDBACK_TEMPLATE.to_string(),
            clip_ratio_low: 0.2,
            clip_ratio_high: 0.2,
            clip_ratio_c: 3.0,
            norm_adv_by_std_in_grpo: true,
        }
    }
}

/// The three parsed reprompt templates of a config.
#[derive(Debug, Clone)]
pub struct Templates {
    /// `reprompt_template` (`{prompt}`, `{solution}`, `{feedback}`).
    pub reprompt: Template,
    /// `solution_template` (`{successful_previous_attempt}`).
    pub solution: Template,
    /// `feedback_template` (`{feedback_raw}`).
    pub feedback: Template,
}

impl SdpoConfig {
    /// Checks every field and the fields against each other.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        unit_interval("alpha", self.alpha)?;
        unit_interval("distillation_weight", self.distillation_weight)?;
        unit_interval("teacher_update_rate", self.teacher_update_rate)?;
        if !self.full_logit_distillation && self.alpha != 1.0 {
            return Err(invalid(
                "alpha",
                self.alpha,
                "sampled-token distillation (full_logit_distillation = false) supports only reverse KL: set alpha = 1.0",
            ));
        }
        if self.distillation_topk == Some(0) {
            return Err(invalid(
                "distillation_topk",
                "Some(0)",
                "must be a positive number of tokens, or None for the full vocabulary",
            ));
        }
        if let Some(c) = self.is_clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(invalid(
                    "is_clip",
                    c,
                    "must be a positive finite number, or None to disable importance weighting",
                ));
            }
        }
        if self.teacher_sync_steps == 0 {
            return Err(invalid("teacher_sync_steps", 0, "must be at least 1"));
        }
        if !(self.success_reward_threshold.is_finite()) {
            return Err(invalid(
                "success_reward_threshold",
                self.success_reward_threshold,
                "must be a finite number",
            ));
        }
        if self.max_reprompt_len == 0 {
            return Err(invalid("max_reprompt_len", 0, "must be at least 1 token"));
        }
        for (field, v) in [
            ("clip_ratio_low", self.clip_ratio_low),
            ("clip_ratio_high", self.clip_ratio_high),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(field, v, "must be a non-negative finite number"));
            }
        }
        if self.clip_ratio_low >= 1.0 {
            return Err(invalid(
                "clip_ratio_low",
                self.clip_ratio_low,
                "must be below 1 (the ratio is clipped at 1 - clip_ratio_low)",
            ));
        }
        if !(self.clip_ratio_c.is_finite() && self.clip_ratio_c > 1.0) {
            return Err(invalid(
                "clip_ratio_c",
                self.clip_ratio_c,
                "the dual-clip bound must be greater than 1",
            ));
        }
        self.templates().map(|_| ())
    }

    /// Parses the three templates, checking their placeholders.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown or missing placeholder.
    pub fn templates(&self) -> Result<Templates, ConfigError> {
        let reprompt = Template::parse(
            "reprompt_template",
            &self.reprompt_template,
            &["prompt", "solution", "feedback"],
        )?;
        let mut required = vec!["prompt", "solution"];
        if self.include_environment_feedback {
            required.push("feedback");
        }
        for name in required {
            if !reprompt.has(name) {
                return Err(ConfigError::Invalid {
                    field: "reprompt_template",
                    value: self.reprompt_template.clone(),
                    reason: format!("missing the `{{{name}}}` placeholder"),
                });
            }
        }
        let solution = required_placeholder(
            "solution_template",
            &self.solution_template,
            "successful_previous_attempt",
        )?;
        let feedback =
            required_placeholder("feedback_template", &self.feedback_template, "feedback_raw")?;
        Ok(Templates {
            reprompt,
            solution,
            feedback,
        })
    }

    /// The distillation target these settings select.
    pub fn support(&self) -> DistillationSupport {
        match (
            self.full_logit_distillation,
            self.distillation_topk,
            self.distillation_add_tail,
        ) {
            (false, _, _) => DistillationSupport::SampledToken,
            (true, None, _) => DistillationSupport::FullVocabulary,
            (true, Some(k), true) => DistillationSupport::TopKTail(k),
            (true, Some(k), false) => DistillationSupport::TopKRenormalized(k),
        }
    }

    /// The divergence `alpha` selects.
    pub fn divergence(&self) -> Divergence {
        if self.alpha == 0.0 {
            Divergence::ForwardKl
        } else if self.alpha == 1.0 {
            Divergence::ReverseKl
        } else {
            Divergence::JensenShannon(self.alpha)
        }
    }

    /// Parses a RON document (`source_name` appears in errors) and validates it.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with line and column for syntax errors and unknown
    /// fields; [`ConfigError::Invalid`] for values that fail [`Self::validate`].
    pub fn from_ron_str_named(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let cfg: Self = parse_ron(text, source_name)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`Self::from_ron_str_named`] with the source called `<string>`.
    ///
    /// # Errors
    /// As [`Self::from_ron_str_named`].
    pub fn from_ron_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_ron_str_named(text, "<string>")
    }

    /// Reads, parses and validates a RON file.
    ///
    /// # Errors
    /// [`ConfigError::Io`] if the file cannot be read, otherwise as
    /// [`Self::from_ron_str_named`].
    pub fn from_ron_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let (text, name) = read_config_file(path.as_ref())?;
        Self::from_ron_str_named(&text, &name)
    }

    /// The config as pretty RON (what a run folder stores).
    pub fn to_ron_string(&self) -> String {
        to_pretty_ron(self)
    }
}

/// Reads a config file's text; returns it with the name to use in parse errors.
///
/// # Errors
/// [`ConfigError::Io`] naming the path.
pub fn read_config_file(path: &Path) -> Result<(String, String), ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: name.clone(),
        source,
    })?;
    Ok((text, name))
}

/// Any serde value as pretty RON (what run folders store).
pub fn to_pretty_ron<T: Serialize>(value: &T) -> String {
    // Serializing plain data with derived impls cannot fail.
    ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default())
        .unwrap_or_else(|e| format!("/* cannot serialize config: {e} */"))
}

/// Parses any serde type from RON, mapping errors to [`ConfigError::Parse`]
/// with line and column. Shared by every RON-configured type of the workspace.
///
/// # Errors
/// [`ConfigError::Parse`].
pub fn parse_ron<T: serde::de::DeserializeOwned>(
    text: &str,
    source_name: &str,
) -> Result<T, ConfigError> {
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str(text)
        .map_err(|e: ron::error::SpannedError| ConfigError::Parse {
            source_name: source_name.to_string(),
            line: e.position.line,
            column: e.position.col,
            message: e.code.to_string(),
        })
}

fn invalid(field: &'static str, value: impl std::fmt::Debug, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: format!("{value:?}"),
        reason: reason.to_string(),
    }
}

fn unit_interval(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(field, v, "must lie in [0, 1]"))
    }
}

fn required_placeholder(
    field: &'static str,
    text: &str,
    name: &'static str,
) -> Result<Template, ConfigError> {
    let t = Template::parse(field, text, &[name])?;
    if !t.has(name) {
        return Err(ConfigError::Invalid {
            field,
            value: text.to_string(),
            reason: format!("missing the `{{{name}}}` placeholder"),
        });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_field(cfg: SdpoConfig) -> &'static str {
        match cfg.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn default_is_valid_and_matches_the_reference() {
        let c = SdpoConfig::default();
        c.validate().unwrap();
        assert_eq!(c.alpha, 0.5);
        assert_eq!(c.distillation_topk, Some(100));
        assert_eq!(c.is_clip, Some(2.0));
        assert_eq!(c.teacher_update_rate, 0.05);
        assert_eq!(c.max_reprompt_len, 10240);
        assert_eq!(c.support(), DistillationSupport::TopKTail(100));
        assert_eq!(c.divergence(), Divergence::JensenShannon(0.5));
    }

    #[test]
    fn validate_rejects_each_contradiction_by_field() {
        let d = SdpoConfig::default;
        assert_eq!(err_field(SdpoConfig { alpha: 1.5, ..d() }), "alpha");
        assert_eq!(err_field(SdpoConfig { alpha: -0.1, ..d() }), "alpha");
        assert_eq!(
            err_field(SdpoConfig {
                alpha: f64::NAN,
                ..d()
            }),
            "alpha"
        );
        assert_eq!(
            err_field(SdpoConfig {
                full_logit_distillation: false,
                alpha: 0.5,
                ..d()
            }),
            "alpha"
        );
        assert_eq!(
            err_field(SdpoConfig {
                distillation_topk: Some(0),
                ..d()
            }),
            "distillation_topk"
        );
        assert_eq!(
            err_field(SdpoConfig {
                is_clip: Some(0.0),
                ..d()
            }),
            "is_clip"
        );
        assert_eq!(
            err_field(SdpoConfig {
                is_clip: Some(-1.0),
                ..d()
            }),
            "is_clip"
        );
        assert_eq!(
            err_field(SdpoConfig {
                distillation_weight: 1.01,
                ..d()
            }),
            "distillation_weight"
        );
        assert_eq!(
            err_field(SdpoConfig {
                reprompt_template: "{solution}{feedback}".into(),
                ..d()
            }),
            "reprompt_template"
        );
        assert_eq!(
            err_field(SdpoConfig {
                reprompt_template: "{prompt}{solution}{feedback}{hint}".into(),
                ..d()
            }),
            "reprompt_template"
        );
        assert_eq!(
            err_field(SdpoConfig {
                solution_template: "no placeholder".into(),
                ..d()
            }),
            "solution_template"
        );
        assert_eq!(
            err_field(SdpoConfig {
                feedback_template: "{feedback}".into(),
                ..d()
            }),
            "feedback_template"
        );
        assert_eq!(
            err_field(SdpoConfig {
                teacher_sync_steps: 0,
                ..d()
            }),
            "teacher_sync_steps"
        );
        assert_eq!(
            err_field(SdpoConfig {
                clip_ratio_c: 1.0,
                ..d()
            }),
            "clip_ratio_c"
        );
        // Sampled-token reverse KL is fine.
        SdpoConfig {
            full_logit_distillation: false,
            alpha: 1.0,
            ..d()
        }
        .validate()
        .unwrap();
        // Without feedback, the reprompt template may omit `{feedback}`.
        SdpoConfig {
            include_environment_feedback: false,
            reprompt_template: "{prompt}{solution}".into(),
            ..d()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn error_message_quotes_field_and_value() {
        let msg = SdpoConfig {
            alpha: 2.5,
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(msg.contains("alpha") && msg.contains("2.5"), "{msg}");
    }

    #[test]
    fn ron_round_trip() {
        let c = SdpoConfig {
            alpha: 0.25,
            teacher_mode: TeacherMode::TrustRegion,
            ..Default::default()
        };
        let text = c.to_ron_string();
        assert_eq!(SdpoConfig::from_ron_str(&text).unwrap(), c);
    }

    #[test]
    fn ron_partial_uses_defaults_and_reference_alias() {
        let c = SdpoConfig::from_ron_str(
            "(alpha: 1.0, teacher_regularization: \"trust-region\", loss_agg_mode: \"seq-mean-token-mean\")",
        )
        .unwrap();
        assert_eq!(c.alpha, 1.0);
        assert_eq!(c.teacher_mode, TeacherMode::TrustRegion);
        assert_eq!(c.loss_agg_mode, LossAggMode::SeqMeanTokenMean);
        assert_eq!(c.distillation_topk, Some(100));
    }

    #[test]
    fn ron_misspelled_field_names_field_and_line() {
        let err = SdpoConfig::from_ron_str("(\n  alpha: 0.5,\n  alhpa: 0.2,\n)").unwrap_err();
        match &err {
            ConfigError::Parse { line, message, .. } => {
                assert_eq!(*line, 3, "{err}");
                assert!(message.contains("alhpa"), "{err}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn ron_unknown_enum_value_lists_the_allowed_ones() {
        let err = SdpoConfig::from_ron_str("(teacher_mode: \"emma\")")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("emma") && err.contains("trust-region"),
            "{err}"
        );
    }

    #[test]
    fn ron_invalid_value_is_rejected_after_parsing() {
        let err = SdpoConfig::from_ron_str("(is_clip: Some(-2.0))").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    field: "is_clip",
                    ..
                }
            ),
            "{err}"
        );
    }
}
