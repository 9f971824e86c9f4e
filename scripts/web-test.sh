#!/usr/bin/env bash
# The page of examples/web in headless Chromium's WebGPU (scripts/web-test.py): it trains to
# `gpu-activations train`'s figure and plots the CPU reference's values, and its screenshot is
# not blank. Installs what is missing (Chromium and chromedriver, the wasm32 target,
# wasm-bindgen-cli at the locked version); a missing browser or WebGPU fails it. Extra
# arguments go to web-test.py (e.g. --screenshot docs/web-page.png).
set -euo pipefail
cd "$(dirname "$0")/.."
export GPU_ACTIVATIONS_SETUP=test
source scripts/setup.sh
page=$(scripts/web-build.sh "${CARGO_TARGET_DIR:-$PWD/target}/web-test")
cli=$(cargo build --quiet --bin gpu-activations --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')
python3 scripts/web-test.py "$page" "$cli" "$@"
