#!/usr/bin/env bash
# Copies the interaction splits the tests and benchmarks read into ./gpu_data (git-ignored), so
# that they travel to a GPU machine that has no ../shared. Never commit the copy (licences).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:-$ROOT/../shared}
for ds in amazon yelp movie; do
  mkdir -p "$ROOT/gpu_data/data/irllrec/$ds"
  cp "$SRC/data/irllrec/$ds/"{trn,val,tst}_mat.npz "$ROOT/gpu_data/data/irllrec/$ds/"
done
cp -r "$SRC/testvectors" "$ROOT/gpu_data/"
du -sh "$ROOT/gpu_data"
