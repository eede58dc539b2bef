#!/usr/bin/env bash
# The GPU verification of the CUDA backend (issue #7), one script on a machine with an NVIDIA GPU:
# the CPU-vs-CUDA conformance test, then the GPU benchmark, then PyTorch on the same shapes when
# it is installed. Results go to $OUT (default ./gpu-results).
#   scripts/gpu-check.sh [BIN_DIR]    BIN_DIR holds kcache_conformance and kcache_gpu_bench
#                                     (default: build them with this machine's nvcc)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
BIN=${1:-}
STORIES=${STORIES:-../shared/models/stories260K.bin}
[ -f "$STORIES" ] || STORIES="$BIN/stories260K.bin"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv | tee "$OUT/device.txt"
nproc >> "$OUT/device.txt"

build() {
  cmake -S native -B native/build-gpu -G "$( command -v ninja >/dev/null && echo Ninja || echo 'Unix Makefiles')" \
    -DCMAKE_BUILD_TYPE=Release -DKCACHE_CUDA_ARCHITECTURES=90-real >/dev/null &&
    cmake --build native/build-gpu --target kcache_conformance kcache_gpu_bench -j"$(nproc)" >/dev/null
  BIN=native/build-gpu
}
if [ -z "$BIN" ]; then build; fi
# a prebuilt binary whose CUDA runtime is newer than this driver reports it (exit 2): build here
"$BIN/kcache_conformance" --stories "$STORIES" > "$OUT/conformance.txt" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "driver version is insufficient" "$OUT/conformance.txt"; then
  echo "prebuilt binaries need a newer driver; building with this machine's nvcc" | tee -a "$OUT/device.txt"
  build
  "$BIN/kcache_conformance" --stories "$STORIES" > "$OUT/conformance.txt" 2>&1
  rc=$?
fi
tail -n 3 "$OUT/conformance.txt"
echo "conformance exit $rc" | tee -a "$OUT/conformance.txt"
timeout 420 "$BIN/kcache_gpu_bench" > "$OUT/gpu-bench.txt" 2>&1
echo "gpu bench exit $?" | tee -a "$OUT/gpu-bench.txt"
KCACHE_CUDA_PROFILE=1 timeout 120 "$BIN/kcache_gpu_bench" --profile > "$OUT/gpu-profile.txt" 2>&1
grep PROFILE "$OUT/gpu-profile.txt"
timeout 120 "$BIN/kcache_gpu_bench" --variants > "$OUT/gpu-variants.txt" 2>&1
KCACHE_CUDA_GRAPHS=0 timeout 120 "$BIN/kcache_gpu_bench" --variants > "$OUT/gpu-variants-nographs.txt" 2>&1
timeout 90 python3 scripts/torch_compare.py > "$OUT/torch.txt" 2>&1
grep RESULT "$OUT/gpu-bench.txt" "$OUT/gpu-variants.txt" "$OUT/gpu-variants-nographs.txt" "$OUT/torch.txt" | grep -v bandwidth
exit $rc
