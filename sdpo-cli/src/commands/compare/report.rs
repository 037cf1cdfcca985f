//! The comparison's report: each run's held-out curve, AUC and teacher readings
//! ([`CellResult`]), grouped by arm and learning rate over seeds ([`Report`]), as Markdown,
//! JSON and the curves of the plot.

use std::collections::BTreeMap;

use serde::Serialize;

use sdpo_core::metrics as names;

use super::{Arm, Cell};
use crate::error::CliError;
use crate::plot::ArmCurves;
use crate::run_config::RunConfig;
use crate::run_dir::{read_evals, read_metrics};

/// Where a finished run ended up.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CellResult {
    arm: String,
    learning_rate: f64,
    seed: u64,
    /// (step, held-out success) of every evaluation.
    held_out: Vec<(usize, f64)>,
    /// Mean held-out success over training (trapezoid rule over the evaluations).
    auc: f64,
    /// Held-out success after the last step.
    last: f64,
    /// Mean seconds per training step (teacher probe and evaluations excluded).
    secs_per_step: f64,
    /// The teacher probe's readings and the teacher KL, each averaged over the steps that
    /// have it.
    teacher: BTreeMap<String, f64>,
}

/// The teacher readings averaged into [`CellResult::teacher`], with their column headings in
/// the report.
const TEACHER_COLUMNS: [(&str, &str); 15] = [
    (names::PROBE_TEACHER_SUCCESS, "teacher greedy success"),
    (names::PROBE_STUDENT_SUCCESS, "student greedy success"),
    (
        names::PROBE_TEACHER_SUCCESS_DEMONSTRATION,
        "teacher, demonstration",
    ),
    (
        names::PROBE_STUDENT_SUCCESS_DEMONSTRATION,
        "student, same samples",
    ),
    (
        names::PROBE_TEACHER_SUCCESS_FEEDBACK,
        "teacher, feedback only",
    ),
    (
        names::PROBE_STUDENT_SUCCESS_FEEDBACK,
        "student, same samples",
    ),
    (names::PROBE_FIRST_ERROR_FIXED, "first error fixed"),
    (
        names::PROBE_FIRST_ERROR_TEACHER_PROB,
        "p_teacher(answer) at first error",
    ),
    (
        names::PROBE_FIRST_ERROR_STUDENT_PROB,
        "p_student(answer) at first error",
    ),
    (
        names::PROBE_AGREEMENT_BEFORE_ERROR,
        "agreement before error",
    ),
    (names::PROBE_AGREEMENT_AFTER_ERROR, "agreement after error"),
    (names::TEACHER_KL, "teacher KL"),
    (names::PROBE_KL_FAILED, "KL, failed"),
    (names::PROBE_KL_SUCCESSFUL, "KL, successful"),
    (
        names::PROBE_SUCCESSFUL_WITH_SIGNAL,
        "successes with a signal",
    ),
];

impl CellResult {
    pub(super) fn read(cell: &Cell, cfg: &RunConfig) -> Result<Self, CliError> {
        let held_out: Vec<(usize, f64)> = read_evals(&cell.dir)?
            .iter()
            .map(|e| (e.step, e.held_out_success))
            .collect();
        let metrics = read_metrics(&cell.dir, cfg.train.metrics_format)?;
        let mean_of = |name: &str| {
            let v: Vec<f64> = metrics
                .iter()
                .filter_map(|m| m.get(name).copied())
                .filter(|v| v.is_finite())
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let teacher = TEACHER_COLUMNS
            .iter()
            .filter_map(|&(n, _)| mean_of(n).map(|v| (n.to_string(), v)))
            .collect();
        Ok(Self {
            arm: cell.arm.clone(),
            learning_rate: cell.learning_rate,
            seed: cell.seed,
            auc: area_under_curve(&held_out),
            last: held_out.last().map_or(f64::NAN, |p| p.1),
            held_out,
            secs_per_step: mean_of(names::TIME_STEP).unwrap_or(f64::NAN),
            teacher,
        })
    }
}

/// The mean of a curve over its step range by the trapezoid rule (its only value for one
/// point, NaN for none).
pub fn area_under_curve(points: &[(usize, f64)]) -> f64 {
    match points {
        [] => f64::NAN,
        [(_, v)] => *v,
        _ => {
            let span = (points[points.len() - 1].0 - points[0].0) as f64;
            let area: f64 = points
                .windows(2)
                .map(|w| (w[1].0 - w[0].0) as f64 * (w[0].1 + w[1].1) / 2.0)
                .sum();
            match span > 0.0 {
                true => area / span,
                false => points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64,
            }
        }
    }
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = match values.len() {
        0 | 1 => 0.0,
        _ => values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0),
    };
    (mean, var.sqrt())
}

/// One (arm, learning rate) over its seeds.
#[derive(Debug, Clone, Serialize)]
struct Group {
    arm: String,
    learning_rate: f64,
    seeds: usize,
    auc: (f64, f64),
    last: (f64, f64),
    /// Held-out success at the report's fixed steps, mean and std over seeds.
    at_steps: Vec<(usize, f64, f64)>,
    secs_per_step: f64,
    teacher: BTreeMap<String, f64>,
    best: bool,
}

impl Group {
    /// The runs of `arm` at learning rate `lr` over their seeds (not yet marked best).
    fn of(arm: &str, lr: f64, runs: &[CellResult], fixed_steps: &[usize]) -> Self {
        let of: Vec<&CellResult> = runs
            .iter()
            .filter(|r| r.arm == arm && r.learning_rate == lr)
            .collect();
        let stat =
            |f: &dyn Fn(&CellResult) -> f64| mean_sd(&of.iter().map(|r| f(r)).collect::<Vec<_>>());
        let at_steps = fixed_steps
            .iter()
            .map(|&s| {
                let (m, sd) = stat(&|r: &CellResult| value_at(&r.held_out, s));
                (s, m, sd)
            })
            .collect();
        let teacher = TEACHER_COLUMNS
            .iter()
            .filter_map(|&(name, _)| {
                let v: Vec<f64> = of
                    .iter()
                    .filter_map(|r| r.teacher.get(name).copied())
                    .collect();
                (!v.is_empty()).then(|| (name.to_string(), mean_sd(&v).0))
            })
            .collect();
        Self {
            arm: arm.to_string(),
            learning_rate: lr,
            seeds: of.len(),
            auc: stat(&|r| r.auc),
            last: stat(&|r| r.last),
            at_steps,
            secs_per_step: stat(&|r| r.secs_per_step).0,
            teacher,
            best: false,
        }
    }
}

/// The comparison's results.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    steps: usize,
    fixed_steps: Vec<usize>,
    groups: Vec<Group>,
    runs: Vec<CellResult>,
}

impl Report {
    pub(super) fn of(
        arms: &[Arm],
        learning_rates: &[f64],
        runs: Vec<CellResult>,
        steps: usize,
    ) -> Self {
        let fixed_steps: Vec<usize> = [0, steps / 10, steps / 4, steps / 2, steps]
            .into_iter()
            .fold(Vec::new(), |mut v, s| {
                if v.last() != Some(&s) {
                    v.push(s);
                }
                v
            });
        let mut groups = Vec::new();
        for arm in arms {
            let start = groups.len();
            groups.extend(
                learning_rates
                    .iter()
                    .map(|&lr| Group::of(&arm.name, lr, &runs, &fixed_steps)),
            );
            // Ties go to the learning rate listed first.
            let best = (start..groups.len())
                .rev()
                .max_by(|&a, &b| groups[a].auc.0.total_cmp(&groups[b].auc.0));
            if let Some(b) = best {
                groups[b].best = true;
            }
        }
        Self {
            steps,
            fixed_steps,
            groups,
            runs,
        }
    }

    /// The tables as Markdown.
    pub(super) fn markdown(&self) -> String {
        let mut out = String::new();
        let steps: Vec<String> = self.fixed_steps.iter().map(|s| format!("@{s}")).collect();
        out.push_str(&format!(
            "Held-out success (greedy pass@1), mean ± std over seeds; AUC = mean held-out success over the {} steps; * = the arm's best learning rate by AUC.\n\n",
            self.steps
        ));
        out.push_str(&format!(
            "| arm | lr | seeds | AUC | {} | s/step |\n|---|---|---|---|{}---|\n",
            steps.join(" | "),
            "---|".repeat(steps.len())
        ));
        for g in &self.groups {
            let at: Vec<String> = g
                .at_steps
                .iter()
                .map(|&(_, m, sd)| format!("{m:.3} ± {sd:.3}"))
                .collect();
            out.push_str(&format!(
                "| {}{} | {:e} | {} | {:.3} ± {:.3} | {} | {:.3} |\n",
                g.arm,
                if g.best { " *" } else { "" },
                g.learning_rate,
                g.seeds,
                g.auc.0,
                g.auc.1,
                at.join(" | "),
                g.secs_per_step
            ));
        }
        out.push_str("\nThe teacher at each arm's best learning rate (teacher probe, means over probe steps and seeds):\n\n");
        let cols = &TEACHER_COLUMNS;
        out.push_str(&format!(
            "| arm | {} |\n|---|{}\n",
            cols.iter().map(|c| c.1).collect::<Vec<_>>().join(" | "),
            "---|".repeat(cols.len())
        ));
        for g in self.groups.iter().filter(|g| g.best) {
            let cells: Vec<String> = cols
                .iter()
                .map(|(n, _)| g.teacher.get(*n).map_or("–".into(), |v| format!("{v:.3}")))
                .collect();
            out.push_str(&format!("| {} | {} |\n", g.arm, cells.join(" | ")));
        }
        out
    }

    /// Each arm's held-out curves (every seed) at its best learning rate.
    pub(super) fn curves(&self) -> Vec<ArmCurves> {
        self.groups
            .iter()
            .filter(|g| g.best)
            .map(|g| ArmCurves {
                label: format!("{} (lr {:e})", g.arm, g.learning_rate),
                seeds: self
                    .runs
                    .iter()
                    .filter(|r| r.arm == g.arm && r.learning_rate == g.learning_rate)
                    .map(|r| r.held_out.iter().map(|&(s, v)| (s as f64, v)).collect())
                    .collect(),
            })
            .collect()
    }
}

/// The curve's value at `step`: the last evaluation at or before it (NaN before the first).
fn value_at(points: &[(usize, f64)], step: usize) -> f64 {
    points
        .iter()
        .take_while(|p| p.0 <= step)
        .last()
        .map_or(f64::NAN, |p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_under_curve_is_the_trapezoid_mean() {
        assert!(area_under_curve(&[]).is_nan());
        assert_eq!(area_under_curve(&[(0, 0.5)]), 0.5);
        // 0 → 1 over 10 steps, then flat at 1 over 10 more: (5 + 10) / 20.
        assert_eq!(area_under_curve(&[(0, 0.0), (10, 1.0), (20, 1.0)]), 0.75);
    }

    #[test]
    fn value_at_takes_the_last_evaluation_before() {
        let c = [(0, 0.1), (10, 0.2), (20, 0.3)];
        assert_eq!(value_at(&c, 15), 0.2);
        assert_eq!(value_at(&c, 20), 0.3);
        assert!(value_at(&c[1..], 5).is_nan());
        assert_eq!(mean_sd(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(mean_sd(&[1.0]), (1.0, 0.0));
    }
}
