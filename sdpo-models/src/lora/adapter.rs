//! The adapter modules: one [`LoraAdapter`] per targeted projection, grouped like the decoder
//! (`layers.N.self_attn.q_proj`, `layers.N.mlp.down_proj`) into a [`LoraSet`].

use burn::module::{Initializer, Module};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{backend::Backend, Device, FloatDType, Tensor};

use super::config::LoraConfig;
use super::error::LoraError;
use crate::arch::linear;
use crate::arch::{CausalLm, ModelConfig, Projection, ProjectionDelta};
use crate::kernels::DecoderBackend;

/// A low-rank update of one projection: `delta(x) = scale · B(A(dropout(x)))`.
///
/// `A` and `B` are bias-free [`Linear`]s in Burn's `[in, out]` layout, so `lora_a.weight` is
/// `[in, rank]` and `lora_b.weight` is `[rank, out]` (PEFT stores the transposes,
/// `lora_A.weight` `[rank, in]` and `lora_B.weight` `[out, rank]`). `A` is Kaiming-uniform
/// with bound `1/sqrt(in)` (PEFT's `kaiming_uniform_(a=sqrt(5))`), `B` is zero.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `A`: `in → rank`.
    pub lora_a: Linear<B>,
    /// `B`: `rank → out`.
    pub lora_b: Linear<B>,
    /// Dropout on the adapter input (active only on an autodiff backend).
    pub dropout: Dropout,
    /// `alpha / rank`.
    pub scale: f64,
}

impl<B: Backend> LoraAdapter<B> {
    /// A fresh adapter for a `d_in → d_out` projection (its output is exactly zero).
    ///
    /// `config` must be valid ([`LoraConfig::validate`]).
    pub fn new(d_in: usize, d_out: usize, config: &LoraConfig, device: &Device<B>) -> Self {
        let lora_a = LinearConfig::new(d_in, config.rank)
            .with_bias(false)
            .with_initializer(Initializer::KaimingUniform {
                gain: 1.0 / 3f64.sqrt(),
                fan_out_only: false,
            })
            .init(device);
        let lora_b = LinearConfig::new(config.rank, d_out)
            .with_bias(false)
            .with_initializer(Initializer::Zeros)
            .init(device);
        Self {
            lora_a,
            lora_b,
            dropout: DropoutConfig::new(config.dropout).init(),
            scale: config.scale(),
        }
    }

    /// The adapter's contribution to the projection's output, in `x`'s dtype.
    ///
    /// The adapter runs in its own weights' dtype: with a half-precision base and f32
    /// adapters (see [`crate::precision`]) `x` is cast to f32 and the result back.
    ///
    /// # Shapes
    /// - `x`: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D>
    where
        B: DecoderBackend,
    {
        let dtype = x.dtype();
        let adapter_dtype = self.lora_a.weight.val().dtype();
        if dtype != adapter_dtype {
            let delta = self.forward(x.cast(FloatDType::from(adapter_dtype)));
            return delta.cast(FloatDType::from(dtype));
        }
        let h = linear(&self.lora_a, self.dropout.forward(x));
        linear(&self.lora_b, h).mul_scalar(self.scale)
    }

    /// The update as a dense matrix, `scale · A·B`, in Burn's `[in, out]` layout.
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        self.lora_a
            .weight
            .val()
            .matmul(self.lora_b.weight.val())
            .mul_scalar(self.scale)
    }
}

/// Adapters of one attention block (`None` = projection not targeted).
#[derive(Module, Debug)]
pub struct AttentionLora<B: Backend> {
    /// On `self_attn.q_proj`.
    pub q_proj: Option<LoraAdapter<B>>,
    /// On `self_attn.k_proj`.
    pub k_proj: Option<LoraAdapter<B>>,
    /// On `self_attn.v_proj`.
    pub v_proj: Option<LoraAdapter<B>>,
    /// On `self_attn.o_proj`.
    pub o_proj: Option<LoraAdapter<B>>,
}

/// Adapters of one MLP block (`None` = projection not targeted).
#[derive(Module, Debug)]
pub struct MlpLora<B: Backend> {
    /// On `mlp.gate_proj`.
    pub gate_proj: Option<LoraAdapter<B>>,
    /// On `mlp.up_proj`.
    pub up_proj: Option<LoraAdapter<B>>,
    /// On `mlp.down_proj`.
    pub down_proj: Option<LoraAdapter<B>>,
}

/// Adapters of one decoder layer.
#[derive(Module, Debug)]
pub struct LayerLora<B: Backend> {
    /// Attention adapters.
    pub self_attn: AttentionLora<B>,
    /// MLP adapters.
    pub mlp: MlpLora<B>,
}

impl<B: Backend> LayerLora<B> {
    /// The adapter on `projection`, if that projection is targeted.
    pub fn adapter(&self, projection: Projection) -> Option<&LoraAdapter<B>> {
        let (a, m) = (&self.self_attn, &self.mlp);
        match projection {
            Projection::Q => a.q_proj.as_ref(),
            Projection::K => a.k_proj.as_ref(),
            Projection::V => a.v_proj.as_ref(),
            Projection::O => a.o_proj.as_ref(),
            Projection::Gate => m.gate_proj.as_ref(),
            Projection::Up => m.up_proj.as_ref(),
            Projection::Down => m.down_proj.as_ref(),
        }
    }
}

/// A set of LoRA adapters for every layer of one model architecture, and nothing else: the
/// base weights live in a [`CausalLm`] that any number of sets can share (student, LoRA-EMA
/// teacher, ...). Module paths are `layers.N.self_attn.q_proj.lora_a.weight`, ...
///
/// Apply it with [`WithLora`](super::WithLora) (a borrowed view), [`LoraModel`](super::LoraModel)
/// (an owned, trainable pair) or [`merge`](super::merge).
#[derive(Module, Debug)]
pub struct LoraSet<B: Backend> {
    /// Per decoder layer.
    pub layers: Vec<LayerLora<B>>,
    /// The configuration the set was built from.
    #[module(skip)]
    pub config: LoraConfig,
}

impl<B: Backend> LoraSet<B> {
    /// A fresh adapter set for a model of the given architecture: the model's output is
    /// unchanged until the adapters are trained (every `B` is zero).
    ///
    /// # Errors
    /// [`LoraError::InvalidConfig`] when `config` does not validate.
    pub fn new(
        config: &LoraConfig,
        model: &ModelConfig,
        device: &Device<B>,
    ) -> Result<Self, LoraError> {
        config.validate()?;
        let (h, i) = (model.hidden_size, model.intermediate_size);
        let q = model.num_heads * model.head_dim;
        let kv = model.num_kv_heads * model.head_dim;
        let adapter = |projection: Projection, d_in, d_out| {
            config
                .targets(projection.name())
                .then(|| LoraAdapter::new(d_in, d_out, config, device))
        };
        let layers = (0..model.num_layers)
            .map(|_| LayerLora {
                self_attn: AttentionLora {
                    q_proj: adapter(Projection::Q, h, q),
                    k_proj: adapter(Projection::K, h, kv),
                    v_proj: adapter(Projection::V, h, kv),
                    o_proj: adapter(Projection::O, q, h),
                },
                mlp: MlpLora {
                    gate_proj: adapter(Projection::Gate, h, i),
                    up_proj: adapter(Projection::Up, h, i),
                    down_proj: adapter(Projection::Down, i, h),
                },
            })
            .collect();
        Ok(Self {
            layers,
            config: config.clone(),
        })
    }

    /// The configuration the set was built from.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// Checks that every adapter fits the projection it adapts in `base` (layer count,
    /// `A: [in, rank]`, `B: [rank, out]`) without initializing any weight.
    ///
    /// # Errors
    /// [`LoraError::Incompatible`] naming the first adapter weight that does not fit.
    pub fn check_compatible(&self, base: &CausalLm<B>) -> Result<(), LoraError> {
        let (want, have) = (base.model.layers.len(), self.layers.len());
        if want != have {
            return Err(LoraError::Incompatible {
                tensor: "layers".into(),
                expected: vec![want],
                found: vec![have],
            });
        }
        for (n, (layer, lora)) in base.model.layers.iter().zip(&self.layers).enumerate() {
            for projection in Projection::ALL {
                let Some(adapter) = lora.adapter(projection) else {
                    continue;
                };
                let [d_in, d_out] = layer.projection(projection).weight.lazy_shape().dims();
                let a = adapter.lora_a.weight.lazy_shape().to_vec();
                let rank = a.get(1).copied().unwrap_or(0);
                let b = adapter.lora_b.weight.lazy_shape().to_vec();
                for (which, expected, found) in [
                    ("lora_a", vec![d_in, rank], a),
                    ("lora_b", vec![rank, d_out], b),
                ] {
                    if expected != found {
                        return Err(LoraError::Incompatible {
                            tensor: format!("layers.{n}.{}.{which}.weight", projection.path()),
                            expected,
                            found,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// A set applies as the additive term of every adapted projection: `Δ(x) = scale · B(A(x))`
/// (layer `N` uses `layers[N]`).
impl<B: DecoderBackend> ProjectionDelta<B> for LoraSet<B> {
    fn delta(&self, layer: usize, projection: Projection, x: Tensor<B, 3>) -> Option<Tensor<B, 3>> {
        let adapter = self.layers.get(layer)?.adapter(projection)?;
        Some(adapter.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::module::Param;

    type B = NdArray<f32>;

    #[test]
    fn forward_is_scale_times_x_a_b() {
        let device = Default::default();
        let config = LoraConfig {
            rank: 2,
            alpha: 3.0,
            ..Default::default()
        };
        let mut adapter = LoraAdapter::<B>::new(3, 2, &config, &device);
        // A [in=3, r=2], B [r=2, out=2]
        let a = [[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]];
        let b = [[1.0, 2.0], [-1.0, 0.5]];
        adapter.lora_a.weight = Param::from_tensor(Tensor::from_floats(a, &device));
        adapter.lora_b.weight = Param::from_tensor(Tensor::from_floats(b, &device));
        let x = [2.0f32, -1.0, 0.5];
        let y = adapter
            .forward(Tensor::<B, 1>::from_floats(x, &device).reshape([1, 3]))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        // x·A = [2 - 0.5, 1 + 1] = [1.5, 2]; ·B = [1.5 - 2, 3 + 1] = [-0.5, 4]; scale 1.5
        assert_eq!(y, vec![-0.75, 6.0]);
        let delta = adapter.delta_weight().into_data().to_vec::<f32>().unwrap();
        // 1.5 · A·B, A·B = [[1, 2], [1.5, 0.5], [-2, 1]]
        assert_eq!(delta, vec![1.5, 3.0, 2.25, 0.75, -3.0, 1.5]);
    }

    #[test]
    fn fresh_adapter_outputs_zero_and_a_is_bounded() {
        let device = Default::default();
        B::seed(&device, 1);
        let adapter = LoraAdapter::<B>::new(16, 4, &LoraConfig::default(), &device);
        let y = adapter.forward(Tensor::<B, 2>::ones([2, 16], &device));
        assert!(y
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0.0));
        let a = adapter
            .lora_a
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let bound = 1.0 / 16f32.sqrt();
        assert!(a.iter().all(|v| v.abs() <= bound) && a.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn set_targets_only_the_configured_projections() {
        let model = ModelConfig::from_json(
            r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 12, "num_hidden_layers": 3, "num_attention_heads": 2,
            "num_key_value_heads": 1}"#,
        )
        .unwrap();
        let config = LoraConfig {
            rank: 2,
            target_modules: vec!["v_proj".into(), "down_proj".into()],
            ..Default::default()
        };
        let set = LoraSet::<B>::new(&config, &model, &Default::default()).unwrap();
        assert_eq!(set.layers.len(), 3);
        let l = &set.layers[0];
        assert!(l.adapter(Projection::Q).is_none() && l.adapter(Projection::Gate).is_none());
        let v = l.adapter(Projection::V).unwrap();
        assert_eq!(v.lora_a.weight.lazy_shape().to_vec(), vec![8, 2]);
        assert_eq!(v.lora_b.weight.lazy_shape().to_vec(), vec![2, 4]);
        let d = l.adapter(Projection::Down).unwrap();
        assert_eq!(d.lora_a.weight.lazy_shape().to_vec(), vec![12, 2]);
        assert_eq!(d.lora_b.weight.lazy_shape().to_vec(), vec![2, 8]);
        let base = CausalLm::<B>::new(&model, &Default::default());
        set.check_compatible(&base).unwrap();

        let other = ModelConfig {
            intermediate_size: 16,
            ..model.clone()
        };
        let err = set
            .check_compatible(&CausalLm::<B>::new(&other, &Default::default()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layers.0.mlp.down_proj.lora_a.weight"),
            "{err}"
        );
        let shallow = ModelConfig {
            num_layers: 2,
            ..model
        };
        let err = set
            .check_compatible(&CausalLm::<B>::new(&shallow, &Default::default()))
            .unwrap_err();
        assert!(matches!(err, LoraError::Incompatible { ref tensor, .. } if tensor == "layers"));
    }
}
