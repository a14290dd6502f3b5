"""Loads the compiled kernels (irllrec_fast._C) once.

Importing irllrec_fast never fails because of the extension: the pure-PyTorch paths
(`impl="torch"`) work without it. Anything that needs a kernel calls `require(device)`, which
turns a failed load, or a build without the CUDA kernels asked to run on a GPU, into an error that
says how to rebuild.
"""
from __future__ import annotations

from typing import Optional

import torch

REBUILD_HINT = (
    "build it with `pip install --no-build-isolation .` in an environment that already has torch "
    "(or `python setup.py build_ext --inplace` to work from the source folder), then check with "
    "`python -m irllrec_fast.info`"
)


class ExtensionNotLoadedError(ImportError):
    """The compiled kernels are missing, were built against another torch, or lack the kernels
    of the device asked for (a build without the CUDA toolkit has CPU kernels only)."""


try:
    from . import _C  # noqa: F401  (registers torch.ops.irllrec_fast.*)

    _load_error: Exception | None = None
except ImportError as error:  # not built, or built for another torch / Python
    _C = None
    _load_error = error


# Whether the CUDA kernels were compiled in (setup.py builds them only where it finds a CUDA
# toolkit). A plain bool read by require(), so that torch.compile traces through the check.
_CUDA_KERNELS = _C is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
    "irllrec_fast::spmm", "CUDA")


def available() -> bool:
    """True when the compiled operators are registered."""
    return _C is not None


def _shadowing_hint() -> str:
    from pathlib import Path

    here = Path(__file__).resolve().parent
    if not any(here.glob("_C*.so")) and (here.parent / "setup.py").is_file():
        return (f" Python imported the source folder {here}, which has no compiled _C: run from "
                "another folder to use the installed package, or build in place.")
    return ""


def load_error_message() -> str:
    return f"irllrec_fast._C could not be loaded ({_load_error}); {REBUILD_HINT}.{_shadowing_hint()}"


def kernels_for(device: Optional[torch.device] = None) -> bool:
    """Whether the kernels are loaded and can run on `device` (None: on the CPU at least)."""
    return _C is not None and (device is None or device.type != "cuda" or _CUDA_KERNELS)


def require(device: Optional[torch.device] = None) -> None:
    """Raises ExtensionNotLoadedError, with the fix, unless the kernels are loaded and, for a CUDA
    `device`, were built with their CUDA kernels. Without the check, a CPU-only build would fail
    on a GPU deep inside the dispatcher, naming neither the cause nor the fix."""
    if _C is None:
        raise ExtensionNotLoadedError(load_error_message())
    if not kernels_for(device):
        raise ExtensionNotLoadedError(
            f"irllrec_fast was built without its CUDA kernels (setup.py found no CUDA toolkit), so "
            f"the fused operators cannot run on {device}; rebuild where nvcc is installed (README, "
            f"Building: CUDA_HOME, FORCE_CUDA), check with `python -m irllrec_fast.info`, or use "
            f"impl='torch' (--impl torch)")
