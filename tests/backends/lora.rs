//! LoRA on the tiny fixture models: fresh adapters change nothing, a view equals the merged
//! model, an optimizer step moves only adapters, two adapter sets share one base.
//!
//! Tolerances: a view `W x + s·B(A x)` and a merged `(W + s·A·B) x` round differently in f32
//! (~1e-7 relative per op on the CPU, a few times that with a GPU's reordered sums, grown
//! through two layers and the head to ~1e-6), so they must agree to 1e-5 relative to the
//! largest logit; a real mistake (a transposed or missing adapter, a wrong scale) moves logits
//! by ≥ 1e-2.

use burn::backend::Autodiff;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use sdpo::models::lora::{merge, param_bytes, LoraConfig, LoraModel, LoraSet, WithLora};
use sdpo::models::{CausalDecoder, CausalLm};

use crate::lora_fixtures::*;
use crate::Target;

/// Adapters as initialized (B = 0) leave the logits unchanged: bit-identical on the CPU (the
/// same kernels run, plus an exact `+ 0`); within 1e-6 of the largest logit on a GPU, where the
/// fusion compiler may run the base product through another kernel when its input also feeds
/// the adapter (a different summation order, ~1e-7 per op).
pub fn fresh_adapters_leave_logits_unchanged<B: Target>() {
    for name in FIXTURES {
        let base = load::<B>(name);
        let lora =
            LoraSet::<B>::new(&LoraConfig::default(), &base.config, &Default::default()).unwrap();
        let (ids, mask) = batch::<B>();
        let plain = values(base.forward_logits(ids.clone(), mask.clone()));
        let viewed = values(
            WithLora::new(&base, &lora)
                .unwrap()
                .forward_logits(ids, mask),
        );
        if B::GPU {
            let err = rel_error(&viewed, &plain);
            assert!(err <= 1e-6, "{name}: {err}");
        } else {
            assert!(bits(&plain) == bits(&viewed), "{name}: logits changed");
        }
    }
}

/// A base + adapters view computes what the merged model does, and differs from the base.
pub fn view_equals_merged_model_and_differs_from_base<B: Target>() {
    let _serial = crate::common::serial();
    for name in FIXTURES {
        let base = load::<B>(name);
        let lora = random_lora::<B>(&base.config, 7);
        let (ids, mask) = batch::<B>();
        let viewed = values(
            WithLora::new(&base, &lora)
                .unwrap()
                .forward_logits(ids.clone(), mask.clone()),
        );
        let merged = merge(&base, &lora).unwrap();
        let merged_logits = values(merged.forward_logits(ids.clone(), mask.clone()));
        let plain = values(base.forward_logits(ids, mask));
        let err = rel_error(&viewed, &merged_logits);
        eprintln!("{name}: view vs merged max relative error {err:.2e}");
        assert!(err <= 1e-5, "{name}: {err}");
        let change = rel_error(&viewed, &plain);
        assert!(
            change > 1e-2,
            "{name}: the adapters barely matter ({change})"
        );
    }
}

/// AdamW on a LoRA model moves every adapter tensor and no base weight.
pub fn optimizer_step_moves_only_adapters<T: Target>() {
    let _serial = crate::common::serial();
    let device = Default::default();
    let base = load::<Autodiff<T>>("qwen2_bf16");
    let lora_config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1,
        ..Default::default()
    };
    Autodiff::<T>::seed(&device, 5);
    let lora = LoraSet::<Autodiff<T>>::new(&lora_config, &base.config, &device)
        .unwrap()
        .map(&mut Randomize { amp: 0.2 });
    let model = LoraModel::new(base, lora).unwrap();
    let base_before = all_params(&model.base);
    let lora_before = all_params(&model.lora);

    // Next-token cross-entropy on the real tokens.
    let (ids, mask) = batch::<Autodiff<T>>();
    let logits = model.forward_logits(ids.clone(), mask);
    let [batch, seq, vocab] = logits.dims();
    let logp = log_softmax(logits.slice([0..batch, 0..seq - 1, 0..vocab]), 2);
    let targets = ids.slice([0..batch, 1..seq]).unsqueeze_dim::<3>(2);
    let loss = logp.gather(2, targets).mean().neg();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    // Two tensors (A, B) per projection, seven projections per layer.
    assert_eq!(grads.len(), 2 * 7 * model.base.config.num_layers);

    let mut optim = AdamWConfig::new().init::<Autodiff<T>, LoraModel<Autodiff<T>>>();
    let model = optim.step(1e-2, model, grads);

    let base_after = all_params(&model.base);
    assert_eq!(base_before.len(), base_after.len());
    for (i, (before, after)) in base_before.iter().zip(&base_after).enumerate() {
        assert_eq!(bits(before), bits(after), "base parameter #{i} changed");
    }
    let lora_after = all_params(&model.lora);
    for (i, (before, after)) in lora_before.iter().zip(&lora_after).enumerate() {
        assert_ne!(
            bits(before),
            bits(after),
            "adapter parameter #{i} did not move"
        );
    }
}

/// Two adapter sets on one base: different functions, one copy of the base.
pub fn two_adapter_sets_share_one_base<B: Target>() {
    let _serial = crate::common::serial();
    let base = load::<B>("llama3_rope");
    let student = random_lora::<B>(&base.config, 1);
    let teacher = random_lora::<B>(&base.config, 2);
    let (s, t) = (
        WithLora::new(&base, &student).unwrap(),
        WithLora::new(&base, &teacher).unwrap(),
    );
    let (ids, mask) = batch::<B>();
    let ls = values(s.forward_logits(ids.clone(), mask.clone()));
    let lt = values(t.forward_logits(ids.clone(), mask.clone()));
    assert!(
        rel_error(&ls, &lt) > 1e-2,
        "the two views compute the same thing"
    );

    // Generation and scoring see the views as decoders of the base's architecture.
    assert_eq!(s.model_config(), &base.config);
    let positions = sdpo_models::arch::positions_from_mask(mask.clone());
    let hidden = s.decode_hidden(ids, mask, positions, None);
    assert_eq!(
        bits(&values(s.decode_logits(hidden))),
        bits(&ls),
        "decode path differs from forward_logits"
    );

    // Each set holds its adapters and nothing else; the views own no parameters.
    let want = adapter_bytes(&base.config, 4);
    assert_eq!(param_bytes(&student), want);
    assert_eq!(param_bytes(&teacher), want);
    assert!(param_bytes(&base) > 10 * want);
    assert!(std::ptr::eq(s.base, t.base) && std::ptr::eq(s.base, &base));
    assert_eq!(
        std::mem::size_of::<WithLora<'_, B>>(),
        2 * std::mem::size_of::<&CausalLm<B>>()
    );
}
