#!/usr/bin/env bash
# The GPU code path without a GPU: the backend-generic suite (tests/backends, its `wgpu::`
# tests) and the CLI's Wgpu smoke run, on whatever Vulkan device wgpu picks (in CI: Mesa's
# lavapipe, installed by scripts/install_lavapipe.sh). One cargo invocation builds both test
# binaries with the same features, so Burn is compiled once for them.
#
# Caches stay out of the repository: Burn's autotune cache goes to target/, Mesa's shader
# cache to $XDG_CACHE_HOME (default ~/.cache).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# Burn 0.21's autotune (CubeCL 0.10) files each shape under a rounded key ("anchor") and runs
# the kernel it picked for the first shape it met on every later shape of that key, even one the
# kernel cannot take: the device thread panics ("Should run when selected by autotune"; the test
# sees `CallError`), and once a loss gradient came out wrong. Which shape comes first depends on
# the order the tests run in, so a fresh machine failed now and then (README, "GPUs"). `full`
# tunes every exact shape: slower to tune, never a kernel that was not tried on the shape.
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-full}"
# cubecl logs the adapter wgpu picked (name, driver) when the device is first used.
export RUST_LOG="${RUST_LOG:-cubecl_wgpu=info}"
features=sdpo/wgpu,sdpo-cli/wgpu
# One invocation (one feature set): the suite's `wgpu::` tests and the CLI's `wgpu_*` tests.
# One test thread: with two test threads sharing the device, a fresh machine still failed now
# and then with the level above set (`CallError` from a panicked device thread in
# `wgpu::loss::distillation_loss_matches_the_reference`, 1 `.ci/run` in 3); every failure seen
# had tests running side by side on one device.
cargo test -p sdpo -p sdpo-cli --features "$features" --test backends --test cli \
  -- wgpu --test-threads 1 "$@"
# The adapter wgpu picked, as the CLI (built by the step above) reports it.
target/debug/sdpo --backend wgpu inspect builtin 2>&1 | grep -iE 'adapter|llvmpipe|vulkan' | head -3 || true
