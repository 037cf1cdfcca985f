//! The float precision a model's weights and activations are kept in: [`Precision`].
//!
//! With `f16` or `bf16` the weights are stored in that dtype and every activation follows
//! them, except where numerics need float32:
//! - RMSNorm statistics and RoPE angles are computed in f32 and cast back (`arch::norm`,
//!   `arch::rope`);
//! - logits leave the model as f32 ([`crate::CausalLm::logits_from_hidden`]), so log-softmax,
//!   sampling, the distillation and policy losses and their gradients run in f32;
//! - LoRA adapters stay f32: they are what the optimizer updates (f32 master weights and f32
//!   AdamW state; in f16 its `eps = 1e-8` rounds to zero), and the adapter path of a projection
//!   runs in f32 and is cast back ([`crate::lora::LoraAdapter::forward`]).
//!
//! Burn's kernels do not promote mixed dtypes (a binary op reads both operands as the left
//! one's dtype), so a dtype a device cannot run is refused up front by [`Precision::check`]
//! rather than run silently wrong.

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The float dtype of a model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere (the default).
    #[default]
    F32,
    /// IEEE half precision (5-bit exponent): half the memory; range ±65504.
    F16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa): half the memory, f32's range.
    Bf16,
}

/// A precision the device cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrecisionError {
    /// The backend reports no general support for the dtype on this device.
    #[error(
        "precision `{precision}` is not supported by {backend} on device {device}: the device \
         cannot do general arithmetic in {precision} (choose f32{alternative})"
    )]
    Unsupported {
        /// The precision asked for.
        precision: Precision,
        /// The backend's name.
        backend: String,
        /// The device.
        device: String,
        /// Another precision the device does support, as text (`" or f16"`), or empty.
        alternative: String,
    },
    /// A name that is not a precision.
    #[error("unknown precision `{0}`: expected f32, f16 or bf16")]
    Unknown(String),
}

impl Precision {
    /// Every precision, in the order the docs list them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// Its name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// The Burn float dtype.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// Whether the backend can run this precision on `device` (its `supports_dtype`).
    pub fn is_supported<B: Backend>(self, device: &B::Device) -> bool {
        B::supports_dtype(device, DType::from(self.dtype()))
    }

    /// Refuses a precision the device cannot run, naming the backend, the device and what it
    /// can run instead.
    ///
    /// # Errors
    /// [`PrecisionError::Unsupported`].
    pub fn check<B: Backend>(self, device: &B::Device) -> Result<(), PrecisionError> {
        if self.is_supported::<B>(device) {
            return Ok(());
        }
        let others: Vec<&str> = [Precision::F16, Precision::Bf16]
            .into_iter()
            .filter(|p| *p != self && p.is_supported::<B>(device))
            .map(Precision::name)
            .collect();
        Err(PrecisionError::Unsupported {
            precision: self,
            backend: B::name(device),
            device: format!("{device:?}"),
            alternative: others.iter().map(|p| format!(" or {p}")).collect(),
        })
    }

    /// `module` with every float parameter cast to this precision (ids and `require_grad`
    /// kept). A no-op for parameters already in it. On an autodiff backend cast the inner
    /// module (`M::from_inner(precision.cast(m.valid()))`): a cast weight is not a leaf there.
    pub fn cast<B: Backend, M: Module<B>>(self, module: M) -> M {
        module.map(&mut CastParams(self.dtype()))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = PrecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| PrecisionError::Unknown(s.to_string()))
    }
}

/// Casts every float parameter to one dtype.
struct CastParams(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let dtype = self.0;
        if param.val().dtype() == DType::from(dtype) {
            return param;
        }
        param.map(|t| {
            let require_grad = t.is_require_grad();
            t.cast(dtype).set_require_grad(require_grad)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
        }
        assert_eq!(
            "fp16".parse::<Precision>().unwrap_err().to_string(),
            "unknown precision `fp16`: expected f32, f16 or bf16"
        );
    }

    #[test]
    fn ndarray_refuses_half_precision_by_name() {
        let device = Default::default();
        assert!(Precision::F32.check::<NdArray>(&device).is_ok());
        let err = Precision::Bf16.check::<NdArray>(&device).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`bf16`") && text.contains("ndarray"),
            "{text}"
        );
    }
}
