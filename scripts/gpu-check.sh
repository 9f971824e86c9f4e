#!/usr/bin/env bash
# The check of a machine with a GPU (see ../shared/device/README.md), or, with --short, the same
# script on whatever adapter is here (lavapipe in CI) with a few ops at small shapes, so that the
# script, its output files and its report cannot rot.
#
#   scripts/gpu-check.sh [--short]        (or GPU_CHECK_SHORT=1)
#
# In its first minute it prints `info` and `check` (the portability verdict), then times `bench`
# (every op at its target shapes; --short: one op of each family at small shapes) and compares
# it with PyTorch on the same machine (scripts/compare_torch.py: CUDA where PyTorch sees a
# device, its CPU otherwise; one line saying it was skipped where PyTorch is not installed);
# the full run then adds `check` with each row kernel forced, the row kernels side by side, half
# storage against f32, the linear layer against the FMA peak (each matrix kernel) and the fused
# linear cross-entropy. Every step runs under the time left of a budget (BUDGET_S: 450 s, short
# 110 s) so that the whole stays under 8 minutes (2 short); a step there is no time left for is
# skipped with a line saying so, and the report ends by saying whether the run stopped early.
#
# Everything it writes lands under $OUT (default: a new temporary directory), with status.txt
# holding each step's exit status. It exits 1 if any step failed, 0 otherwise (a skipped step,
# and PyTorch's absence, are not failures).
#
# Where a GPU machine's Vulkan loader travels in .gl/*.deb (../shared/device/README.md), it is
# unpacked and Vulkan pointed at the NVIDIA driver; elsewhere the system's drivers serve.
# BIN names the gpu-activations binary (default target/release/gpu-activations, or, where that
# is missing in --short, target/debug's, built by cargo if need be). ARITH may name the built
# `cargo bench --bench arithmetic` binary to split each activation's time into memory traffic
# and arithmetic there too (full run only).
set -uo pipefail
cd "$(dirname "$0")/.."

SHORT="${GPU_CHECK_SHORT:-0}"
for arg in "$@"; do
  case "$arg" in
    --short) SHORT=1 ;;
    *) echo "gpu-check.sh: unknown argument $arg (usage: scripts/gpu-check.sh [--short])" >&2; exit 2 ;;
  esac
done
if [ "$SHORT" = 1 ]; then BUDGET_S="${BUDGET_S:-110}"; else BUDGET_S="${BUDGET_S:-450}"; fi
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}"
mkdir -p "$OUT"
: > "$OUT/status.txt"
START=$(date +%s)
FAILED=0
SKIPPED=0

BIN="${BIN:-target/release/gpu-activations}"
if [ ! -x "$BIN" ] && [ "$SHORT" = 1 ]; then
  BIN=target/debug/gpu-activations
  if [ ! -x "$BIN" ]; then
    echo "gpu-check: building $BIN" >&2
    cargo build --bin gpu-activations >"$OUT/build.txt" 2>&1 || { echo "gpu-check: the build failed (see $OUT/build.txt)"; exit 1; }
  fi
fi
if [ ! -x "$BIN" ]; then
  echo "gpu-check: no binary at $BIN (build it with cargo build --release, or set BIN)"
  exit 1
fi

# The GPU machine's Vulkan loader and the NVIDIA driver's ICD, where they are.
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig 2>/dev/null || true
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then
  export VK_DRIVER_FILES="$nvidia_icd"
fi
export GPU_ACTIVATIONS_BACKEND="${GPU_ACTIVATIONS_BACKEND:-vulkan}"
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="$OUT/xdg" && mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

left() { echo $((BUDGET_S - ($(date +%s) - START))); }

# show FILE [LINES]: prints a step's output (its last LINES lines), where the step ran.
show() {
  [ -f "$OUT/$1" ] || return 0
  if [ -n "${2:-}" ]; then tail -n "$2" "$OUT/$1"; else cat "$OUT/$1"; fi
}

# step NAME NEED_S FILE COMMAND...: runs COMMAND with stdout and stderr to $OUT/FILE, under the
# time left, if at least NEED_S seconds are; records its exit status.
step() {
  local name="$1" need="$2" file="$3"
  shift 3
  local t
  t=$(left)
  if [ "$t" -lt "$need" ]; then
    echo "$name: skipped (${t} s of the ${BUDGET_S} s budget left, it needs ~${need} s)" | tee -a "$OUT/status.txt"
    SKIPPED=$((SKIPPED + 1))
    return 0
  fi
  local began rc
  began=$(date +%s)
  timeout --kill-after=5 "$t" "$@" >"$OUT/$file" 2>&1
  rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "$name: stopped at the budget's end after $(($(date +%s) - began)) s (see $file)" | tee -a "$OUT/status.txt"
    SKIPPED=$((SKIPPED + 1))
    FAILED=1
    return 0
  fi
  echo "$name: exit $rc ($(($(date +%s) - began)) s, $file)" | tee -a "$OUT/status.txt"
  [ "$rc" = 0 ] || FAILED=1
}

echo "gpu-check: $([ "$SHORT" = 1 ] && echo short || echo full) run, ${BUDGET_S} s budget, writing to $OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"; } > "$OUT/gpu.txt"

# The portability verdict first.
step info 2 info.txt "$BIN" info
show info.txt
step check 20 check.txt "$BIN" check
show check.txt 3

# The benchmark, then PyTorch on the same shapes.
if [ "$SHORT" = 1 ]; then
  step bench 20 bench.txt "$BIN" bench --runs 3 --warmup 1 --shape 1024,256 \
    --op copy --op relu --op gelu-backward --op quick-gelu --op softmax --op softmax-backward \
    --op cross-entropy --op bce-with-logits --op glu --op prelu --op softmax-dim --op nll-loss \
    --json "$OUT/bench.json" --chart "$OUT/bench.svg"
  step "bench --op linear" 10 bench-linear.txt "$BIN" bench --op linear --op linear-cross-entropy \
    --shape 128,64,96 --runs 2 --warmup 1 --json "$OUT/bench-linear.json"
else
  step bench 120 bench.txt "$BIN" bench --json "$OUT/bench.json" --chart "$OUT/bench.svg"
fi
show bench.txt
torch_runs=30
[ "$SHORT" = 1 ] && torch_runs=5
if [ -f "$OUT/bench.json" ]; then
  if python3 -c "import torch" >/dev/null 2>&1; then
    step compare_torch 30 torch.txt python3 scripts/compare_torch.py "$OUT/bench.json" \
      --out "$OUT/torch.json" --runs "$torch_runs"
    show torch.txt
  else
    echo "compare_torch: skipped: PyTorch is not installed here (python3 -c 'import torch' fails)" | tee -a "$OUT/status.txt"
  fi
fi

if [ "$SHORT" != 1 ]; then
  for k in subgroup workgroup per-row segmented; do
    step "check --row-kernel $k" 15 "check-$k.txt" "$BIN" check --row-kernel "$k"
  done
  for k in subgroup workgroup per-row; do
    step "bench --row-kernel $k" 30 "bench-rows-$k.txt" "$BIN" bench --row-kernel "$k" \
      --op softmax --op log-softmax --op softmax-backward --op cross-entropy \
      --shape 4096,1024 --shape 65536,64 --shape 4096,1000 --shape 64,65536 \
      --json "$OUT/bench-rows-$k.json"
  done
  # Half storage against f32 on the same card, and the linear layer against the FMA peak.
  step "bench --dtype" 30 bench-half.txt "$BIN" bench --dtype f32 --dtype f16 --dtype bf16 \
    --op copy --op relu --op relu-backward --op gelu --op softmax --op softmax-backward \
    --op cross-entropy --json "$OUT/bench-half.json"
  for kernel in tiled registers; do
    step "bench --op linear --matmul-kernel $kernel" 20 "bench-linear-$kernel.txt" "$BIN" bench \
      --op linear --shape 4096,1024,1024 --matmul-kernel "$kernel" \
      --json "$OUT/bench-linear-$kernel.json"
  done
  # The fused linear cross-entropy at the issue's shape (materialised path alongside where its
  # logits fit one binding), time and peak memory.
  step "bench --op linear-cross-entropy" 30 bench-lce.txt "$BIN" bench \
    --op linear-cross-entropy --runs 3 --json "$OUT/bench-lce.json"
  if [ -n "${ARITH:-}" ]; then
    step arithmetic 30 arithmetic.txt "$ARITH"
  fi
fi

echo
echo "gpu-check: $(($(date +%s) - START)) s of the ${BUDGET_S} s budget; results in $OUT:"
cat "$OUT/status.txt"
if [ "$SKIPPED" -gt 0 ]; then
  echo "gpu-check: STOPPED EARLY: $SKIPPED step(s) skipped or cut at the budget's end"
fi
if [ "$FAILED" = 0 ]; then
  echo "gpu-check: every step that ran passed"
else
  echo "gpu-check: a step FAILED (see status.txt)"
fi
exit "$FAILED"
