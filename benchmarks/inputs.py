"""Benchmark inputs: the datasets' graphs (real data when present, else a power-law stand-in of
the same shape, flagged in extra_info) and large synthetic graphs for GPUs."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from irllrec_fast import CSRGraph, testing

# users, items, training interactions of the paper's datasets (shared/data/irllrec/README.md)
DATASET_SHAPES = {
    "amazon": (11000, 9332, 120464),
    "yelp": (11091, 11010, 166620),
    "movie": (16994, 9370, 134649),
}
# 2 million nodes, 100 million directed edges (50 million interactions)
LARGE_SHAPES = {"large2m": (1_000_000, 1_000_000, 50_000_000)}


def dataset_graph(name: str, device="cpu") -> tuple[CSRGraph, str]:
    """(graph, source) on `device`: the real training graph, or a same-shaped power-law graph
    (built on the device itself for the large shapes). Cached per (name, device)."""
    return _dataset_graph(name, str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _dataset_graph(name: str, device: str) -> tuple[CSRGraph, str]:
    if name in DATASET_SHAPES:
        real = testing.real_graph(name)
        if real is not None:
            return real.to(device), "real"
        users, items, pairs = DATASET_SHAPES[name]
        u, i = testing.power_law_interactions(users, items, pairs, exponent=0.8, seed=0)
        return CSRGraph.from_interactions(u, i, users, items).to(device), "synthetic power-law"
    users, items, pairs = LARGE_SHAPES[name]
    u, i = _power_law_on_device(users, items, pairs, torch.device(device))
    return CSRGraph.from_interactions(u, i, users, items), "synthetic power-law"


@functools.lru_cache(maxsize=None)
def normalized_graph(name: str, device="cpu") -> CSRGraph:
    """D^-1/2 A D^-1/2 of `dataset_graph(name, device)`, cached."""
    return dataset_graph(name, device)[0].normalized("sym")


def _power_law_on_device(num_users: int, num_items: int, num_pairs: int, device: torch.device,
                         exponent: float = 0.8):
    """Zipf-distributed user and item ids drawn on the device (seconds on a GPU for 50M pairs,
    minutes with numpy on a CPU)."""
    gen = torch.Generator(device).manual_seed(0)

    def zipf(n: int) -> torch.Tensor:
        weights = torch.arange(1, n + 1, device=device, dtype=torch.float64).pow(-exponent)
        ids = torch.multinomial(weights.float(), num_pairs, replacement=True, generator=gen)
        return torch.randperm(n, device=device, generator=gen)[ids]

    return zipf(num_users), zipf(num_items)


def sizes(bench_size: str) -> list[str]:
    names = list(DATASET_SHAPES)
    return names + list(LARGE_SHAPES) if bench_size == "large" else names


def random_features(num_rows: int, d: int, seed: int = 0, device="cpu"):
    gen = torch.Generator(device).manual_seed(seed)
    return torch.randn(num_rows, d, generator=gen, device=device)


def prototypes(d: int, k: int, device="cpu", seed: int = 2):
    """Xavier-uniform intent prototypes [d, K], as the model initialises them."""
    uniform = torch.rand(d, k, generator=torch.Generator().manual_seed(seed))
    return ((uniform * 2 - 1) * math.sqrt(6.0 / (d + k))).to(device)


__all__ = ["DATASET_SHAPES", "LARGE_SHAPES", "dataset_graph", "normalized_graph", "sizes",
           "random_features", "prototypes"]
