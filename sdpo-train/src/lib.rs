//! The SDPO trainer: group rollouts, rewards with feedback, reprompting,
//! teacher management, checkpoints and metrics.
//!
//! The trainer lands with issue 4; the algorithm it runs lives in [`sdpo_core`].
#![warn(missing_docs)]

pub mod dataset;
pub mod reward;

pub use sdpo_core;
pub use sdpo_models;
