#!/usr/bin/env bash
# Builds the page of examples/web into DIR (default: target/web): the example for wasm32 in
# release, its bindings by `wasm-bindgen --target web` (pkg/), the page's files, and the
# digits the command line uses (data/digits.csv, linked, not copied). Prints DIR.
#   scripts/web-build.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/wasm-setup.sh
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
out=${1:-$target_dir/web}
cargo build --quiet --release --target wasm32-unknown-unknown --no-default-features --example web
rm -rf "$out"
mkdir -p "$out/data"
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" --out-name web \
  "$target_dir/wasm32-unknown-unknown/release/examples/web.wasm"
cp examples/web/index.html examples/web/style.css "$out/"
ln -s "$PWD/data/digits.csv" "$out/data/digits.csv"
echo "$out"
