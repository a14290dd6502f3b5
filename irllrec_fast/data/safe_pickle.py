"""Loads the pickles of IRLLRec / RLMRec dataset folders without letting them run code.

A pickle names the callables that rebuild it, and the standard unpickler imports and calls
whatever it names. `load` only resolves an allow-list: what numpy needs to rebuild arrays and
dtypes, and the scipy.sparse matrix classes (rebuilt field by field, no custom reducers). Anything
else is refused with `UnsafePickleError` before it is imported.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

_NUMPY = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
_SPARSE_CLASSES = ("coo_matrix", "csr_matrix", "csc_matrix", "coo_array", "csr_array",
                   "csc_array")
# scipy moved its classes into private modules over the years; pickles keep the old names
_SPARSE_MODULES = ("scipy.sparse", "scipy.sparse.coo", "scipy.sparse.csr", "scipy.sparse.csc",
                   "scipy.sparse._coo", "scipy.sparse._csr", "scipy.sparse._csc",
                   "scipy.sparse._arrays")
ALLOWED = _NUMPY | {(m, c) for m in _SPARSE_MODULES for c in _SPARSE_CLASSES}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something other than numpy arrays or scipy sparse matrices."""


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: only numpy arrays and scipy sparse matrices "
                "are accepted from pickles (convert the file to .npy/.npz to avoid pickles)")
        return super().find_class(module, name)


def load(path) -> object:
    """The numpy array or scipy sparse matrix pickled in `path` (UnsafePickleError otherwise)."""
    path = Path(path)
    with path.open("rb") as handle:
        try:
            obj = _AllowListUnpickler(handle).load()
        except UnsafePickleError as error:
            raise UnsafePickleError(f"{path}: {error}") from None
    import scipy.sparse as sp

    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UnsafePickleError(f"{path}: object arrays are not accepted")
        return obj
    if sp.issparse(obj):
        return obj
    raise UnsafePickleError(f"{path}: expected a numpy array or scipy sparse matrix, got "
                            f"{type(obj).__name__}")
