#!/usr/bin/env bash
# The library's tests in a browser: tests/browser.rs, built for wasm32 with wgpu's WebGPU
# backend, run in headless Chromium (--enable-unsafe-webgpu: Dawn over SwiftShader) through
# chromedriver by wasm-bindgen-test-runner. Installs what is missing: Chromium and its driver
# (Debian's packages), the wasm32 target, and wasm-bindgen-cli at exactly the wasm-bindgen
# version in Cargo.lock (the runner refuses any other). A missing browser fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export GPU_ACTIVATIONS_SETUP=test
source scripts/setup.sh
source scripts/wasm-setup.sh
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver || echo /usr/bin/chromedriver)}"
# Software WebGPU is slow to build pipelines; wgpu's own CI gives its browser tests 300 s.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
cargo test --target wasm32-unknown-unknown --no-default-features --test browser "$@"
