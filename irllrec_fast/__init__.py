"""irllrec_fast: IRLLRec with fused C++/CUDA operators.

- `irllrec_fast.CSRGraph`: the interaction graph, validated once.
- `irllrec_fast.ops`: fused operators (`spmm`, ...) and `ops.reference`, their pure-PyTorch twins.
"""
from . import ops
from ._library import ExtensionNotLoadedError, available as extension_available
from .graph import CSRGraph, Transpose

__all__ = ["CSRGraph", "Transpose", "ops", "extension_available", "ExtensionNotLoadedError"]
__version__ = "0.1.0"
