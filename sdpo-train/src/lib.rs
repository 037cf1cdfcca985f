//! The SDPO trainer: group rollouts, rewards with feedback, reprompting,
//! teacher management, checkpoints and metrics.
//!
//! The trainer lands with issue 4; the algorithm it runs lives in [`sdpo_core`].
#![warn(missing_docs)]

pub mod builtin;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod grad_norm;
pub mod metrics_log;
pub mod policy;
pub mod reward;
pub mod schedule;
pub mod teacher;
pub mod trainer;
pub mod ttsd;

pub use config::TrainConfig;
pub use policy::Policy;
pub use trainer::{SdpoTrainer, StepReport, TrainError};

pub use sdpo_core;
pub use sdpo_models;
