//! # sdpo-core
//!
//! The model-free heart of SDPO (Self-Distilled Policy Optimization,
//! arXiv 2601.20802): configuration, the self-distillation and policy losses,
//! group advantages, reprompting and teacher update rules. Nothing here names
//! a model; everything tensor-valued is generic over `B: Backend`.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Int, Tensor};
//! use sdpo_core::{loss::{self_distillation_loss, DistillationBatch}, SdpoConfig};
//!
//! type B = NdArray<f32>;
//! let dev = Default::default();
//! let cfg = SdpoConfig { distillation_topk: Some(2), ..SdpoConfig::default() };
//! let student = Tensor::<B, 3>::from_floats([[[2.0, 0.5, -1.0, 0.0]]], &dev);
//! let teacher = Tensor::<B, 3>::from_floats([[[0.5, 2.0, -1.0, 0.0]]], &dev);
//! let out = self_distillation_loss(
//!     DistillationBatch {
//!         student_logits: student,
//!         teacher_logits: teacher,
//!         response_ids: Tensor::<B, 2, Int>::from_ints([[0]], &dev),
//!         response_mask: Tensor::ones([1, 1], &dev),
//!         old_log_probs: None,
//!         self_distillation_mask: None,
//!         rollout_is_weights: None,
//!     },
//!     &cfg,
//! );
//! assert!(out.loss.into_scalar() > 0.0);
//! ```
#![warn(missing_docs)]

pub mod chat;
pub mod config;
pub mod error;
pub mod loss;
pub mod metrics;
pub mod policy;
pub mod reprompt;
pub mod rollout_is;
pub mod teacher;
pub mod template;
pub mod threads;

pub use chat::ChatMessage;
pub use config::{
    ConfigError, DistillationSupport, Divergence, LossAggMode, RepromptTruncation, RolloutIs,
    RolloutIsLevel, SdpoConfig, TeacherMode,
};
