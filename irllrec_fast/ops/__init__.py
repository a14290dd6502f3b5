"""Fused operators. Each has a pure-PyTorch twin of the same signature in `ops.reference`.

| op               | computes                                          | kernels                                                        |
|------------------|---------------------------------------------------|----------------------------------------------------------------|
| spmm             | A x over a `CSRGraph`                             | csrc/cpu/spmm.cpp, csrc/cuda/spmm.cu                           |
| intent_assign    | softmax(e w) w^T, intents from K prototypes       | csrc/cpu/intent_assign.cpp, csrc/cuda/intent_assign.cu         |
| intent_propagate | G x, G = row-normalised (cos(r_h, r_t) + 1) / 2   | csrc/cpu/intent_propagate.cpp, csrc/cuda/intent_propagate.cu   |
| infonce          | per-row InfoNCE of a, b against candidates c      | csrc/cpu/infonce.cpp, csrc/cuda/infonce.cu                     |
"""
from . import reference
from .infonce import infonce
from .intent_assign import intent_assign
from .intent_propagate import intent_propagate
from .spmm import spmm

__all__ = ["reference", "spmm", "intent_assign", "intent_propagate", "infonce"]
