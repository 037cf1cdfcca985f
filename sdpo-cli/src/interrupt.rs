//! Ctrl-C and SIGTERM (also SIGHUP) during `sdpo train`.
//!
//! Before training starts (config, model loading, warm start) a signal ends the process at
//! once: there is nothing to save. While training, the first signal asks the run to stop after
//! the current step: the trainer writes a checkpoint and the summary, and the process exits
//! with [`EXIT_INTERRUPTED`](crate::error::EXIT_INTERRUPTED) and a message saying how to
//! resume. A second signal aborts at once ([`EXIT_ABORTED`]; the newest complete checkpoint
//! stays intact).

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{CliError, EXIT_ABORTED};

const PREPARING: u8 = 0;
const TRAINING: u8 = 1;
const STOP_REQUESTED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(PREPARING);

/// Installs the handler (once per process; later calls do nothing).
///
/// It replaces an inherited disposition too: a shell script's background job starts with
/// SIGINT ignored, and `ctrlc::try_set_handler` would then install nothing at all (SIGTERM
/// included), so `kill -INT`/`kill -TERM` of a background run would lose its work.
///
/// # Errors
/// [`CliError::Argument`] when the OS refuses the handler.
pub fn install() -> Result<(), CliError> {
    match ctrlc::set_handler(on_signal) {
        Ok(()) | Err(ctrlc::Error::MultipleHandlers) => Ok(()),
        Err(e) => Err(CliError::Argument {
            arg: "signal handler".into(),
            reason: e.to_string(),
        }),
    }
}

fn on_signal() {
    match STATE.compare_exchange(TRAINING, STOP_REQUESTED, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => eprintln!(
            "\ninterrupted: finishing the current step, then writing a checkpoint and the summary \
             (press Ctrl-C again to abort without saving)"
        ),
        Err(STOP_REQUESTED) => {
            eprintln!("\naborted: the newest complete checkpoint is kept");
            std::process::exit(EXIT_ABORTED);
        }
        Err(_) => {
            eprintln!("\ninterrupted before training started: nothing to save");
            std::process::exit(EXIT_ABORTED);
        }
    }
}

/// From now on a signal asks for a stop after the current step instead of ending the process.
pub fn training_started() {
    let _ = STATE.compare_exchange(PREPARING, TRAINING, Ordering::SeqCst, Ordering::SeqCst);
}

/// Whether a signal asked the run to stop.
pub fn stop_requested() -> bool {
    STATE.load(Ordering::SeqCst) == STOP_REQUESTED
}
