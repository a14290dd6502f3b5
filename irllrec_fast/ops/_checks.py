"""Argument checks of the Python entry points: they raise before a kernel sees bad input, with
the argument's name in the message (the C++ side repeats them as TORCH_CHECKs)."""
from __future__ import annotations

import torch


def check_graph_features(graph, x: torch.Tensor, name: str = "x") -> None:
    """graph must be a CSRGraph; x a float [graph.num_nodes, d] tensor on the graph's device."""
    from ..graph import CSRGraph  # here: graph.py is imported by the package after ops

    if not isinstance(graph, CSRGraph):
        raise TypeError(f"graph must be an irllrec_fast.CSRGraph (CSRGraph.from_interactions / "
                        f"from_scipy), got {type(graph).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] != graph.num_nodes:
        raise ValueError(f"{name} must have shape ({graph.num_nodes}, d) for a graph of "
                         f"{graph.num_nodes} nodes, got {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if x.device != graph.device:
        raise ValueError(f"{name} is on {x.device} but the graph is on {graph.device}; "
                         f"move one with .to()")


def check_edge_values(graph, value: torch.Tensor, dtype: torch.dtype) -> None:
    """value must be [graph.num_edges] of `dtype` on the graph's device, ordered like graph.col."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"value must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 1 or value.shape[0] != graph.num_edges:
        raise ValueError(f"value must have shape ({graph.num_edges},), one per edge in the order "
                         f"of graph.col, got {tuple(value.shape)}")
    if value.dtype != dtype:
        raise TypeError(f"value must have the dtype of x ({dtype}), got {value.dtype}")
    if value.device != graph.device:
        raise ValueError(f"value is on {value.device} but the graph is on {graph.device}")
