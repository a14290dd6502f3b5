"""Inputs shared by the tests and the benchmarks: random power-law graphs and the real datasets.

The real data sits in ../shared/data beside the project (its licences forbid copies in the
project); IRLLREC_FAST_SHARED points elsewhere, e.g. a git-ignored copy on the GPU machine.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .graph import CSRGraph

DATASETS = ("amazon", "yelp", "movie")


def shared_dir() -> Path:
    """The shared folder: $IRLLREC_FAST_SHARED, else ../shared beside the working directory (the
    project root, where tests and benchmarks run; their conftest files set the variable)."""
    env = os.environ.get("IRLLREC_FAST_SHARED")
    return Path(env) if env else Path.cwd().resolve().parent / "shared"


def real_interactions_path(dataset: str, split: str = "trn") -> Path:
    return shared_dir() / "data" / "irllrec" / dataset / f"{split}_mat.npz"


def real_graph(dataset: str = "amazon") -> Optional[CSRGraph]:
    """The training graph of one of the paper's datasets, or None when the data is absent."""
    path = real_interactions_path(dataset)
    if not path.is_file():
        return None
    import scipy.sparse as sp

    return CSRGraph.from_scipy(sp.load_npz(path))


def power_law_interactions(num_users: int, num_items: int, num_pairs: int, *,
                           exponent: float = 1.0, seed: int = 0):
    """User and item ids of `num_pairs` interactions whose popularity follows a Zipf law on both
    sides (so a few nodes have very long rows), plus a few guaranteed isolated nodes."""
    rng = np.random.default_rng(seed)

    def zipf(n: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, n + 1) ** exponent
        weights[-max(1, n // 50):] = 0.0  # the last 2% never interact: isolated nodes
        weights /= weights.sum()
        return rng.permutation(n)[rng.choice(n, size=num_pairs, p=weights)]

    return zipf(num_users), zipf(num_items)


def power_law_graph(num_users: int = 300, num_items: int = 200, num_pairs: int = 3000, *,
                    seed: int = 0, dtype: torch.dtype = torch.float32) -> CSRGraph:
    users, items = power_law_interactions(num_users, num_items, num_pairs, seed=seed)
    return CSRGraph.from_interactions(users, items, num_users, num_items, dtype=dtype)


def random_directed_graph(num_nodes: int, num_edges: int, *, seed: int = 0,
                          dtype: torch.dtype = torch.float32) -> CSRGraph:
    """A non-symmetric graph with random positive weights, empty rows and repeated columns."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    rows = rows[rows % 7 != 3]  # every seventh-ish node has no out-edges
    cols = torch.randint(0, num_nodes, (rows.numel(),), generator=gen)
    order = torch.argsort(rows, stable=True)
    rows, cols = rows[order], cols[order]
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_nodes), 0)
    value = torch.rand(rows.numel(), generator=gen, dtype=torch.float64).to(dtype) + 0.1
    return CSRGraph(rowptr, cols, value, num_nodes)
