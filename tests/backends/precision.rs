//! Half precision: logits of an f16 / bf16 model against the same model in f32, a LoRA trainer
//! step in half precision, and the refusal of a dtype the device cannot run.
//!
//! Tolerances: f16 keeps 11 significant bits (a rounding is ≤ 4.9e-4 relative) and bf16 8
//! (≤ 3.9e-3); every weight and activation of the two-layer fixtures is rounded once or a few
//! times, and the errors add up along the residual stream and the head's 64-term dot products.
//! So logits must agree within 1e-2 (f16; 1e-3 measured on lavapipe) and 8e-2 (bf16) of the
//! largest logit; a wrong cast
//! (an operand read in the other dtype) gives garbage of order 1.

use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};
use sdpo::core::TeacherMode;
use sdpo::models::kernels::DecoderBackend;
use sdpo::models::lora::LoraConfig;
use sdpo::models::{load_hf_dir, CausalLm, Precision};
use sdpo::train::{SdpoTrainer, TrainError};

use crate::common::{host_f32, serial};
use crate::lora_fixtures::fixture;
use crate::Target;

fn logits<B: DecoderBackend>(model: &CausalLm<B>) -> (Vec<f32>, burn::tensor::DType) {
    let device = Default::default();
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![5i64, 17, 200, 3, 9, 64, 0, 0, 12, 250, 7, 1], [2, 6]),
        &device,
    );
    let mask = Tensor::<B, 2, Bool>::from_data(
        TensorData::new(
            vec![
                true, true, true, true, true, true, false, false, true, true, true, true,
            ],
            [2, 6],
        ),
        &device,
    );
    let out = model.forward_logits(ids, mask);
    let dtype = out.dtype();
    // Padding rows (the first two positions of row 1) are excluded below.
    (host_f32(out), dtype)
}

fn max_rel_error(ours: &[f32], want: &[f32], vocab: usize) -> f32 {
    let real = |row: usize| row != 6 && row != 7;
    let (mut err, mut scale) = (0f32, 0f32);
    for (i, (a, b)) in ours.iter().zip(want).enumerate() {
        if real(i / vocab) {
            err = err.max((a - b).abs());
            scale = scale.max(b.abs());
        }
    }
    err / scale
}

/// Every fixture in f16 and bf16 (where the device supports them) against f32; where it does
/// not, the refusal names the precision and the backend.
pub fn half_precision_logits_match_f32<B: Target>() {
    let device = Default::default();
    for (precision, tolerance) in [(Precision::F16, 1e-2), (Precision::Bf16, 8e-2)] {
        if let Err(err) = precision.check::<B>(&device) {
            let text = err.to_string();
            assert!(
                text.contains(&format!("`{precision}`")) && text.contains(&B::name(&device)),
                "{text}"
            );
            eprintln!("{}: {precision} refused: {text}", B::NAME);
            continue;
        }
        for name in [
            "qwen2_bf16",
            "llama_tied_sharded",
            "qwen3_f16",
            "mistral_window",
        ] {
            let f32_model = load_hf_dir::<B>(fixture(name), &device).unwrap();
            let (want, _) = logits(&f32_model);
            let half = precision.cast(f32_model);
            let (got, dtype) = logits(&half);
            assert_eq!(
                dtype,
                burn::tensor::DType::F32,
                "logits leave the model as f32"
            );
            let vocab = want.len() / 12;
            let err = max_rel_error(&got, &want, vocab);
            eprintln!(
                "{} {name} {precision}: max relative error {err:.2e}",
                B::NAME
            );
            assert!(err <= tolerance, "{name} {precision}: {err}");
        }
    }
}

/// A LoRA trainer step in f16 is finite, keeps the base in f16 and the adapters in f32; a
/// device without f16 refuses it when the trainer is built, by name.
pub fn half_precision_lora_step_is_finite<B: Target>() {
    use burn::module::Module;
    let _serial = serial();
    let mut cfg = crate::trainer::small_config();
    cfg.precision = Precision::F16;
    cfg.lora = Some(LoraConfig::default());
    cfg.sdpo.teacher_mode = TeacherMode::LoraEma;
    let device = Default::default();
    if !Precision::F16.is_supported::<B>(&device) {
        match crate::trainer::try_trainer::<B>(cfg) {
            Err(TrainError::Precision(e)) => assert!(e.to_string().contains("`f16`"), "{e}"),
            Err(other) => panic!("expected a precision error, got {other}"),
            Ok(_) => panic!("{} accepted f16", B::NAME),
        }
        return;
    }
    let mut t: SdpoTrainer<burn::backend::Autodiff<B>> =
        crate::trainer::try_trainer::<B>(cfg).unwrap();
    let report = t.step().unwrap();
    assert!(report.metrics["loss"].is_finite(), "{:?}", report.metrics);
    assert!(report.metrics["grad_norm"].is_finite());
    let policy = t.policy();
    struct Dtypes(Vec<burn::tensor::DType>);
    impl<A: Backend> burn::module::ModuleVisitor<A> for Dtypes {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<A, D>>) {
            self.0.push(p.val().dtype());
        }
    }
    let mut base = Dtypes(Vec::new());
    policy.lm.visit(&mut base);
    let mut adapters = Dtypes(Vec::new());
    policy.lora.as_ref().unwrap().visit(&mut adapters);
    assert!(base.0.iter().all(|d| *d == burn::tensor::DType::F16));
    assert!(adapters.0.iter().all(|d| *d == burn::tensor::DType::F32));
}
