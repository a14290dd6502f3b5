"""Fused operators. Each has a pure-PyTorch twin of the same signature in `ops.reference`.

| op   | computes                 | kernels                                |
|------|--------------------------|----------------------------------------|
| spmm | A x over a `CSRGraph`    | csrc/cpu/spmm.cpp, csrc/cuda/spmm.cu   |
"""
from . import reference
from .spmm import spmm

__all__ = ["reference", "spmm"]
