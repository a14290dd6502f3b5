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


def require() -> None:
    """Raises ExtensionNotLoadedError, with the fix, unless the kernels are loaded."""
    if _C is None:
        raise ExtensionNotLoadedError(
            f"irllrec_fast._C could not be loaded ({_load_error}); {REBUILD_HINT}"
        )
