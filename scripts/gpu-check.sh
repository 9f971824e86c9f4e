#!/usr/bin/env bash
# Runs on a lent machine with an NVIDIA GPU (see the device notes in ../shared/device/README.md):
# unpacks the Vulkan loader carried in .gl/, points Vulkan at the NVIDIA driver, then runs
# `info`, `check` (automatic and with each row kernel forced), `bench --json`, the row kernels
# side by side (to tune the automatic choice on hardware), half storage against f32, the linear
# layer against the FMA peak (each matrix kernel), the fused linear cross-entropy, and the
# PyTorch comparison, writing every log under $OUT.
# Expects target/release/gpu-activations (built on the development machine) to travel along;
# ARITH may name the built `cargo bench --bench arithmetic` binary (target/release/deps/
# arithmetic-*) to split each activation's time into memory traffic and arithmetic there too.
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
for k in subgroup workgroup per-row segmented; do
  "$BIN" check --row-kernel "$k" > "$OUT/check-$k.txt" 2>&1
  echo "check --row-kernel $k: exit $?" | tee -a "$OUT/status.txt"
done
for k in subgroup workgroup per-row; do
  "$BIN" bench --row-kernel "$k" --op softmax --op log-softmax --op softmax-backward \
    --op cross-entropy --shape 4096,1024 --shape 65536,64 --shape 4096,1000 --shape 64,65536 \
    --json "$OUT/bench-rows-$k.json" > "$OUT/bench-rows-$k.txt" 2>&1
  echo "bench --row-kernel $k: exit $?" | tee -a "$OUT/status.txt"
done
# Half storage against f32 on the same card, and the linear layer against the FMA peak.
"$BIN" bench --dtype f32 --dtype f16 --dtype bf16 --op copy --op relu --op relu-backward \
  --op gelu --op softmax --op softmax-backward --op cross-entropy \
  --json "$OUT/bench-half.json" > "$OUT/bench-half.txt" 2>&1
echo "bench --dtype: exit $?" | tee -a "$OUT/status.txt"
for kernel in tiled registers; do
  "$BIN" bench --op linear --shape 4096,1024,1024 --matmul-kernel "$kernel" \
    --json "$OUT/bench-linear-$kernel.json" > "$OUT/bench-linear-$kernel.txt" 2>&1
  echo "bench --op linear --matmul-kernel $kernel: exit $?" | tee -a "$OUT/status.txt"
done
# The fused linear cross-entropy at the shape (materialised path alongside where its
# logits fit one binding), time and peak memory.
"$BIN" bench --op linear-cross-entropy --runs 3 --json "$OUT/bench-lce.json" \
  > "$OUT/bench-lce.txt" 2>&1
echo "bench --op linear-cross-entropy: exit $?" | tee -a "$OUT/status.txt"
if [ -n "${ARITH:-}" ]; then
  "$ARITH" > "$OUT/arithmetic.txt" 2>&1; echo "arithmetic: exit $?" | tee -a "$OUT/status.txt"
fi
python3 scripts/compare_torch.py "$OUT/bench.json" --out "$OUT/torch.json" > "$OUT/torch.txt" 2>&1
echo "compare_torch: exit $?" | tee -a "$OUT/status.txt"
tail -n 3 "$OUT/check.txt"
cat "$OUT/torch.txt"
