#!/usr/bin/env bash
# LightGCN on the paper's three datasets on a GPU machine (docs/real_data.md): build, then train
# amazon, yelp and movie with the shipped LightGCN config and the spec's protocol, one after the
# other, each under a time limit. Writes <dataset>.json (metrics) and train.log into OUTDIR.
#
# usage: scripts/gpu_real_data.sh OUTDIR [SECONDS_PER_DATASET]
set -uo pipefail
OUT=${1:?usage: scripts/gpu_real_data.sh OUTDIR [SECONDS_PER_DATASET]}
LIMIT=${2:-120}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
DATA=${IRLLREC_FAST_SHARED:-$ROOT/gpu_data}/data/irllrec
PY=${PYTHON:-python3}
mkdir -p "$OUT"
WORK=$(mktemp -d)
t0=$(date +%s)
echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)" | tee "$OUT/train.log"
timeout 300 $PY setup.py build_ext --inplace > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
echo "[$(( $(date +%s) - t0 )) s] built" | tee -a "$OUT/train.log"
for ds in amazon yelp movie; do
  start=$(date +%s)
  timeout "$LIMIT" $PY -m irllrec_fast train --data "$DATA/$ds" --model lightgcn --device cuda \
    --out "$WORK/$ds" --quiet 2>&1 | tee -a "$OUT/train.log"
  echo "[$(( $(date +%s) - t0 )) s] $ds: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s wall" | tee -a "$OUT/train.log"
  [ -f "$WORK/$ds/metrics.json" ] && cp "$WORK/$ds/metrics.json" "$OUT/$ds.json"
done
