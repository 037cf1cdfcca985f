//! Progress display: indicatif bars on a terminal, plain lines otherwise.
//!
//! Bars draw on stderr and hide themselves when stderr is not a terminal; [`note`] prints a
//! line either way (above a visible bar), so logs and CI output still show evaluations.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A bar over the `total` warm-start steps; its message shows the loss.
pub fn warm_start_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64).with_style(style(
        "warm start [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
    ));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A bar over a run's `total` training steps, starting at `done`.
pub fn steps_bar(label: &str, total: usize, done: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64)
        .with_style(style(
            "{prefix:>5} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        ))
        .with_prefix(label.to_string())
        .with_position(done as u64);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The steps bar's message.
pub fn step_message(reward: f64, loss: f64, held_out: Option<f64>) -> String {
    let held = held_out
        .map(|s| format!("{s:.3}"))
        .unwrap_or_else(|| "-".to_string());
    format!("reward {reward:.3} loss {loss:.4} held-out {held}")
}

/// Prints `line` on stderr, above `bar` when it is visible.
pub fn note(bar: &ProgressBar, line: &str) {
    bar.suspend(|| eprintln!("{line}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_message_shows_missing_held_out_as_dash() {
        assert_eq!(
            step_message(0.5, 0.01234, None),
            "reward 0.500 loss 0.0123 held-out -"
        );
        assert!(step_message(0.5, 0.0, Some(0.25)).ends_with("held-out 0.250"));
    }
}
