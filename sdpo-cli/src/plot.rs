//! `plot.svg`: train reward (per step, faint, with its trailing mean) and held-out success (per
//! evaluation) of one or more runs over training steps, drawn with plotters' SVG backend.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::CliError;

/// One run's curves.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCurves {
    /// The run's name in the legend (`sdpo`, `grpo`).
    pub label: String,
    /// (step, mean train reward).
    pub reward: Vec<(f64, f64)>,
    /// (step, held-out greedy success).
    pub held_out: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// The y range covering every value and [0, 1].
fn y_range(runs: &[RunCurves]) -> (f64, f64) {
    let values = runs
        .iter()
        .flat_map(|r| r.reward.iter().chain(&r.held_out))
        .map(|p| p.1)
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((0.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// The points whose value is finite (plotters draws no NaN or infinity).
fn finite(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points.iter().copied().filter(|p| p.1.is_finite()).collect()
}

/// The trailing mean over `window` points of the finite values of `points` (a shorter window
/// at the start), at each point's step.
fn rolling_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let finite = finite(points);
    let window = window.max(1);
    let mut sum = 0.0;
    finite
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= finite[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// The chart every plot draws into: steps on x, `y` on y.
type Chart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// What a plot shows around its series.
struct Frame<'t> {
    caption: &'t str,
    y_desc: &'t str,
    x_max: f64,
    y: (f64, f64),
    legend: SeriesLabelPosition,
}

/// Draws a chart into the SVG file `path` (replacing it): the frame, then `series`, then the
/// legend. Errors name the file ([`CliError::Plot`]).
fn draw_chart(
    path: &Path,
    frame: Frame<'_>,
    series: impl FnOnce(&mut Chart<'_>) -> Result<(), String>,
) -> Result<(), CliError> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let draw = || -> Result<(), String> {
        let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(frame.caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..frame.x_max, frame.y.0..frame.y.1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(frame.y_desc)
            .draw()
            .map_err(|e| err(&e))?;
        series(&mut chart)?;
        chart
            .configure_series_labels()
            .position(frame.legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))
    };
    draw().map_err(|message| CliError::Plot {
        path: path.to_path_buf(),
        message,
    })
}

/// A plotters error as text.
fn err(e: &dyn std::fmt::Display) -> String {
    e.to_string()
}

/// Draws `runs` into the SVG file `path` (replacing it).
///
/// # Errors
/// [`CliError::Plot`] naming the file.
pub fn plot_runs(path: &Path, runs: &[RunCurves]) -> Result<(), CliError> {
    let x_max = runs
        .iter()
        .flat_map(|r| r.reward.iter().chain(&r.held_out))
        .map(|p| p.0)
        .fold(1.0f64, f64::max);
    let frame = Frame {
        caption: "train reward (lines) and held-out success (dots)",
        y_desc: "reward / success",
        x_max,
        y: y_range(runs),
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw_chart(path, frame, |chart| {
        for (i, run) in runs.iter().enumerate() {
            draw_run(chart, run, COLORS[i % COLORS.len()])?;
        }
        Ok(())
    })
}

/// One run's reward (each step faint, its trailing mean) and held-out curves.
fn draw_run(chart: &mut Chart<'_>, run: &RunCurves, color: RGBColor) -> Result<(), String> {
    if !run.reward.is_empty() {
        // Each step's reward is a mean over few prompts and jumps; its trailing mean
        // over ~1/25 of the run shows the trend.
        let window = (run.reward.len() / 25).max(1);
        chart
            .draw_series(LineSeries::new(finite(&run.reward), color.mix(0.18)))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                rolling_mean(&run.reward, window),
                color.mix(0.7).stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(format!(
                "{} train reward (mean of {window} steps; faint: each step)",
                run.label
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.7).stroke_width(2))
            });
    }
    if !run.held_out.is_empty() {
        chart
            .draw_series(
                LineSeries::new(finite(&run.held_out), color.stroke_width(3)).point_size(4),
            )
            .map_err(|e| err(&e))?
            .label(format!("{} held-out success", run.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    Ok(())
}

/// One arm of a comparison: its held-out curves, one per seed.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmCurves {
    /// The arm's name in the legend.
    pub label: String,
    /// (step, held-out success) per seed.
    pub seeds: Vec<Vec<(f64, f64)>>,
}

/// The mean over curves sampled at the same steps (the first curve's), skipping curves that
/// lack a step.
fn mean_curve(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let Some(first) = curves.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|&(x, _)| {
            let v: Vec<f64> = curves
                .iter()
                .filter_map(|c| c.iter().find(|p| p.0 == x).map(|p| p.1))
                .collect();
            (x, v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect()
}

/// Draws a comparison into the SVG file `path`: each arm's held-out success per seed (faint)
/// and their mean (bold).
///
/// # Errors
/// [`CliError::Plot`] naming the file.
pub fn plot_compare(path: &Path, arms: &[ArmCurves]) -> Result<(), CliError> {
    let points = || arms.iter().flat_map(|a| a.seeds.iter().flatten());
    let y_max = points()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let frame = Frame {
        caption: "held-out success: mean over seeds (bold), each seed (faint)",
        y_desc: "held-out success",
        x_max: points().map(|p| p.0).fold(1.0f64, f64::max),
        y: (0.0, (y_max * 1.1).max(0.1)),
        legend: SeriesLabelPosition::LowerRight,
    };
    draw_chart(path, frame, |chart| {
        for (i, arm) in arms.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            for seed in &arm.seeds {
                chart
                    .draw_series(LineSeries::new(finite(seed), color.mix(0.25)))
                    .map_err(|e| err(&e))?;
            }
            chart
                .draw_series(LineSeries::new(
                    finite(&mean_curve(&arm.seeds)),
                    color.stroke_width(3),
                ))
                .map_err(|e| err(&e))?
                .label(format!("{} ({} seeds)", arm.label, arm.seeds.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_curve_in_the_legend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let runs = vec![
            RunCurves {
                label: "sdpo".into(),
                reward: vec![(1.0, 0.1), (2.0, 0.4), (3.0, f64::NAN)],
                held_out: vec![(0.0, 0.0), (3.0, 0.5)],
            },
            RunCurves {
                label: "grpo".into(),
                reward: vec![(1.0, 0.1), (2.0, 0.2)],
                held_out: vec![],
            },
        ];
        plot_runs(&path, &runs).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for label in [
            "sdpo train reward",
            "sdpo held-out success",
            "grpo train reward",
        ] {
            assert!(svg.contains(label), "missing {label}");
        }
        assert!(!svg.contains("grpo held-out success"));
    }

    #[test]
    fn rolling_mean_trails_and_skips_non_finite_values() {
        let pts = [
            (1.0, 1.0),
            (2.0, f64::NAN),
            (3.0, 3.0),
            (4.0, 5.0),
            (5.0, 7.0),
        ];
        assert_eq!(
            rolling_mean(&pts, 2),
            vec![(1.0, 1.0), (3.0, 2.0), (4.0, 4.0), (5.0, 6.0)]
        );
        assert_eq!(rolling_mean(&pts, 0).len(), 4);
    }

    #[test]
    fn y_range_covers_zero_to_one_and_outliers() {
        let runs = vec![RunCurves {
            label: "x".into(),
            reward: vec![(1.0, -0.5), (2.0, f64::INFINITY)],
            held_out: vec![],
        }];
        let (lo, hi) = y_range(&runs);
        assert!(lo < -0.5 && hi > 1.0 && hi < 1.2, "{lo} {hi}");
    }
}
