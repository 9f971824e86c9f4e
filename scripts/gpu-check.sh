#!/usr/bin/env bash
# Runs on a lent machine with an NVIDIA GPU (see the device notes in ../shared/device/README.md):
# unpacks the Vulkan loader carried in .gl/, points Vulkan at the NVIDIA driver, then runs
# `info`, `check`, `bench --json` and the PyTorch comparison, writing every log under $OUT.
# Expects target/release/gpu-activations (built on the development machine) to travel along.
set -uo pipefail
OUT="${OUT:-out}"
mkdir -p "$OUT"
BIN="${BIN:-target/release/gpu-activations}"

for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig 2>/dev/null || true
export VK_DRIVER_FILES="${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}"
export GPU_ACTIVATIONS_BACKEND="${GPU_ACTIVATIONS_BACKEND:-vulkan}"

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; } > "$OUT/gpu.txt"
"$BIN" info > "$OUT/info.txt" 2>&1; echo "info: exit $?" | tee -a "$OUT/status.txt"
"$BIN" check > "$OUT/check.txt" 2>&1; echo "check: exit $?" | tee -a "$OUT/status.txt"
"$BIN" bench --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1; echo "bench: exit $?" | tee -a "$OUT/status.txt"
python3 scripts/compare_torch.py "$OUT/bench.json" --out "$OUT/torch.json" > "$OUT/torch.txt" 2>&1
echo "compare_torch: exit $?" | tee -a "$OUT/status.txt"
tail -n 3 "$OUT/check.txt"
cat "$OUT/torch.txt"
