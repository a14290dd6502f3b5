"""`intent_propagate`: intent-aware adaptive aggregation over a graph (IRLLREC_SPEC.md section 2).

Over the edges (h, t) of the graph's structure (its values are ignored):
alpha_ht = (cos(r_h, r_t) + 1) / 2 with r normalised as r / max(||r||, 1e-12); each row is
normalised by its sum of alpha (a sum <= 0 gives a zero row, which passes no gradient); out = G x.

Kernels: csrc/cpu/intent_propagate.cpp, csrc/cuda/intent_propagate.cu. Reference:
`irllrec_fast.ops.reference.intent_propagate`. One pass over the edges, no per-edge storage: the
forward keeps the row sums of alpha and the norms of r ([n] each); the backward recomputes alpha
and its gradient per edge from per-node quantities. It walks the graph's rows and its transpose's
rows, or, when the structure is symmetric (an undropped interaction graph), the rows once.
"""
from __future__ import annotations

import torch

from .._library import available, require
from ._checks import check_graph_features
from ._first_order import first_order_only


def _transpose_structure(graph):
    """(t_rowptr, t_col): the graph's own arrays when its structure is known to be symmetric
    (the kernels then take the one-pass backward), else the cached transpose."""
    if graph.values_symmetric:  # symmetric values imply a symmetric structure
        return graph.rowptr, graph.col
    return graph.transpose.rowptr, graph.transpose.col


def intent_propagate(graph, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """out [num_nodes, d] = G x with G the intent-weighted, row-normalised adjacency.

    Args:
        graph: `CSRGraph`; only its structure (and transpose) is used.
        r: [num_nodes, d] intents (e.g. from `intent_assign`), differentiable.
        x: [num_nodes, d] features to aggregate, same dtype as r, differentiable.

    On CUDA d is at most 2048 in float32 when d is a multiple of 4, else 512; the CPU kernels
    take any d.
    """
    check_graph_features(graph, r, "r")
    check_graph_features(graph, x, "x")
    require(x.device)
    if r.dtype != x.dtype:
        raise TypeError(f"r must have the dtype of x ({x.dtype}), got {r.dtype}")
    if r.shape[1] != x.shape[1]:
        raise ValueError(f"r must have the width of x ({x.shape[1]}), got shape {tuple(r.shape)}")
    t_rowptr, t_col = _transpose_structure(graph)
    out, _, _ = torch.ops.irllrec_fast.intent_propagate(graph.rowptr, graph.col, t_rowptr, t_col,
                                                        r, x)
    return out


def _setup_context(ctx, inputs, output):
    rowptr, col, t_rowptr, t_col, r, x = inputs
    out, row_sum, norm = output
    ctx.mark_non_differentiable(row_sum, norm)
    ctx.set_materialize_grads(False)  # no zeros for the gradients of row_sum and norm
    ctx.save_for_backward(rowptr, col, t_rowptr, t_col, r, x, out, row_sum, norm)


@first_order_only
def _backward(ctx, grad_out, grad_row_sum, grad_norm):
    if grad_out is None:
        return None, None, None, None, None, None
    rowptr, col, t_rowptr, t_col, r, x, out, row_sum, norm = ctx.saved_tensors
    grad_r, grad_x = torch.ops.irllrec_fast.intent_propagate_backward(
        grad_out.contiguous(), rowptr, col, t_rowptr, t_col, r, x, out, row_sum, norm)
    return (None, None, None, None,
            grad_r if ctx.needs_input_grad[4] else None,
            grad_x if ctx.needs_input_grad[5] else None)


if available():

    @torch.library.register_fake("irllrec_fast::intent_propagate")
    def _intent_propagate_fake(rowptr, col, t_rowptr, t_col, r, x):
        n = rowptr.shape[0] - 1
        return x.new_empty((n, x.shape[1])), x.new_empty((n,)), x.new_empty((n,))

    @torch.library.register_fake("irllrec_fast::intent_propagate_backward")
    def _intent_propagate_backward_fake(grad, rowptr, col, t_rowptr, t_col, r, x, out, row_sum,
                                        norm):
        return r.new_empty(r.shape), x.new_empty(x.shape)

    torch.library.register_autograd("irllrec_fast::intent_propagate", _backward,
                                    setup_context=_setup_context)
