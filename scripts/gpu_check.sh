#!/usr/bin/env bash
# GPU verification in one go (DESIGN.md, "GPU builds"): build, CUDA tests, a short training run,
# compute-sanitizer memcheck + racecheck on every CUDA op, benchmarks at the real and large sizes,
# a final table.
#
# usage: scripts/gpu_check.sh OUTDIR
# Needs: a CUDA build of torch, nvcc, compute-sanitizer; the real data under $IRLLREC_FAST_SHARED
# (default ./gpu_data, a git-ignored copy made by scripts/copy_gpu_data.sh). Writes summary.txt,
# bench.json, table.md and logs.tgz into OUTDIR (at most 8 files come back from the GPU machine).
#
# Stages run in the order GPU_CHECK_STAGES names them, so the most needed go first. Each has its
# own time limit, cut to what is left of the whole run's budget (GPU_CHECK_BUDGET_S, default
# 540 s from the start: under the device tool's 600 s per command). A stage that runs out is
# interrupted with SIGINT, on which pytest still prints its failures and pytest-benchmark still
# writes the cases it finished.
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export IRLLREC_FAST_SHARED=${IRLLREC_FAST_SHARED:-$ROOT/gpu_data}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
# stages (default: tests train sanitizer bench); also tf32 (the benchmarks with TF32 matmuls
# allowed) and profile (scripts/profile_step.py, GPU_CHECK_PROFILE_ARGS passed to it, e.g.
# "--compile --bf16 --graph"). GPU_CHECK_TESTS / GPU_CHECK_BENCH narrow the tests and benchmarks.
STAGES=${GPU_CHECK_STAGES:-tests train sanitizer bench}
TESTS=${GPU_CHECK_TESTS:-tests/ops tests/test_graph.py tests/test_losses.py tests/test_lean_autograd.py tests/test_library.py tests/test_info.py tests/test_rows.py}
BENCH=${GPU_CHECK_BENCH:-benchmarks}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # scripts/*.py import the in-place build
SUMMARY="$OUT/summary.txt"
WORK=$(mktemp -d)  # logs live outside OUT and come back packed (8 files at most return)
LOGS="$WORK/logs"
mkdir -p "$LOGS"
: > "$SUMMARY"
t0=$(date +%s)
DEADLINE=$(( t0 + ${GPU_CHECK_BUDGET_S:-540} ))
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$SUMMARY"; }
pack() { tar czf "$OUT/logs.tgz" -C "$WORK" logs 2>/dev/null; }
# seconds a stage may run: its own cap, or what is left of the budget when that is less
seconds() {
  local left=$(( DEADLINE - $(date +%s) ))
  (( left < $1 )) && echo $(( left > 10 ? left : 10 )) || echo "$1"
}
# limited CAP CMD...: CMD under the stage limit, interrupted like a Ctrl-C when it runs out
limited() { local cap=$1; shift; timeout -s INT -k 20 "$(seconds "$cap")" "$@"; }

stamp "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
stamp "build (sm ${TORCH_CUDA_ARCH_LIST}, ${MAX_JOBS} jobs)"
if ! limited 300 $PY setup.py build_ext --inplace > "$LOGS/build.log" 2>&1; then
  stamp "BUILD FAILED"; grep -B2 -A8 -i "error" "$LOGS/build.log" | head -60 | tee -a "$SUMMARY"; pack; exit 1
fi
grep -iE "spill" "$LOGS/build.log" | grep -v " 0 bytes spill" | head -10 >> "$SUMMARY"
$PY -m irllrec_fast.info 2>&1 | tee -a "$SUMMARY"
if ! $PY -c "import sys, torch; from irllrec_fast import _library; sys.exit(0 if _library.kernels_for(torch.device('cuda')) else 1)"; then
  stamp "NO CUDA KERNELS in the build (see info above)"; pack; exit 1
fi

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

stage_tests() {
  stamp "CUDA tests"
  # the device-parametrised tests' CUDA cases, the CUDA-only ones (TF32) and the device checks
  limited 150 $PY -m pytest $TESTS -q -p no:cacheprovider \
    -k "cuda or tf32 or device or moves_everything" > "$LOGS/tests_cuda.log" 2>&1
  stamp "CUDA tests: exit $?, $(tail -1 "$LOGS/tests_cuda.log")"
  grep -E "^(FAILED|ERROR)" "$LOGS/tests_cuda.log" | head -30 | tee -a "$SUMMARY"
}

stage_train() {
  stamp "training run on CUDA (synthetic data, 2 epochs: trainer, evaluation, checkpoint)"
  limited 90 $PY -m irllrec_fast train --device cuda --epochs 2 --quiet --out "$WORK/run" \
    > "$LOGS/train.log" 2>&1
  stamp "train: exit $?"
  tail -6 "$LOGS/train.log" | tee -a "$SUMMARY"
}

stage_sanitizer() {
  stamp "compute-sanitizer memcheck + racecheck (in parallel)"
  local tool pids=()
  for tool in memcheck racecheck; do
    limited 150 compute-sanitizer --tool $tool --error-exitcode 3 $PY scripts/sanitize_ops.py \
      > "$LOGS/sanitizer_$tool.log" 2>&1 &
    pids+=($!)
  done
  local i=0
  for tool in memcheck racecheck; do
    wait "${pids[$i]}"
    local rc=$?
    i=$(( i + 1 ))
    # exit 3: errors found; 124 / 130 / 137: out of time, so no summary means nothing
    stamp "$tool: exit $rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize_ops:|Error' "$LOGS/sanitizer_$tool.log" | cut -c1-300 | tr '\n' ' ')"
  done
}

stage_bench() {
  stamp "benchmarks (real + large sizes)"
  limited 240 $PY -m pytest $BENCH --benchmark-only --bench-size=large -q -p no:cacheprovider \
    --benchmark-json="$OUT/bench.json" --benchmark-columns=median,stddev > "$LOGS/bench.log" 2>&1
  stamp "benchmarks: exit $?, $(tail -1 "$LOGS/bench.log")"
  grep -E "^(FAILED|ERROR)" "$LOGS/bench.log" | head -20 | tee -a "$SUMMARY"
  # rates of an H100/H200 SXM: ~4e12 exponentials/s (DESIGN.md), ~6.7e13 float32 FMA FLOP/s
  [ -f "$OUT/bench.json" ] && $PY scripts/summarize_bench.py "$OUT/bench.json" ${BW:+--bandwidth-gbs $BW} \
    --exp-per-s 4e12 --flops-per-s 6.7e13 > "$OUT/table.md" 2>&1
}

stage_tf32() {
  stamp "benchmarks with TF32 matmuls allowed ($BENCH)"
  limited 240 $PY -m pytest $BENCH --benchmark-only --bench-size=large --allow-tf32 -q \
    -p no:cacheprovider --benchmark-json="$OUT/bench_tf32.json" --benchmark-columns=median \
    > "$LOGS/bench_tf32.log" 2>&1
  stamp "benchmarks (tf32): exit $?, $(tail -1 "$LOGS/bench_tf32.log")"
  grep -E "^(FAILED|ERROR)" "$LOGS/bench_tf32.log" | head -20 | tee -a "$SUMMARY"
  [ -f "$OUT/bench_tf32.json" ] && $PY scripts/summarize_bench.py "$OUT/bench_tf32.json" > "$OUT/table_tf32.md" 2>&1
}

stage_profile() {
  stamp "training-step profile"
  limited ${GPU_CHECK_PROFILE_TIMEOUT:-180} $PY scripts/profile_step.py ${GPU_CHECK_PROFILE_ARGS:-} \
    > "$OUT/profile.md" 2> "$LOGS/profile.log"
  stamp "profile: exit $?"
}

for stage in $STAGES; do
  if (( $(date +%s) >= DEADLINE )); then stamp "out of time: $stage not run"; continue; fi
  case $stage in
    tests|train|sanitizer|bench|tf32|profile) "stage_$stage" ;;
    *) stamp "unknown stage: $stage (known: tests train sanitizer bench tf32 profile)" ;;
  esac
  pack
done
stamp "done"
for f in table.md table_tf32.md profile.md; do [ -f "$OUT/$f" ] && cat "$OUT/$f"; done; exit 0
