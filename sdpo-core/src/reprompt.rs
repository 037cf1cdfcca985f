//! Reprompting: from a group's scores, texts and feedback to each sample's
//! teacher messages and the self-distillation mask. Pure functions over text,
//! testable without a model (the reference's `_collect_solutions_by_uid`,
//! `_get_solution`, `_collect_feedback` and `_maybe_build_self_distillation_batch`).

use std::collections::{BTreeMap, BTreeSet};

use crate::chat::ChatMessage;
use crate::config::{ConfigError, SdpoConfig, Templates};
use crate::metrics;

/// One scored sample, as reprompting sees it.
#[derive(Debug, Clone, Copy)]
pub struct SampleOutcome<'a> {
    /// The group (prompt) the sample was drawn for.
    pub group: usize,
    /// The student's prompt messages; the last one is the question.
    pub prompt: &'a [ChatMessage],
    /// The decoded response (special tokens skipped).
    pub response: &'a str,
    /// The sequence reward (weighted sum of the rewards). NaN never succeeds.
    pub score: f64,
    /// The verifier's feedback, if any. Empty or whitespace-only counts as none.
    pub feedback: Option<&'a str>,
}

/// The teacher side of one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeacherPrompt {
    /// Messages to render with the chat template (generation prompt on):
    /// the student's earlier messages, then the (re)prompted user message.
    pub messages: Vec<ChatMessage>,
    /// The demonstration shown, if any.
    pub demonstration: Option<String>,
    /// Whether the verifier's feedback went into the prompt.
    pub feedback_used: bool,
}

impl TeacherPrompt {
    /// Whether the sample has a teacher signal (its self-distillation mask).
    pub fn reprompted(&self) -> bool {
        self.demonstration.is_some() || self.feedback_used
    }
}

/// The six self-distillation metrics of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RepromptMetrics {
    /// Fraction of groups with at least one success.
    pub success_group_fraction: f64,
    /// Fraction of samples given a demonstration.
    pub success_sample_fraction: f64,
    /// Fraction of samples with non-empty feedback.
    pub feedback_available_fraction: f64,
    /// Fraction of samples whose teacher prompt holds feedback.
    pub feedback_used_fraction: f64,
    /// Fraction of samples with a teacher signal.
    pub reprompt_sample_fraction: f64,
    /// 1.0 when no sample has a teacher signal.
    pub empty_target_batch: f64,
}

impl RepromptMetrics {
    /// `(name, value)` pairs under the reference's metric names.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            (metrics::SUCCESS_GROUP_FRACTION, self.success_group_fraction),
            (
                metrics::SUCCESS_SAMPLE_FRACTION,
                self.success_sample_fraction,
            ),
            (
                metrics::FEEDBACK_AVAILABLE_FRACTION,
                self.feedback_available_fraction,
            ),
            (metrics::FEEDBACK_USED_FRACTION, self.feedback_used_fraction),
            (
                metrics::REPROMPT_SAMPLE_FRACTION,
                self.reprompt_sample_fraction,
            ),
            (metrics::EMPTY_TARGET_BATCH, self.empty_target_batch),
        ]
    }
}

/// Teacher prompts for a batch, with the mask and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RepromptPlan {
    /// One teacher prompt per sample, in batch order.
    pub teachers: Vec<TeacherPrompt>,
    /// 1.0 where the sample has a teacher signal, else 0.0.
    pub self_distillation_mask: Vec<f32>,
    /// The batch's self-distillation metrics.
    pub metrics: RepromptMetrics,
}

/// Indices of the successful samples of each group, in batch order.
pub fn successes_by_group(
    samples: &[SampleOutcome<'_>],
    threshold: f64,
) -> BTreeMap<usize, Vec<usize>> {
    let mut out: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        if s.score >= threshold {
            out.entry(s.group).or_default().push(i);
        }
    }
    out
}

/// Removes every `<think>…</think>` block and the whitespace after it (the
/// reference's `re.sub(r'<think>.*?</think>\s*', '', text, flags=re.DOTALL)`).
pub fn remove_thinking(text: &str) -> String {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let Some(len) = rest[start + OPEN.len()..].find(CLOSE) else {
            break;
        };
        out.push_str(&rest[..start]);
        rest = rest[start + OPEN.len() + len + CLOSE.len()..].trim_start();
    }
    out.push_str(rest);
    out
}

/// The demonstration for sample `i`: the first success of its group
/// (excluding `i` itself when `dont_reprompt_on_self_success`), thinking
/// removed when `remove_thinking_from_demonstration`.
pub fn demonstration(
    i: usize,
    samples: &[SampleOutcome<'_>],
    successes: &BTreeMap<usize, Vec<usize>>,
    cfg: &SdpoConfig,
) -> Option<String> {
    let group = successes.get(&samples.get(i)?.group)?;
    let j = *group
        .iter()
        .find(|&&j| !(cfg.dont_reprompt_on_self_success && j == i))?;
    let text = samples[j].response;
    Some(if cfg.remove_thinking_from_demonstration {
        remove_thinking(text)
    } else {
        text.to_string()
    })
}

/// The feedback of a sample if it counts as feedback (non-empty after
/// trimming) and `include_environment_feedback` is on.
pub fn available_feedback<'a>(sample: &SampleOutcome<'a>, cfg: &SdpoConfig) -> Option<&'a str> {
    sample
        .feedback
        .filter(|f| cfg.include_environment_feedback && !f.trim().is_empty())
}

/// The teacher messages for a sample: earlier messages kept, the last message
/// replaced by a user message with the reprompt (or the original question when
/// there is neither a demonstration nor feedback to use).
pub fn teacher_prompt(
    sample: &SampleOutcome<'_>,
    demonstration: Option<String>,
    cfg: &SdpoConfig,
    templates: &Templates,
) -> TeacherPrompt {
    let feedback = available_feedback(sample, cfg);
    let feedback_used = feedback.is_some()
        && !(cfg.environment_feedback_only_without_solution && demonstration.is_some());
    let (history, question) = match sample.prompt.split_last() {
        Some((last, history)) => (history, last.content.as_str()),
        None => (&[][..], ""),
    };
    let content = if demonstration.is_some() || feedback_used {
        let solution = demonstration
            .as_deref()
            .map(|d| {
                templates
                    .solution
                    .render(&[("successful_previous_attempt", d)])
            })
            .unwrap_or_default();
        let feedback = feedback
            .filter(|_| feedback_used)
            .map(|f| templates.feedback.render(&[("feedback_raw", f)]))
            .unwrap_or_default();
        templates.reprompt.render(&[
            ("prompt", question),
            ("solution", &solution),
            ("feedback", &feedback),
        ])
    } else {
        question.to_string()
    };
    let mut messages = history.to_vec();
    messages.push(ChatMessage::user(content));
    TeacherPrompt {
        messages,
        demonstration,
        feedback_used,
    }
}

/// Teacher prompts, the self-distillation mask and the metrics for a batch.
///
/// # Errors
/// [`ConfigError`] when the config's templates do not parse.
pub fn plan_reprompts(
    samples: &[SampleOutcome<'_>],
    cfg: &SdpoConfig,
) -> Result<RepromptPlan, ConfigError> {
    let templates = cfg.templates()?;
    let successes = successes_by_group(samples, cfg.success_reward_threshold);
    let teachers: Vec<TeacherPrompt> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            teacher_prompt(
                s,
                demonstration(i, samples, &successes, cfg),
                cfg,
                &templates,
            )
        })
        .collect();
    let self_distillation_mask: Vec<f32> = teachers
        .iter()
        .map(|t| if t.reprompted() { 1.0 } else { 0.0 })
        .collect();

    let n = samples.len();
    let frac = |count: usize| if n == 0 { 0.0 } else { count as f64 / n as f64 };
    let groups: BTreeSet<usize> = samples.iter().map(|s| s.group).collect();
    let reprompted = teachers.iter().filter(|t| t.reprompted()).count();
    let metrics = RepromptMetrics {
        success_group_fraction: if groups.is_empty() {
            0.0
        } else {
            groups.iter().filter(|g| successes.contains_key(g)).count() as f64 / groups.len() as f64
        },
        success_sample_fraction: frac(
            teachers
                .iter()
                .filter(|t| t.demonstration.is_some())
                .count(),
        ),
        feedback_available_fraction: frac(
            samples
                .iter()
                .filter(|s| available_feedback(s, cfg).is_some())
                .count(),
        ),
        feedback_used_fraction: frac(teachers.iter().filter(|t| t.feedback_used).count()),
        reprompt_sample_fraction: frac(reprompted),
        empty_target_batch: if reprompted == 0 { 1.0 } else { 0.0 },
    };
    Ok(RepromptPlan {
        teachers,
        self_distillation_mask,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(q: &str) -> Vec<ChatMessage> {
        vec![ChatMessage::system("Be brief."), ChatMessage::user(q)]
    }

    fn sample<'a>(
        group: usize,
        prompt: &'a [ChatMessage],
        response: &'a str,
        score: f64,
        feedback: Option<&'a str>,
    ) -> SampleOutcome<'a> {
        SampleOutcome {
            group,
            prompt,
            response,
            score,
            feedback,
        }
    }

    #[test]
    fn remove_thinking_matches_the_reference_regex() {
        assert_eq!(remove_thinking("<think>a\nb</think>\n  42"), "42");
        assert_eq!(
            remove_thinking("x<think>1</think> y<think>2</think>z"),
            "xyz"
        );
        assert_eq!(
            remove_thinking("keep <think>open only"),
            "keep <think>open only"
        );
        assert_eq!(remove_thinking("no tags"), "no tags");
        assert_eq!(remove_thinking("<think>a</think><think>b</think>c"), "c");
    }

    #[test]
    fn demonstration_is_first_success_excluding_self() {
        let p = prompt("q");
        let s = [
            sample(0, &p, "A", 1.0, None),
            sample(0, &p, "B", 0.0, None),
            sample(0, &p, "C", 1.0, None),
            sample(1, &p, "D", 0.0, None),
        ];
        let cfg = SdpoConfig::default();
        let succ = successes_by_group(&s, 1.0);
        assert_eq!(demonstration(0, &s, &succ, &cfg).as_deref(), Some("C"));
        assert_eq!(demonstration(1, &s, &succ, &cfg).as_deref(), Some("A"));
        assert_eq!(demonstration(2, &s, &succ, &cfg).as_deref(), Some("A"));
        assert_eq!(demonstration(3, &s, &succ, &cfg), None);
        let self_ok = SdpoConfig {
            dont_reprompt_on_self_success: false,
            ..SdpoConfig::default()
        };
        assert_eq!(demonstration(2, &s, &succ, &self_ok).as_deref(), Some("A"));
        assert_eq!(demonstration(0, &s, &succ, &self_ok).as_deref(), Some("A"));
    }

    #[test]
    fn nan_scores_never_succeed() {
        let p = prompt("q");
        let s = [
            sample(0, &p, "A", f64::NAN, None),
            sample(0, &p, "B", 0.0, None),
        ];
        assert!(successes_by_group(&s, 1.0).is_empty());
    }

    #[test]
    fn teacher_prompt_keeps_history_and_fills_the_templates() {
        let p = prompt("What is 2+2?");
        let s = [
            sample(0, &p, "<think>hmm</think> 4", 1.0, None),
            sample(0, &p, "5", 0.0, Some("wrong: 5 != 4 is not it")),
        ];
        let plan = plan_reprompts(&s, &SdpoConfig::default()).unwrap();
        let t = &plan.teachers[1];
        assert_eq!(t.messages.len(), 2);
        assert_eq!(t.messages[0], ChatMessage::system("Be brief."));
        assert_eq!(t.messages[1].role, "user");
        assert_eq!(
            t.messages[1].content,
            "What is 2+2?\nCorrect solution:\n\n4\n\n\n\nCorrectly solve the original question.\n"
        );
        // Feedback is ignored when a demonstration exists (feedback only without solution).
        assert!(!t.feedback_used);
        // The successful sample itself has no other success: not reprompted.
        assert!(!plan.teachers[0].reprompted());
        assert_eq!(plan.teachers[0].messages, p);
        assert_eq!(plan.self_distillation_mask, vec![0.0, 1.0]);
    }

    #[test]
    fn feedback_is_used_without_solution_and_braces_survive() {
        let p = vec![ChatMessage::user("Write f() { return {x}; }")];
        let fb = "error: expected `}` at {line 3}";
        let s = [sample(7, &p, "fn f() {", 0.0, Some(fb))];
        let plan = plan_reprompts(&s, &SdpoConfig::default()).unwrap();
        let t = &plan.teachers[0];
        assert!(t.feedback_used && t.demonstration.is_none());
        assert_eq!(
            t.messages[0].content,
            format!(
                "Write f() {{ return {{x}}; }}\nThe following is feedback from your unsuccessful earlier attempt:\n\n{fb}\n\n\n\nCorrectly solve the original question.\n"
            )
        );
    }

    #[test]
    fn solution_with_braces_survives() {
        let p = vec![ChatMessage::user("q {prompt}")];
        let s = [
            sample(0, &p, "{solution} {{x}}", 1.0, None),
            sample(0, &p, "no", 0.0, None),
        ];
        let plan = plan_reprompts(&s, &SdpoConfig::default()).unwrap();
        let c = &plan.teachers[1].messages[0].content;
        assert!(
            c.starts_with("q {prompt}\nCorrect solution:\n\n{solution} {{x}}\n\n"),
            "{c}"
        );
    }

    #[test]
    fn feedback_with_solution_when_allowed() {
        let p = prompt("q");
        let cfg = SdpoConfig {
            environment_feedback_only_without_solution: false,
            ..SdpoConfig::default()
        };
        let s = [
            sample(0, &p, "good", 1.0, None),
            sample(0, &p, "bad", 0.0, Some("too short")),
        ];
        let plan = plan_reprompts(&s, &cfg).unwrap();
        let c = &plan.teachers[1].messages[1].content;
        assert!(c.contains("good") && c.contains("too short"), "{c}");
        assert!(plan.teachers[1].feedback_used);
    }

    #[test]
    fn blank_feedback_or_feedback_off_counts_as_none() {
        let p = prompt("q");
        let s = [
            sample(0, &p, "a", 0.0, Some("  \n")),
            sample(1, &p, "b", 0.0, Some("real")),
        ];
        let plan = plan_reprompts(&s, &SdpoConfig::default()).unwrap();
        assert_eq!(plan.self_distillation_mask, vec![0.0, 1.0]);
        assert_eq!(plan.metrics.feedback_available_fraction, 0.5);
        let off = SdpoConfig {
            include_environment_feedback: false,
            ..SdpoConfig::default()
        };
        let plan = plan_reprompts(&s, &off).unwrap();
        assert_eq!(plan.self_distillation_mask, vec![0.0, 0.0]);
        assert_eq!(plan.metrics.empty_target_batch, 1.0);
    }

    #[test]
    fn metrics_hand_computed() {
        let p = prompt("q");
        let s = [
            sample(0, &p, "a", 1.0, None),
            sample(0, &p, "b", 1.0, None),
            sample(0, &p, "c", 0.0, Some("fb")),
            sample(1, &p, "d", 0.0, Some("fb")),
            sample(1, &p, "e", 0.0, None),
            sample(2, &p, "f", 0.0, None),
        ];
        let m = plan_reprompts(&s, &SdpoConfig::default()).unwrap().metrics;
        assert!((m.success_group_fraction - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.success_sample_fraction - 3.0 / 6.0).abs() < 1e-12); // a, b, c get demos
        assert!((m.feedback_available_fraction - 2.0 / 6.0).abs() < 1e-12);
        assert!((m.feedback_used_fraction - 1.0 / 6.0).abs() < 1e-12); // only d
        assert!((m.reprompt_sample_fraction - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(m.empty_target_batch, 0.0);
        let names: Vec<_> = m.named().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::metrics::SELF_DISTILLATION);
    }

    #[test]
    fn empty_batch_has_finite_metrics() {
        let plan = plan_reprompts(&[], &SdpoConfig::default()).unwrap();
        assert!(plan.teachers.is_empty());
        assert_eq!(plan.metrics.empty_target_batch, 1.0);
        assert_eq!(plan.metrics.success_group_fraction, 0.0);
    }
}
