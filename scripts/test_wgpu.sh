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
# cubecl logs the adapter wgpu picked (name, driver) when the device is first used.
export RUST_LOG="${RUST_LOG:-cubecl_wgpu=info}"
features=sdpo/wgpu,sdpo-cli/wgpu
# One invocation (one feature set): the suite's `wgpu::` tests and the CLI's `wgpu_*` tests.
# They share one device: two test threads keep lavapipe's own worker threads busy without
# oversubscribing a 2-core machine.
cargo test -p sdpo -p sdpo-cli --features "$features" --test backends --test cli \
  -- wgpu --test-threads 2 "$@"
# The adapter wgpu picked, as the CLI (built by the step above) reports it.
target/debug/sdpo --backend wgpu inspect builtin 2>&1 | grep -iE 'adapter|llvmpipe|vulkan' | head -3 || true
