"""Pure-PyTorch references of every operator, with the signatures of the fused ones.

They are written literally from IRLLREC_SPEC.md, materialise whatever they like, and are what
`impl="torch"` runs, what the tests compare against and what the benchmarks race.
"""
from __future__ import annotations

from typing import Optional

import torch

from .._rows import take_rows
from ._checks import check_edge_values, check_graph_features


def spmm(graph, x: torch.Tensor, value: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out [num_nodes, d] = A x, by gathering x[col] per edge and summing per row."""
    check_graph_features(graph, x)
    if value is None:
        value = graph.value.to(x.dtype)
    else:
        check_edge_values(graph, value, x.dtype)
    out = x.new_zeros(graph.num_nodes, x.shape[1])
    return out.index_add(0, graph.row_index(), value.unsqueeze(1) * take_rows(x, graph.col.long()))


def infonce(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-row InfoNCE [B]: -<a_k, b_k>/tau + log sum_j exp(<a_k, c_j>/tau).

    a, b: [B, d] anchors and positives; c: [M, d] candidates (may be b itself). No normalisation.
    Materialises the [B, M] logits.
    """
    positive = (a * b).sum(1) / temperature
    return torch.logsumexp(a @ c.T / temperature, dim=1) - positive


def intent_assign(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """softmax(e w) w^T [n, d]: each row's soft assignment to the K prototypes (columns of w
    [d, K]), mapped back to embedding space (IRLLREC_SPEC.md section 2)."""
    return torch.softmax(e @ w, dim=1) @ w.T


def intent_propagate(graph, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Intent-aware adaptive aggregation [n, d] (IRLLREC_SPEC.md section 2).

    Over the graph's edges (h, t) (its values are ignored): alpha_ht = (cos(r_h, r_t) + 1) / 2 with
    r normalised as r / max(||r||, 1e-12); G_ht = alpha_ht / sum_t' alpha_ht' (a row whose alphas
    sum to 0 gets weight 0 and no gradient); out = G x.
    """
    check_graph_features(graph, r, "r")
    check_graph_features(graph, x, "x")
    rows, cols = graph.row_index(), graph.col.long()
    unit = torch.nn.functional.normalize(r, dim=1, eps=1e-12)
    alpha = ((take_rows(unit, rows) * take_rows(unit, cols)).sum(1) + 1) / 2
    row_sum = alpha.new_zeros(graph.num_nodes).index_add(0, rows, alpha)
    positive = row_sum > 0
    safe_sum = torch.where(positive, row_sum, torch.ones_like(row_sum))
    weight = torch.where(positive[rows], alpha / take_rows(safe_sum, rows), torch.zeros_like(alpha))
    out = x.new_zeros(graph.num_nodes, x.shape[1])
    return out.index_add(0, rows, weight.unsqueeze(1) * take_rows(x, cols))
