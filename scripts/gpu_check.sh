#!/usr/bin/env bash
# GPU verification in one go (DESIGN.md, "GPU builds"): build, CUDA tests, compute-sanitizer
# memcheck + racecheck on every CUDA op, benchmarks at the real and large sizes, a final table.
#
# usage: scripts/gpu_check.sh OUTDIR
# Needs: a CUDA build of torch, nvcc, compute-sanitizer; the real data under $IRLLREC_FAST_SHARED
# (default ./gpu_data, a git-ignored copy made by scripts/copy_gpu_data.sh). Writes logs and
# benchmark JSON into OUTDIR. Budget: under 8 minutes on an H100/H200.
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export IRLLREC_FAST_SHARED=${IRLLREC_FAST_SHARED:-$ROOT/gpu_data}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$SUMMARY"; }

stamp "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
stamp "build"
$PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { stamp "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|warning" "$OUT/build.log" | grep -v " 0 bytes spill" | head -20 >> "$SUMMARY"
$PY -m irllrec_fast.info 2>&1 | tee -a "$SUMMARY"

stamp "bandwidth (device-to-device copy, bytes read + written)"
$PY - <<'PY' 2>&1 | tee -a "$SUMMARY"
import torch
x = torch.empty(2**30, dtype=torch.float32, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(10): y.copy_(x)
end.record(); torch.cuda.synchronize()
print(f"bandwidth_gbs {2 * x.numel() * 4 * 10 / (start.elapsed_time(end) / 1e3) / 1e9:.0f}")
PY
BW=$(grep -o "bandwidth_gbs [0-9]*" "$SUMMARY" | tail -1 | cut -d' ' -f2)

stamp "CUDA tests"
$PY -m pytest tests -q -x -k "cuda" -p no:cacheprovider > "$OUT/tests_cuda.log" 2>&1
stamp "tests: $(tail -1 "$OUT/tests_cuda.log")"
$PY -m pytest tests -q -p no:cacheprovider -k "not cuda" --deselect tests/test_trainer.py > "$OUT/tests_rest.log" 2>&1 &
REST=$!

for tool in memcheck racecheck; do
  stamp "compute-sanitizer $tool"
  timeout 180 compute-sanitizer --tool $tool --error-exitcode 3 $PY scripts/sanitize_ops.py \
    > "$OUT/sanitizer_$tool.log" 2>&1
  stamp "$tool exit $? : $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize_ops' "$OUT/sanitizer_$tool.log" | tr '\n' ' ' | cut -c1-300)"
done
wait $REST
stamp "other tests on this machine: $(tail -1 "$OUT/tests_rest.log")"

stamp "benchmarks (real + large sizes)"
timeout 300 $PY -m pytest benchmarks --benchmark-only --bench-size=large -q -p no:cacheprovider \
  --benchmark-json="$OUT/bench.json" --benchmark-columns=median,stddev > "$OUT/bench.log" 2>&1
stamp "benchmarks: $(tail -1 "$OUT/bench.log")"
$PY scripts/summarize_bench.py "$OUT/bench.json" ${BW:+--bandwidth-gbs $BW} > "$OUT/table.md" 2>&1
stamp "done"
# at most 8 files come back from the device machine: pack the logs
tar czf "$OUT/logs.tgz" -C "$OUT" $(cd "$OUT" && ls *.log) && rm -f "$OUT"/*.log
cat "$OUT/table.md"
