//! The SDPO trainer: group rollouts, rewards with feedback, reprompting,
//! teacher management, optimizer updates, checkpoints and metrics. The step's
//! components and how they connect: docs/ARCHITECTURE.md. The algorithm it runs
//! lives in [`sdpo_core`].
#![warn(missing_docs)]

pub mod builtin;
pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod data_parallel;
pub mod dataset;
pub mod error;
pub mod grad_norm;
pub mod metrics_log;
pub mod model_identity;
pub mod phase_clock;
pub mod policy;
pub mod prompts;
pub mod reward;
pub mod reward_failures;
pub mod rollout;
pub mod schedule;
pub mod scoring;
pub mod step_batch;
pub mod step_metrics;
pub mod teacher;
pub mod teacher_inputs;
pub mod teacher_probe;
pub mod tensorboard;
pub mod train_backend;
pub mod trainer;
pub mod ttsd;
pub mod updater;

pub use config::TrainConfig;
pub use policy::Policy;
pub use train_backend::TrainBackend;
pub use trainer::{FitHooks, Flow, SdpoTrainer, StepReport, TrainError};

pub use sdpo_core;
pub use sdpo_models;
