"""`spmm`: out = A x for a sparse graph A (CSR) and dense features x.

Kernels: csrc/cpu/spmm.cpp, csrc/cuda/spmm.cu. Reference: `irllrec_fast.ops.reference.spmm`.
Gradients: x gets A^T g (the same kernel over the graph's transpose), the edge values get
<g[row], x[col]> per edge (`spmm_backward_value`).
"""
from __future__ import annotations

from typing import Optional

import torch

from .._library import available, require
from ._checks import check_edge_values, check_graph_features
from ._first_order import no_second_derivative


def spmm(graph, x: torch.Tensor, value: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out [num_nodes, d] = A x.

    Args:
        graph: `CSRGraph` giving the structure of A (and its values unless `value` is given).
        x: [num_nodes, d] float32 (CPU/CUDA) or float64 (CPU; CUDA too), differentiable.
        value: optional [num_edges] edge weights ordered like `graph.col`; differentiable.
    """
    check_graph_features(graph, x)
    require(x.device)
    overridden = value is not None
    if overridden:
        check_edge_values(graph, value, x.dtype)
    else:
        value = graph.value if graph.value.dtype == x.dtype else graph.value.to(x.dtype)
    t_rowptr, t_col, t_perm = graph.transpose_args(overridden)
    return torch.ops.irllrec_fast.spmm(graph.rowptr, graph.col, value, t_rowptr, t_col, t_perm, x)


def _inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    inverse = torch.empty_like(perm)
    inverse[perm.long()] = torch.arange(perm.numel(), dtype=perm.dtype, device=perm.device)
    return inverse


def _setup_context(ctx, inputs, output):
    rowptr, col, value, t_rowptr, t_col, t_perm, x = inputs
    ctx.save_for_backward(rowptr, col, value, t_rowptr, t_col, t_perm, x)


def _backward(ctx, grad):
    rowptr, col, value, t_rowptr, t_col, t_perm, x = ctx.saved_tensors
    grad_value = grad_x = None
    if ctx.needs_input_grad[6]:
        symmetric = t_perm.numel() == 0
        t_value = value if symmetric else value[t_perm.long()]
        # The transpose of A^T is A, with the inverse permutation; only a double backward
        # (grad mode on here) can look at it.
        back_perm = t_perm if symmetric or not torch.is_grad_enabled() else _inverse_permutation(t_perm)
        grad_x = torch.ops.irllrec_fast.spmm(t_rowptr, t_col, t_value, rowptr, col, back_perm,
                                             grad.contiguous())
    if ctx.needs_input_grad[2]:  # a kernel without a derivative of its own
        with torch.no_grad():
            grad_value = torch.ops.irllrec_fast.spmm_backward_value(rowptr, col, grad.contiguous(),
                                                                    x)
        grad_value = no_second_derivative(grad_value)
    return None, None, grad_value, None, None, None, grad_x


if available():

    @torch.library.register_fake("irllrec_fast::spmm")
    def _spmm_fake(rowptr, col, value, t_rowptr, t_col, t_perm, x):
        return x.new_empty((rowptr.shape[0] - 1, x.shape[1]))

    @torch.library.register_fake("irllrec_fast::spmm_backward_value")
    def _spmm_backward_value_fake(rowptr, col, grad_out, x):
        return x.new_empty((col.shape[0],))

    torch.library.register_autograd("irllrec_fast::spmm", _backward, setup_context=_setup_context)
