"""Loads the compiled kernels (irllrec_fast._C) once.

Importing irllrec_fast never fails because of the extension: the pure-PyTorch paths
(`impl="torch"`) work without it. Anything that needs a kernel calls `require()`, which turns a
failed load into an error that says how to rebuild.
"""
from __future__ import annotations

REBUILD_HINT = (
    "build it with `pip install --no-build-isolation .` in an environment that already has torch "
    "(or `python setup.py build_ext --inplace` to work from the source folder), then check with "
    "`python -m irllrec_fast.info`"
)


class ExtensionNotLoadedError(ImportError):
    """The compiled kernels are missing or were built against another torch."""


try:
    from . import _C  # noqa: F401  (registers torch.ops.irllrec_fast.*)

    _load_error: Exception | None = None
except ImportError as error:  # not built, or built for another torch / Python
    _C = None
    _load_error = error


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


def require() -> None:
    """Raises ExtensionNotLoadedError, with the fix, unless the kernels are loaded."""
    if _C is None:
        raise ExtensionNotLoadedError(load_error_message())
