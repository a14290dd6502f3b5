"""Benchmark inputs: the datasets' graphs (real data when present, else a power-law stand-in of
the same shape, flagged in extra_info) and large synthetic graphs for GPUs."""
from __future__ import annotations

import functools

import numpy as np

from irllrec_fast import CSRGraph, testing

# users, items, training interactions of the paper's datasets (shared/data/irllrec/README.md)
DATASET_SHAPES = {
    "amazon": (11000, 9332, 120464),
    "yelp": (11091, 11010, 166620),
    "movie": (16994, 9370, 134649),
}
# 2 million nodes, 100 million directed edges (50 million interactions)
LARGE_SHAPES = {"large2m": (1_000_000, 1_000_000, 50_000_000)}


@functools.lru_cache(maxsize=None)
def dataset_graph(name: str) -> tuple[CSRGraph, str]:
    """(graph, source): the real training graph, or a same-shaped power-law graph."""
    if name in DATASET_SHAPES:
        real = testing.real_graph(name)
        if real is not None:
            return real, "real"
        users, items, pairs = DATASET_SHAPES[name]
    else:
        users, items, pairs = LARGE_SHAPES[name]
    u, i = testing.power_law_interactions(users, items, pairs, exponent=0.8, seed=0)
    return CSRGraph.from_interactions(u, i, users, items), "synthetic power-law"


def sizes(bench_size: str) -> list[str]:
    names = list(DATASET_SHAPES)
    return names + list(LARGE_SHAPES) if bench_size == "large" else names


def random_features(num_rows: int, d: int, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_rows, d, generator=gen)


__all__ = ["DATASET_SHAPES", "LARGE_SHAPES", "dataset_graph", "sizes", "random_features", "np"]
