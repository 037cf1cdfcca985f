//! The library behind the `sdpo` command: run configs and `--set` overrides, run folders and
//! their lock, the commands, and the [`fuzzing`] entry points. The binary (`src/main.rs`) only
//! parses the command line and calls [`commands`].
//!
//! `sdpo train` with no arguments trains the built-in model on the built-in sort-digits task on
//! the CPU (no downloads) and writes a run folder; a RON file describes any other run (see
//! [`run_config`]). Errors print as `error: ...` with their causes, exit status 1 (3: training
//! stopped by Ctrl-C or SIGTERM after writing a checkpoint; see [`interrupt`]).
#![warn(missing_docs)]

pub mod backend;
pub mod commands;
pub mod distributed;
pub mod error;
#[cfg(feature = "ndarray")]
pub mod fuzzing;
pub mod interrupt;
pub mod job;
pub mod models;
pub mod overrides;
pub mod plot;
pub mod progress;
pub mod run_config;
pub mod run_dir;
pub mod run_lock;
