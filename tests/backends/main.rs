//! The backend-generic test suite: every test here is written once over `B: DecoderBackend` and
//! instantiated per backend by [`suite!`]:
//!
//! - `ndarray::` — NdArray (f32), always;
//! - `flex::` — Flex (f32; the CLI's CPU default), always;
//! - `wgpu::` — Burn's `Wgpu` backend with fusion and autotune (feature `wgpu`); CI runs it on
//!   Mesa's lavapipe software Vulkan device: `cargo test -p sdpo --features wgpu --test
//!   backends wgpu::`;
//! - `cuda::` — Burn's `Cuda` backend (feature `cuda`): `cargo test -p sdpo --features cuda
//!   --test backends cuda::` on a machine with an NVIDIA GPU (`scripts/gpu_check.sh` runs the
//!   prebuilt binary).
//!
//! Tolerances are stated where they are used. In short: CPU results are compared as tightly
//! as float32 allows; GPU kernels sum in another order (tree reductions, tiled matmuls) and
//! Vulkan/CUDA `exp`/`log` have looser ULP bounds than the CPU's libm, so GPU comparisons
//! allow what those differences can produce ([`Target::GPU`]) and no more.

mod common;
mod data_parallel;
mod generation;
mod gradients;
mod kernels;
mod lora;
#[path = "../../sdpo-models/tests/support/lora_fixtures.rs"]
mod lora_fixtures;
mod loss;
mod models;
mod precision;
mod trainer;

use sdpo::core::loss::LossBackend;
use sdpo::models::kernels::DecoderBackend;

/// A backend the suite runs on: its name and whether it is a GPU code path.
pub trait Target: LossBackend + DecoderBackend {
    /// Name printed in reports.
    const NAME: &'static str;
    /// Whether kernels run through CubeCL (Wgpu, Cuda): reductions reorder sums there.
    const GPU: bool;
}

impl Target for burn::backend::NdArray<f32> {
    const NAME: &'static str = "ndarray";
    const GPU: bool = false;
}

impl Target for burn::backend::Flex {
    const NAME: &'static str = "flex";
    const GPU: bool = false;
}

#[cfg(feature = "wgpu")]
impl Target for burn::backend::Wgpu {
    const NAME: &'static str = "wgpu";
    const GPU: bool = true;
}

#[cfg(feature = "cuda")]
impl Target for burn::backend::Cuda {
    const NAME: &'static str = "cuda";
    const GPU: bool = true;
}

/// Instantiates every test of the suite for one backend type, in a module of its own.
macro_rules! suite {
    ($backend:ty; $($group:ident: [$($test:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $group {
                $(
                    #[test]
                    fn $test() {
                        crate::$group::$test::<$backend>();
                    }
                )*
            }
        )*
    };
}

/// The suite's test list, for one backend.
macro_rules! all_tests {
    ($backend:ty) => {
        suite! { $backend;
            loss: [
                distillation_loss_matches_the_reference,
                fused_distillation_loss_matches_the_reference,
                fused_loss_equals_composite_on_extreme_inputs,
                fused_tail_is_exact_where_the_composite_cancels,
                fused_loss_covers_more_rows_than_a_grid_axis,
                policy_loss_and_advantages_match_the_reference,
            ],
            gradients: [
                gradients_match_finite_differences_for_every_support_and_alpha,
                gradients_match_finite_differences_for_every_aggregation,
                importance_ratio_and_old_log_probs_are_detached,
                all_masked_batch_is_zero_with_finite_zero_gradient,
            ],
            models: [
                qwen2_bf16_with_qkv_bias_matches_transformers,
                llama_tied_sharded_matches_transformers,
                llama3_rope_scaling_matches_transformers,
                qwen3_f16_with_qk_norm_matches_transformers,
                mistral_sliding_window_matches_transformers,
                kv_cache_continuation_matches_full_forward,
                logits_from_hidden_on_a_slice_matches_full_logits,
                left_padded_backward_is_finite,
            ],
            lora: [
                fresh_adapters_leave_logits_unchanged,
                view_equals_merged_model_and_differs_from_base,
                optimizer_step_moves_only_adapters,
                two_adapter_sets_share_one_base,
            ],
            generation: [
                greedy_generation_matches_full_recomputation,
                greedy_generation_equals_ndarray,
                kv_cache_path_feeds_one_token_per_step,
                same_seed_same_samples_different_seed_differs,
                stop_ids_end_rows_and_leave_other_rows_unchanged,
                generation_ends_when_every_row_has_stopped,
                max_new_tokens_is_respected,
                greedy_rows_do_not_depend_on_the_batch,
                sampled_rows_with_their_own_streams_do_not_depend_on_the_batch,
                generation_log_probs_equal_scoring_of_the_generated_batch,
                device_selection_equals_the_host_reference,
                host_copies_are_ids_only,
                concat_puts_the_response_after_the_prompt,
                response_logits_equal_the_slice_of_full_logits,
                response_log_probs_equal_log_softmax_and_gather,
                response_topk_equals_a_full_sort,
                gather_logits_picks_the_indexed_entries,
                scoring_rejects_bad_lengths_and_temperatures,
                bad_generation_inputs_are_typed_errors,
                non_finite_logits_are_an_error_not_a_token,
                repetition_penalty_matches_the_host_reference_by_recomputation,
            ],
            kernels: [
                rms_norm_kernel_equals_composite,
                rotary_kernel_equals_composite,
                swiglu_kernel_equals_composite,
                matmul_kernel_equals_composite_in_both_layouts,
                attention_kernel_equals_composite,
                cache_writes_equal_slice_assign,
                selection_kernel_equals_composite,
                greedy_generation_with_kernels_equals_composite,
                shared_prefill_and_finished_rows_leave_each_row_unchanged,
            ],
            precision: [
                half_precision_logits_match_f32,
                half_precision_lora_step_is_finite,
            ],
            trainer: [
                every_teacher_mode_and_loss_variant_runs_a_finite_step,
                fused_and_composite_training_steps_agree,
                a_batch_where_nothing_succeeds_gives_zero_distillation_loss,
                teacher_prompt_is_the_reprompt_template_with_a_peer_success,
                teacher_is_gathered_at_exactly_the_students_topk,
                teacher_scores_the_students_response_tokens_after_its_own_prompt,
                teacher_kl_is_the_mean_kl_over_the_tokens_with_a_teacher_signal,
                teacher_probe_decodes_like_the_generator,
                teacher_probe_leaves_training_unchanged,
                ema_moves_the_teacher_by_exactly_the_rate_and_frozen_never_moves,
                teacher_memory_is_one_copy_adapters_only_or_nothing,
                lora_training_leaves_every_base_weight_bit_identical,
                resume_continues_bit_identically,
                a_checkpoint_from_another_kind_of_run_is_refused_by_name,
                trust_region_is_the_reference_at_rate_0_and_live_at_rate_1_on_the_teacher_input,
                live_teacher_is_the_student_on_the_teacher_input,
                lora_ema_moves_only_the_adapters_by_exactly_the_rate,
                ema_teacher_stays_put_when_the_step_applied_no_update,
                on_policy_steps_run_one_student_forward_per_micro_batch,
                the_blends_grpo_term_reaches_the_weights,
            ],
        }
    };
}

/// Tests of the CPU backends only: data-parallel peers on one CPU device. On Wgpu (lavapipe),
/// Burn 0.21's autotune once panicked in its device thread with two peers training on one
/// device ("vecmat_unit_perpendicular: Rhs dimension n=89 must be a multiple of plane size 8"),
/// which ended every later test of the suite; the issue asks for the CPU device.
macro_rules! cpu_tests {
    ($backend:ty) => {
        suite! { $backend;
            data_parallel: [
                local_peers_train_like_one_process_on_the_whole_batch,
            ],
        }
    };
}

mod ndarray {
    all_tests!(burn::backend::NdArray<f32>);
    cpu_tests!(burn::backend::NdArray<f32>);
}

mod flex {
    all_tests!(burn::backend::Flex);
    cpu_tests!(burn::backend::Flex);
}

#[cfg(feature = "wgpu")]
mod wgpu {
    all_tests!(burn::backend::Wgpu);
}

#[cfg(feature = "cuda")]
mod cuda {
    all_tests!(burn::backend::Cuda);
}
