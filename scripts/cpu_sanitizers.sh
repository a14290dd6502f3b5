#!/usr/bin/env bash
# The CPU kernels under AddressSanitizer and UndefinedBehaviorSanitizer: builds a sanitized copy of
# the extension in a temporary folder (the normal build is left alone) and runs pytest there with
# the sanitizer runtimes preloaded (the Python interpreter itself is not instrumented). Any
# out-of-bounds access, use after free or undefined behaviour in csrc/ aborts the run.
#
# usage: scripts/cpu_sanitizers.sh [PYTHON] [PYTEST ARGS...]   (default: python tests/ops)
# About 3 minutes on 2 cores for the build, 20 s for tests/ops.
set -euo pipefail
PYTHON=${1:-python}
shift || true
[ $# -gt 0 ] || set -- tests/ops
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CXX=${CXX:-c++}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# the sources and tests, without the normal build's library
cp -r "$ROOT"/{setup.py,pyproject.toml,csrc,irllrec_fast,tests,scripts,benchmarks} "$WORK"/
find "$WORK/irllrec_fast" -name "_C*.so" -delete
sanitize="-fsanitize=address,undefined -fno-omit-frame-pointer"
echo "cpu_sanitizers: building with $sanitize" >&2
if ! (cd "$WORK" && CFLAGS="$sanitize -g" LDFLAGS="$sanitize" IRLLREC_FAST_CPU_ONLY=1 \
      "$PYTHON" setup.py build_ext --inplace > build.log 2>&1); then
  tail -40 "$WORK/build.log" >&2
  echo "cpu_sanitizers: build failed" >&2
  exit 1
fi
library=$(ls "$WORK"/irllrec_fast/_C*.so)
if ! ldd "$library" | grep -q libasan; then
  echo "cpu_sanitizers: the build is not linked against libasan (CFLAGS not honoured?)" >&2
  exit 1
fi

# ../shared beside the project, as the tests expect it beside the project root
export IRLLREC_FAST_SHARED=${IRLLREC_FAST_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
export LD_PRELOAD="$($CXX -print-file-name=libasan.so) $($CXX -print-file-name=libubsan.so)"
# leaks: torch and Python keep allocations to exit; the allocation/free mismatch check trips on
# torch's own libraries, which are not built with the sanitizers
# reports go to files: pytest captures the test's stderr, and an aborting process loses it
export ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0:halt_on_error=1:log_path=$WORK/report
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$WORK/report
cd "$WORK"
# the tests must load this build, not an installed irllrec_fast
loaded=$(PYTHONPATH="$WORK" "$PYTHON" -c "import irllrec_fast._C as c; print(c.__file__)")
if [ "$loaded" != "$library" ]; then
  echo "cpu_sanitizers: python loads $loaded, not the sanitized $library" >&2
  exit 1
fi
status=0
PYTHONPATH="$WORK" "$PYTHON" -m pytest -q -p no:cacheprovider "$@" || status=$?
if compgen -G "$WORK/report*" > /dev/null; then
  cat "$WORK"/report* >&2
  echo "cpu_sanitizers: the sanitizers reported the errors above" >&2
  exit 1
fi
exit $status
