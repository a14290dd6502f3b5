"""Fused operators. Each has a pure-PyTorch twin of the same signature in `ops.reference`.

| op      | computes                                      | kernels                                      |
|---------|-----------------------------------------------|----------------------------------------------|
| spmm    | A x over a `CSRGraph`                         | csrc/cpu/spmm.cpp, csrc/cuda/spmm.cu         |
| infonce | per-row InfoNCE of a, b against candidates c  | csrc/cpu/infonce.cpp, csrc/cuda/infonce.cu   |
"""
from . import reference
from .infonce import infonce
from .spmm import spmm

__all__ = ["reference", "infonce", "spmm"]
