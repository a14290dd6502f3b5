"""Builds irllrec_fast._C, the compiled kernels of irllrec_fast.

Install with the torch you will run against already installed:

    pip install --no-build-isolation .

Environment flags, read once here:

    IRLLREC_FAST_CPU_ONLY=1  never build the CUDA kernels.
    FORCE_CUDA=1             build the CUDA kernels even if this torch reports no CUDA (the toolkit
                             must still be found); otherwise they are built when torch is a CUDA
                             build and a CUDA toolkit is found.
    TORCH_CUDA_ARCH_LIST     GPU architectures to compile for; default "8.0;9.0" (A100, H100/H200).
    CUDA_HOME                CUDA toolkit root. When unset: CUDA_PATH, then /usr/local/cuda, then
                             the folder of the real nvcc (the nvcc on PATH may be a wrapper script).
    MAX_JOBS                 parallel compile jobs (ninja); each C++ file needs about 2 GB.
    IRLLREC_FAST_DEBUG=1     compile with -O0 -g (and -G -lineinfo for CUDA).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import find_packages, setup

try:
    import torch  # noqa: F401
except ImportError:
    sys.exit(
        "irllrec_fast: torch must be installed before building; run "
        "`pip install torch` then `pip install --no-build-isolation .`"
    )

ROOT = Path(__file__).resolve().parent
CPU_ONLY = os.environ.get("IRLLREC_FAST_CPU_ONLY", "0") == "1"
FORCE_CUDA = os.environ.get("FORCE_CUDA", "0") == "1"
DEBUG = os.environ.get("IRLLREC_FAST_DEBUG", "0") == "1"


def _looks_like_toolkit(path):
    return path is not None and (Path(path) / "include" / "cuda_runtime.h").is_file()


def find_cuda_home():
    """The CUDA toolkit root, or None. Wrapper scripts named nvcc are seen through."""
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if _looks_like_toolkit(candidate):
            return str(Path(candidate).resolve())
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:  # a wrapper script still reports the real compiler's folder (_HERE_) in a dry run
        dry = subprocess.run([nvcc, "-dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
        for line in (dry.stdout + dry.stderr).splitlines():
            if "_HERE_=" in line:
                top = Path(line.split("_HERE_=", 1)[1].strip()).parent
                if _looks_like_toolkit(top):
                    return str(top.resolve())
    except (OSError, subprocess.SubprocessError):
        pass
    real = Path(nvcc).resolve().parent.parent
    return str(real) if _looks_like_toolkit(real) else None


CUDA_HOME = None if CPU_ONLY else find_cuda_home()
if CUDA_HOME is not None:
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported, so set it first.
    os.environ["CUDA_HOME"] = CUDA_HOME
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

WITH_CUDA = (not CPU_ONLY) and CUDA_HOME is not None and (
    FORCE_CUDA or torch.version.cuda is not None
)


def extension():
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.cpp"))
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cpu").glob("*.cpp"))
    cxx = ["-O0", "-g"] if DEBUG else ["-O3"]
    # -Wno-psabi: see csrc/cpu/intent_assign.cpp (a vector ABI note that concerns nothing here)
    cxx += ["-fopenmp", "-Wall", "-Wno-unknown-pragmas", "-Wno-psabi"]
    extra = {"cxx": cxx}
    kwargs = dict(name="irllrec_fast._C", sources=sources, extra_link_args=["-fopenmp"])
    if not WITH_CUDA:
        return CppExtension(extra_compile_args=extra, **kwargs)
    kwargs["sources"] += sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cuda").glob("*.cu")
    )
    extra["nvcc"] = (["-O0", "-G", "-lineinfo"] if DEBUG else ["-O3", "-lineinfo"]) + [
        "--expt-relaxed-constexpr",
        "-Xptxas=-warn-spills",
    ]
    return CUDAExtension(extra_compile_args=extra, **kwargs)


if __name__ == "__main__":
    print(
        f"irllrec_fast: torch {torch.__version__}, CUDA kernels "
        f"{'ON (' + CUDA_HOME + ', arch ' + os.environ['TORCH_CUDA_ARCH_LIST'] + ')' if WITH_CUDA else 'OFF'}",
        file=sys.stderr,
    )
    setup(
        # configs/ holds data only (no __init__.py): named here so that its .yml files ship
        packages=[*find_packages(include=["irllrec_fast", "irllrec_fast.*"]),
                  "irllrec_fast.configs"],
        ext_modules=[extension()],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    )
