//! Rewards as configuration data (RON or JSON), built into [`Rewards`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::command::CommandReward;
use super::exact::ExactMatch;
use super::extract::Extract;
use super::numeric::NumericMatch;
use super::pattern::RegexMatch;
use super::weighted::Rewards;
use super::{Reward, RewardBuildError};

/// One weighted reward of a config.
///
/// In a RON config, a list of [`RewardConfig`]s:
///
/// ```ron
/// rewards: [
///     (reward: NumericMatch(field: "answer")),
///     (reward: Regex(pattern: r"\\boxed\{", feedback: Some("put the final answer in \\boxed{}")),
///      weight: 0.1, name: Some("format")),
///     (reward: Command(program: "python3", args: ["verify.py"], timeout_secs: 10.0)),
/// ]
/// ```
///
/// Every field but the variant's required ones (`pattern`, `program`) has a
/// default; unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardConfig {
    /// Which reward, with its options.
    pub reward: RewardSpec,
    /// Its weight in the sum. Default 1.0; must be finite (0 keeps only its feedback).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Its name in metrics and messages. Default: the kind's name
    /// (`exact_match`, `numeric_match`, `regex`, `command`); required to tell
    /// two rewards of one kind apart.
    #[serde(default)]
    pub name: Option<String>,
}

/// A built-in reward and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum RewardSpec {
    /// [`ExactMatch`]: the answer equals the row field.
    ExactMatch {
        /// Row field holding the expected answer. Default `"answer"`.
        #[serde(default = "default_field")]
        field: String,
        /// Where the answer is in the completion. Default `Whole`.
        #[serde(default)]
        extract: Extract,
        /// Ignore surrounding whitespace. Default `true`.
        #[serde(default = "default_true")]
        trim: bool,
        /// Ignore letter case. Default `false`.
        #[serde(default)]
        case_insensitive: bool,
    },
    /// [`NumericMatch`]: the answer's last number equals the row field within tolerance.
    NumericMatch {
        /// Row field holding the expected number. Default `"answer"`.
        #[serde(default = "default_field")]
        field: String,
        /// Where the answer is in the completion. Default `Auto`.
        #[serde(default = "default_numeric_extract")]
        extract: Extract,
        /// Absolute tolerance. Default 1e-6.
        #[serde(default = "default_abs_tol")]
        abs_tol: f64,
        /// Relative tolerance (of the expected value). Default 1e-9.
        #[serde(default = "default_rel_tol")]
        rel_tol: f64,
    },
    /// [`RegexMatch`]: the completion matches a pattern (score 1, else 0).
    Regex {
        /// The pattern (Rust `regex` syntax). Required.
        pattern: String,
        /// The whole completion must match. Default `false` (a match anywhere).
        #[serde(default)]
        full_match: bool,
        /// Feedback when it does not match. Default none.
        #[serde(default)]
        feedback: Option<String>,
    },
    /// [`CommandReward`]: an external program scores the completion.
    Command {
        /// The program (looked up on `PATH` when it has no `/`). Required.
        program: PathBuf,
        /// Its arguments. Default none.
        #[serde(default)]
        args: Vec<String>,
        /// Its working directory. Default: the trainer's.
        #[serde(default)]
        working_dir: Option<PathBuf>,
        /// Seconds before it is killed and the sample fails. Default 60.
        #[serde(default = "default_timeout_secs")]
        timeout_secs: f64,
        /// Extra environment variables. Default none.
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
}

fn default_weight() -> f64 {
    1.0
}
fn default_field() -> String {
    "answer".into()
}
fn default_true() -> bool {
    true
}
fn default_numeric_extract() -> Extract {
    Extract::Auto
}
fn default_abs_tol() -> f64 {
    NumericMatch::DEFAULT_ABS_TOL
}
fn default_rel_tol() -> f64 {
    NumericMatch::DEFAULT_REL_TOL
}
fn default_timeout_secs() -> f64 {
    60.0
}

impl RewardSpec {
    /// Builds the reward.
    ///
    /// # Errors
    /// [`RewardBuildError`] quoting the bad option: a regex that does not
    /// compile, a negative tolerance, a timeout that is not a positive number
    /// of seconds, an empty program.
    pub fn build(&self) -> Result<Box<dyn Reward>, RewardBuildError> {
        Ok(match self {
            RewardSpec::ExactMatch {
                field,
                extract,
                trim,
                case_insensitive,
            } => Box::new(
                ExactMatch::new(field.as_str())
                    .extract(extract.clone())
                    .trim(*trim)
                    .case_insensitive(*case_insensitive),
            ),
            RewardSpec::NumericMatch {
                field,
                extract,
                abs_tol,
                rel_tol,
            } => Box::new(
                NumericMatch::new(field.as_str())
                    .extract(extract.clone())
                    .tolerance(*abs_tol, *rel_tol)?,
            ),
            RewardSpec::Regex {
                pattern,
                full_match,
                feedback,
            } => {
                let mut reward = RegexMatch::new(pattern.as_str())?.full_match(*full_match);
                if let Some(text) = feedback {
                    reward = reward.feedback(text.as_str());
                }
                Box::new(reward)
            }
            RewardSpec::Command {
                program,
                args,
                working_dir,
                timeout_secs,
                env,
            } => {
                let timeout = Duration::try_from_secs_f64(*timeout_secs)
                    .ok()
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| RewardBuildError::Invalid {
                        reward: "command".into(),
                        field: "timeout_secs",
                        value: timeout_secs.to_string(),
                        reason: "the timeout must be a positive number of seconds",
                    })?;
                let mut reward =
                    CommandReward::new(program.clone(), timeout)?.args(args.iter().cloned());
                if let Some(dir) = working_dir {
                    reward = reward.working_dir(dir.clone());
                }
                for (name, value) in env {
                    reward = reward.env(name.as_str(), value.as_str());
                }
                Box::new(reward)
            }
        })
    }
}

impl RewardConfig {
    /// A reward of weight 1 under its default name.
    pub fn new(reward: RewardSpec) -> Self {
        Self {
            reward,
            weight: 1.0,
            name: None,
        }
    }

    /// Builds a list of rewards into one weighted sum.
    ///
    /// # Errors
    /// [`RewardBuildError::NoRewards`] for an empty list; otherwise the first
    /// reward's build error, a non-finite weight or a repeated name.
    pub fn build_all(configs: &[RewardConfig]) -> Result<Rewards, RewardBuildError> {
        if configs.is_empty() {
            return Err(RewardBuildError::NoRewards);
        }
        configs.iter().try_fold(Rewards::new(), |rewards, config| {
            let reward = config.reward.build()?;
            let name = config
                .name
                .clone()
                .unwrap_or_else(|| reward.name().to_string());
            rewards.add_named(name, reward, config.weight)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<RewardConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = parse(json!({"reward": {"NumericMatch": {}}})).unwrap();
        assert_eq!(c.weight, 1.0);
        assert_eq!(
            c.reward,
            RewardSpec::NumericMatch {
                field: "answer".into(),
                extract: Extract::Auto,
                abs_tol: 1e-6,
                rel_tol: 1e-9
            }
        );
        let c =
            parse(json!({"reward": {"ExactMatch": {"extract": {"AfterMarker": "####"}}}})).unwrap();
        assert!(matches!(
            c.reward,
            RewardSpec::ExactMatch { ref extract, trim: true, case_insensitive: false, .. }
                if *extract == Extract::AfterMarker("####".into())
        ));
        let c = parse(json!({"reward": {"Command": {"program": "sh"}}, "weight": 0.5})).unwrap();
        assert!(
            matches!(c.reward, RewardSpec::Command { timeout_secs, .. } if timeout_secs == 60.0)
        );
    }

    #[test]
    fn unknown_fields_and_missing_required_ones_are_errors() {
        let err = parse(json!({"reward": {"NumericMatch": {"tolerance": 1}}})).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `tolerance`"),
            "{err}"
        );
        let err = parse(json!({"reward": {"Regex": {}}})).unwrap_err();
        assert!(err.to_string().contains("missing field `pattern`"), "{err}");
        let err = parse(json!({"reward": {"ExactMatch": {}}, "wieght": 2})).unwrap_err();
        assert!(err.to_string().contains("unknown field `wieght`"), "{err}");
    }

    #[test]
    fn build_errors_quote_the_option() {
        let build = |v| {
            RewardConfig::build_all(&[parse(v).unwrap()])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            build(json!({"reward": {"Command": {"program": "sh", "timeout_secs": -1.0}}})),
            "reward `command`: `timeout_secs` = -1 is invalid: the timeout must be a positive number of seconds"
        );
        assert!(
            build(json!({"reward": {"Regex": {"pattern": "("}}})).starts_with("invalid regex `(`")
        );
        assert!(
            build(json!({"reward": {"NumericMatch": {"abs_tol": -0.5}}}))
                .contains("`abs_tol` = -0.5")
        );
        assert_eq!(
            RewardConfig::build_all(&[]).unwrap_err().to_string(),
            "no rewards are configured: add at least one to `rewards`"
        );
    }

    #[test]
    fn names_default_to_the_kind_and_must_be_unique() {
        let regex = |p: &str| RewardSpec::Regex {
            pattern: p.into(),
            full_match: false,
            feedback: None,
        };
        let err = RewardConfig::build_all(&[
            RewardConfig::new(regex("a")),
            RewardConfig::new(regex("b")),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "two rewards are named `regex`: give one of them another `name`"
        );
        let mut named = RewardConfig::new(regex("b"));
        named.name = Some("has_b".into());
        named.weight = 0.25;
        let rewards = RewardConfig::build_all(&[RewardConfig::new(regex("a")), named]).unwrap();
        assert_eq!(
            rewards.weights().collect::<Vec<_>>(),
            vec![("regex", 1.0), ("has_b", 0.25)]
        );
    }
}
