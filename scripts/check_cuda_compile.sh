#!/usr/bin/env bash
# Compile-checks every csrc/cuda/*.cu with nvcc against the installed torch's headers, on a machine
# without a GPU and with a CPU-only torch (CI). It cannot link or run anything; it catches compile
# errors. The CPU wheel lacks one generated CUDA header, which a one-line shim stands in for.
# The C++ sources are syntax-checked as C++17 too: torch 2.13 builds them as C++20 here, but an
# older torch (the GPU machine's 2.11) may build the whole extension as C++17.
#
# usage: scripts/check_cuda_compile.sh [PYTHON]     (exit 0 when every file compiles)
#
# TORCH_INCLUDE=DIR checks against another torch's headers instead (the `torch/include` folder
# unpacked from that version's wheel), e.g. the GPU machine's torch before a GPU session.
set -euo pipefail
PYTHON=${1:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NVCC=${NVCC:-nvcc}
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "check_cuda_compile: nvcc not found (set NVCC or add it to PATH)" >&2
  exit 1
fi
read -r TORCH_INC PY_INC < <("$PYTHON" - <<'PY'
import sysconfig, torch.utils.cpp_extension as ext
print(ext.include_paths()[0], sysconfig.get_paths()["include"])
PY
)
TORCH_INC=${TORCH_INCLUDE:-$TORCH_INC}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/shim/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$WORK/shim/c10/cuda/impl/cuda_cmake_macros.h"
ARCHS=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
GENCODE=()
for arch in ${ARCHS//;/ }; do
  a=${arch//./}; GENCODE+=("-gencode=arch=compute_${a},code=sm_${a}")
done
status=0
for cu in "$ROOT"/csrc/cuda/*.cu; do
  start=$(date +%s)
  if "$NVCC" -c "$cu" -o "$WORK/$(basename "$cu").o" -std=c++17 -O3 --expt-relaxed-constexpr \
      "${GENCODE[@]}" -Xptxas=-warn-spills -I"$WORK/shim" -I"$TORCH_INC" \
      -I"$TORCH_INC/torch/csrc/api/include" -I"$PY_INC" -DTORCH_EXTENSION_NAME=_C \
      -D_GLIBCXX_USE_CXX11_ABI=1 -Xcompiler -fPIC 2>"$WORK/log"; then
    echo "ok    $(basename "$cu") ($(( $(date +%s) - start )) s)"
    grep -i "spill" "$WORK/log" | grep -v " 0 bytes spill" || true
  else
    echo "FAIL  $(basename "$cu")"; cat "$WORK/log"; status=1
  fi
done
CXX=${CXX:-g++}
for cpp in "$ROOT"/csrc/*.cpp "$ROOT"/csrc/cpu/*.cpp; do
  name=${cpp#"$ROOT"/csrc/}
  if "$CXX" -std=c++17 -fsyntax-only -fopenmp -Wno-psabi -I"$TORCH_INC" \
      -I"$TORCH_INC/torch/csrc/api/include" -I"$PY_INC" -DTORCH_EXTENSION_NAME=_C \
      -D_GLIBCXX_USE_CXX11_ABI=1 "$cpp" 2>"$WORK/log"; then
    echo "ok    $name (C++17)"
  else
    echo "FAIL  $name (C++17)"; cat "$WORK/log"; status=1
  fi
done
exit $status
