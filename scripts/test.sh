#!/usr/bin/env bash
# The whole test suite: sets up what is missing, then runs every test on every adapter present
# (Vulkan: lavapipe and SwiftShader; GL: llvmpipe) and the CPU backend. Extra arguments go to
# cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
export GPU_ACTIVATIONS_SETUP=test
source scripts/setup.sh
# wgpu turns the Vulkan validation layer on in debug builds where it is installed; one test
# (tests/validation_layer.rs) runs every kernel under it and fails on any message, and the rest
# run without its overhead (and its own memory growth, ~9 MiB per 100,000 launches).
export WGPU_VALIDATION="${WGPU_VALIDATION:-0}"
cargo test "$@"
