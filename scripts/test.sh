#!/usr/bin/env bash
# The whole test suite: sets up what is missing, then runs every test on every adapter present
# (Vulkan: lavapipe and SwiftShader; GL: llvmpipe) and the CPU backend. Extra arguments go to
# cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
export GPU_ACTIVATIONS_SETUP=test
source scripts/setup.sh
cargo test "$@"
