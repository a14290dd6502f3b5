"""What every recommender here shares: the graph on the model's device, the prediction cache and
the training / ranking contract the trainer and the evaluation rely on.

Contract:
- `calculate_loss(batch) -> (loss, parts)`: batch = (users, pos_items, neg_items), int64 [B] each
  on the model's device; loss a scalar; parts a dict name -> scalar tensor whose values sum to loss.
- `full_sort_predict(users) -> scores`: users int64 [b]; scores [b, num_items] (no masking).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..graph import CSRGraph
from . import _impl


def check_bipartite(graph: CSRGraph) -> None:
    if not isinstance(graph, CSRGraph):
        raise TypeError(f"graph must be an irllrec_fast.CSRGraph, got {type(graph).__name__}")
    if graph.num_users is None or graph.num_items is None:
        raise ValueError("graph must be a user-item graph (CSRGraph.from_interactions or "
                         "from_scipy), so that num_users and num_items are known")


class Recommender(nn.Module):
    """Base class. Subclasses implement `embeddings()` and `calculate_loss(batch)`.

    The interaction graph is kept on the CPU and copied to the parameters' device (and dtype) on
    first use, so `model.to(device)` is all it takes to move a model.
    """

    def __init__(self, graph: CSRGraph):
        super().__init__()
        check_bipartite(graph)
        self.num_users = int(graph.num_users)
        self.num_items = int(graph.num_items)
        self._plain_graph = graph.to("cpu")
        self._graph_copies: Dict[tuple, CSRGraph] = {}
        self._prediction_cache: Tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def graph(self, kind: str = "sym") -> CSRGraph:
        """The training graph on the parameters' device and dtype: "plain" (weights 1) or "sym"
        (D^-1/2 A D^-1/2)."""
        if kind not in ("plain", "sym"):
            raise ValueError(f"kind must be 'plain' or 'sym', got {kind!r}")
        key = (kind, self.device, self.dtype)
        if key not in self._graph_copies:
            # normalised in the working dtype: float64 runs must not inherit float32 rounding
            plain = self._plain_graph.to(self.device, self.dtype)
            self._graph_copies[key] = plain if kind == "plain" else plain.normalized("sym")
        return self._graph_copies[key]

    # ------------------------------------------------------------------ contract
    @staticmethod
    def unpack_batch(batch) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users, pos_items, neg_items) after checking the contract's form: three 1-D integer
        tensors of one length. Index ranges are left to the indexing (checking them here would
        make a GPU wait)."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise ValueError("batch must be a tuple (users, pos_items, neg_items), got "
                             f"{type(batch).__name__}"
                             + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
        for name, t in zip(("users", "pos_items", "neg_items"), batch):
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.is_floating_point() \
                    or t.is_complex() or t.dtype == torch.bool:
                raise ValueError(f"batch {name} must be a 1-D integer tensor, got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} of shape "
                                 f"{tuple(getattr(t, 'shape', ()))}")
            if t.shape[0] != batch[0].shape[0]:
                raise ValueError(f"batch {name} has {t.shape[0]} entries, users has "
                                 f"{batch[0].shape[0]}")
        return tuple(batch)

    def embeddings(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Final user [U, d] and item [I, d] embeddings used for ranking (no dropout)."""
        raise NotImplementedError

    def calculate_loss(self, batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        raise NotImplementedError

    @torch.no_grad()
    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), num_items] of the given users against every item.

        In eval mode the propagated embeddings are computed once and reused until the model is
        switched to train mode or loaded again, so ranking all users in batches propagates once.
        """
        if self.training or self._prediction_cache is None:
            cache = self.embeddings()
            if self.training:
                user, item = cache
                return user[users] @ item.T
            self._prediction_cache = cache
        user, item = self._prediction_cache
        return user[users] @ item.T

    def drop_caches(self) -> None:
        """Forgets what is derived from the parameters and kept between calls. Runs on train() /
        eval(), load_state_dict() and moves (.to(), .double(), ...); subclasses that keep more
        extend it."""
        self._prediction_cache = None

    def train(self, mode: bool = True):
        self.drop_caches()
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self.drop_caches()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn, recurse=True):
        self.drop_caches()
        out = super()._apply(fn, recurse)
        if self._operators_follow_device:  # see choose_operators
            chosen = _impl.resolve(None, self.OPERATORS, self.device)
            if chosen != self.impl:
                self.use_operators(chosen)
        return out

    # ------------------------------------------------------------------ operators
    OPERATORS: Tuple[str, ...] = ()
    _operators_follow_device = False

    def choose_operators(self, impl: Optional[str]) -> None:
        """Called once by subclasses' __init__. impl "fused" / "torch" is kept wherever the model
        goes (an explicit "fused" raises at the first operator on a device without kernels);
        None picks "fused" where the build has kernels for the parameters' device and all of
        OPERATORS, and is chosen again after every move, so that a CPU-only build moved to a GPU
        runs the references instead of failing."""
        self._operators_follow_device = impl is None
        self.use_operators(_impl.resolve(impl, self.OPERATORS))

    def use_operators(self, impl: str) -> None:
        """Sets `impl` ("fused" | "torch") and the operator table; subclasses extend it."""
        self.impl = impl
        self._ops = _impl.operator_table(impl, self.OPERATORS)
