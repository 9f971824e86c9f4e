#!/usr/bin/env bash
# The main job: sets up what is missing, then runs the demo batch on the best adapter.
# Extra arguments go to `gpu-activations demo` (e.g. --backend gl, --rows 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --release --quiet -- demo "$@"
