#!/usr/bin/env bash
# What building for the browser needs, installed where missing (sourced after scripts/setup.sh
# by browser-test.sh and web-build.sh): the wasm32 target, and wasm-bindgen-cli at exactly
# the wasm-bindgen version in Cargo.lock (its runner and its bindings refuse any other).
rustup target add wasm32-unknown-unknown >/dev/null
wasm_bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$wasm_bindgen_version" ] ||
   [ "$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{ print $2 }')" != "$wasm_bindgen_version" ]; then
  echo "wasm-setup: installing wasm-bindgen-cli $wasm_bindgen_version" >&2
  # Its own lock file first; a registry that lacks one of the versions it pins (seen here:
  # webpki-roots 1.0.11) gets the newest compatible ones instead.
  cargo install --quiet --locked wasm-bindgen-cli --version "$wasm_bindgen_version" ||
    cargo install --quiet wasm-bindgen-cli --version "$wasm_bindgen_version"
fi
