#!/usr/bin/env bash
# GPU verification in one go (DESIGN.md, "GPU builds"): build, CUDA tests, benchmarks at the real
# and large sizes, compute-sanitizer memcheck + racecheck on every CUDA op, a final table.
#
# usage: scripts/gpu_check.sh OUTDIR
# Needs: a CUDA build of torch, nvcc, compute-sanitizer; the real data under $IRLLREC_FAST_SHARED
# (default ./gpu_data, a git-ignored copy made by scripts/copy_gpu_data.sh). Writes summary.txt,
# bench.json, table.md and logs.tgz into OUTDIR (at most 8 files come back from the GPU machine).
# Each stage has its own time limit so that a slow one cannot starve the rest; budget 8 minutes.
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export IRLLREC_FAST_SHARED=${IRLLREC_FAST_SHARED:-$ROOT/gpu_data}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
# stages to run (default all but profile): GPU_CHECK_STAGES="tests bench tf32 sanitizer profile";
# GPU_CHECK_TESTS / GPU_CHECK_BENCH narrow the tests and benchmarks to some files;
# GPU_CHECK_PROFILE_ARGS is passed to scripts/profile_step.py (e.g. "--compile --bf16 --graph").
STAGES=${GPU_CHECK_STAGES:-tests bench sanitizer}
TESTS=${GPU_CHECK_TESTS:-tests/ops tests/test_graph.py tests/test_losses.py tests/test_lean_autograd.py tests/test_library.py tests/test_info.py tests/test_rows.py}
BENCH=${GPU_CHECK_BENCH:-benchmarks}
want() { [[ " $STAGES " == *" $1 "* ]]; }
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # scripts/*.py import the in-place build
SUMMARY="$OUT/summary.txt"
WORK=$(mktemp -d)  # logs live outside OUT and come back packed (8 files at most return)
LOGS="$WORK/logs"
mkdir -p "$LOGS"
: > "$SUMMARY"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$SUMMARY"; }
pack() { tar czf "$OUT/logs.tgz" -C "$WORK" logs 2>/dev/null; }

stamp "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
stamp "build (sm ${TORCH_CUDA_ARCH_LIST}, ${MAX_JOBS} jobs)"
if ! timeout 300 $PY setup.py build_ext --inplace > "$LOGS/build.log" 2>&1; then
  stamp "BUILD FAILED"; grep -B2 -A8 -i "error" "$LOGS/build.log" | head -60 | tee -a "$SUMMARY"; pack; exit 1
fi
grep -iE "spill" "$LOGS/build.log" | grep -v " 0 bytes spill" | head -10 >> "$SUMMARY"
$PY -m irllrec_fast.info 2>&1 | tee -a "$SUMMARY"

$PY - <<'PY' 2>&1 | tee -a "$SUMMARY"
import torch
x = torch.empty(2**30, dtype=torch.float32, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(10): y.copy_(x)
end.record(); torch.cuda.synchronize()
print(f"bandwidth_gbs {2 * x.numel() * 4 * 10 / (start.elapsed_time(end) / 1e3) / 1e9:.0f} (device-to-device copy, read + write)")
PY
BW=$(grep -o "bandwidth_gbs [0-9]*" "$SUMMARY" | tail -1 | cut -d' ' -f2)

if want tests; then
stamp "CUDA tests"
timeout 150 $PY -m pytest $TESTS -q -k "cuda" \
  -p no:cacheprovider > "$LOGS/tests_cuda.log" 2>&1
stamp "CUDA tests: $(tail -1 "$LOGS/tests_cuda.log")"
grep -E "^(FAILED|ERROR)" "$LOGS/tests_cuda.log" | head -30 | tee -a "$SUMMARY"
pack
fi

if want bench; then
stamp "benchmarks (real + large sizes)"
timeout 240 $PY -m pytest $BENCH --benchmark-only --bench-size=large -q -p no:cacheprovider \
  --benchmark-json="$OUT/bench.json" --benchmark-columns=median,stddev > "$LOGS/bench.log" 2>&1
stamp "benchmarks: $(tail -1 "$LOGS/bench.log")"
grep -E "^(FAILED|ERROR)" "$LOGS/bench.log" | head -20 | tee -a "$SUMMARY"
[ -f "$OUT/bench.json" ] && $PY scripts/summarize_bench.py "$OUT/bench.json" ${BW:+--bandwidth-gbs $BW} > "$OUT/table.md" 2>&1
pack
fi

if want tf32; then
stamp "benchmarks with TF32 matmuls allowed ($BENCH)"
timeout 240 $PY -m pytest $BENCH --benchmark-only --bench-size=large --allow-tf32 -q \
  -p no:cacheprovider --benchmark-json="$OUT/bench_tf32.json" --benchmark-columns=median \
  > "$LOGS/bench_tf32.log" 2>&1
stamp "benchmarks (tf32): $(tail -1 "$LOGS/bench_tf32.log")"
grep -E "^(FAILED|ERROR)" "$LOGS/bench_tf32.log" | head -20 | tee -a "$SUMMARY"
[ -f "$OUT/bench_tf32.json" ] && $PY scripts/summarize_bench.py "$OUT/bench_tf32.json" > "$OUT/table_tf32.md" 2>&1
pack
fi

if want profile; then
stamp "training-step profile"
timeout ${GPU_CHECK_PROFILE_TIMEOUT:-180} $PY scripts/profile_step.py ${GPU_CHECK_PROFILE_ARGS:-} \
  > "$OUT/profile.md" 2> "$LOGS/profile.log"
stamp "profile: exit $?"
pack
fi

if want sanitizer; then
stamp "compute-sanitizer memcheck + racecheck (in parallel)"
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 3 $PY scripts/sanitize_ops.py \
    > "$LOGS/sanitizer_$tool.log" 2>&1 &
done
wait
for tool in memcheck racecheck; do
  stamp "$tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize_ops:|Error' "$LOGS/sanitizer_$tool.log" | cut -c1-300 | tr '\n' ' ')"
done
pack
fi
stamp "done"
for f in table.md table_tf32.md profile.md; do [ -f "$OUT/$f" ] && cat "$OUT/$f"; done; exit 0
