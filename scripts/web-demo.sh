#!/usr/bin/env bash
# The page of examples/web, built and served on 127.0.0.1 (a secure context, as WebGPU needs):
# open the URL it prints in a browser with WebGPU (Chrome or Edge; Firefox and Safari where
# WebGPU is on). Ctrl-C stops it.
#   scripts/web-demo.sh [PORT]      # default 8000
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(scripts/web-build.sh)
exec python3 scripts/browser.py serve "$dir" "${1:-8000}"
