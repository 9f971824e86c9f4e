#!/usr/bin/env bash
# The crate as crates.io would receive it: `cargo package` builds the packaged sources (what
# `cargo publish` uploads), the .crate file stays under crates.io's 10 MB limit, and the
# packaged README links only to absolute URLs (crates.io cannot resolve a path of the
# repository). Extra arguments go to cargo package (e.g. --allow-dirty).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo package --locked "$@"
target_dir=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
crate=$(ls -t "$target_dir"/package/gpu-activations-*.crate | head -1)
bytes=$(stat -c %s "$crate")
echo "package-check: $crate is $bytes bytes"
if [ "$bytes" -ge 10000000 ]; then
  echo "package-check: over crates.io's 10 MB limit" >&2
  exit 1
fi
# Markdown links and images whose target is not an absolute URL or an anchor.
relative=$(tar -xzOf "$crate" --wildcards '*/README.md' |
  grep -noE '\]\([^)]+\)' | grep -vE '\]\((https?://|#)' || true)
if [ -n "$relative" ]; then
  echo "package-check: the README links to paths that do not exist on crates.io:" >&2
  echo "$relative" >&2
  exit 1
fi
echo "package-check: the packaged README links only to absolute URLs"
