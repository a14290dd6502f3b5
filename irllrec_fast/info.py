"""`python -m irllrec_fast.info`: what was built and what is registered.

Prints the torch, CUDA and Python versions, whether the compiled kernels loaded, which backends
(CPU, CUDA) have kernels for each operator, and whether a GPU is visible.
"""
from __future__ import annotations

import platform
import sys

import torch

from . import __version__, _library

_BACKENDS = ("CPU", "CUDA")


def registered_operators() -> list[str]:
    """Names of the operators in the irllrec_fast namespace."""
    return sorted(
        name.split("::", 1)[1]
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith("irllrec_fast::")
    )


def backends_of(op: str) -> list[str]:
    """Dispatch keys with a kernel for irllrec_fast::<op>."""
    return [key for key in _BACKENDS
            if torch._C._dispatch_has_kernel_for_dispatch_key(f"irllrec_fast::{op}", key)]


def report() -> str:
    lines = [
        f"irllrec_fast {__version__}",
        f"python       {platform.python_version()} ({sys.executable})",
        f"torch        {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        f"GPU visible  {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}",
    ]
    if not _library.available():
        lines.append(f"kernels      NOT LOADED: {_library.load_error_message()}")
        return "\n".join(lines)
    ops = registered_operators()
    built = sorted({key for op in ops for key in backends_of(op)})
    lines.append(f"kernels      loaded from {_library._C.__file__}")
    lines.append(f"backends     {', '.join(built) or 'none'}")
    if torch.version.cuda and not _library.kernels_for(torch.device("cuda")):
        lines.append(f"             no CUDA kernels, though torch has CUDA {torch.version.cuda}: the "
                     "build found no CUDA toolkit (nvcc); rebuild with one to run the fused "
                     "operators on a GPU (README, Building)")
    lines.append("operators")
    for op in ops:
        lines.append(f"  {op:28s} {', '.join(backends_of(op)) or '-'}")
    return "\n".join(lines)


def main() -> int:
    print(report())
    return 0 if _library.available() else 1


if __name__ == "__main__":
    sys.exit(main())
