"""Pure-PyTorch references of every operator, with the signatures of the fused ones.

They are written literally from IRLLREC_SPEC.md, materialise whatever they like, and are what
`impl="torch"` runs, what the tests compare against and what the benchmarks race.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_edge_values, check_graph_features


def spmm(graph, x: torch.Tensor, value: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out [num_nodes, d] = A x, by gathering x[col] per edge and summing per row."""
    check_graph_features(graph, x)
    if value is None:
        value = graph.value.to(x.dtype)
    else:
        check_edge_values(graph, value, x.dtype)
    out = x.new_zeros(graph.num_nodes, x.shape[1])
    return out.index_add(0, graph.row_index(), value.unsqueeze(1) * x[graph.col.long()])
