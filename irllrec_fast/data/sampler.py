"""BPR triples: one uniformly drawn negative per training interaction per epoch, vectorised.

A negative of user u is drawn exactly uniformly from the items u has not interacted with in
training, without rejection: draw k uniform in [0, I - deg(u)) and map it to the k-th item missing
from u's sorted training row. With s_0 < s_1 < ... the row's items, the k-th missing item is
k + #{t : s_t - t <= k}, and s_t - t is non-decreasing along a row, so one `searchsorted` over all
rows (offset by u * (I + 1)) answers every draw at once.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from .dataset import DatasetError


class Batch(NamedTuple):
    """One batch of BPR triples, int64 [B] each: users, positive items, negative items."""

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in self))


class BPRSampler:
    """Seeded BPR sampling over a binary [U, I] training matrix.

    Args:
        train: scipy sparse [U, I]; any stored nonzero is an interaction.
        batch_size: triples per batch; the last batch of an epoch may be smaller.
        seed: seed of the sampler's own numpy Generator (its state is in `state_dict()`).
    """

    def __init__(self, train, batch_size: int = 4096, seed: int = 2023):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        train = sp.csr_matrix(train, copy=True)
        train.sum_duplicates()
        train.eliminate_zeros()
        train.sort_indices()
        self.num_users, self.num_items = train.shape
        self.batch_size = int(batch_size)
        self.indptr = train.indptr.astype(np.int64)
        self.items = train.indices.astype(np.int64)
        degree = np.diff(self.indptr)
        self.users = np.repeat(np.arange(self.num_users, dtype=np.int64), degree)
        full = np.flatnonzero(degree >= self.num_items)
        if full.size:
            raise DatasetError(f"user {full[0]} interacted with every item in training, so no "
                               "negative item can be sampled for it")
        self.free = (self.num_items - degree)[self.users]  # items each row can draw from
        local = np.arange(self.items.size) - self.indptr[self.users]
        self._keys = self.users * (self.num_items + 1) + (self.items - local)
        self.rng = np.random.default_rng(seed)

    @property
    def num_interactions(self) -> int:
        return int(self.items.size)

    def __len__(self) -> int:
        return -(-self.num_interactions // self.batch_size)

    def sample_negatives(self) -> np.ndarray:
        """One negative item per training interaction, in the order of the CSR rows [P]."""
        k = self.rng.integers(0, self.free)
        below = np.searchsorted(self._keys, self.users * (self.num_items + 1) + k, side="right")
        return k + below - self.indptr[self.users]

    def epoch(self, device=None) -> Iterator[Batch]:
        """The shuffled triples of one epoch in batches (negatives drawn when called)."""
        neg = self.sample_negatives()
        order = self.rng.permutation(self.num_interactions)
        # one copy per epoch, then views: a copy per batch from pageable memory can make the
        # host wait for a GPU's queue
        users, pos, neg = (torch.from_numpy(a[order]).to(device)
                           for a in (self.users, self.items, neg))
        for start in range(0, self.num_interactions, self.batch_size):
            end = start + self.batch_size
            yield Batch(users[start:end], pos[start:end], neg[start:end])

    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
