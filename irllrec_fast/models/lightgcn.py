"""LightGCN (He et al., SIGIR 2020) as IRLLREC_SPEC.md section 1 states it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .. import losses
from .._rows import take_rows
from ..graph import CSRGraph
from .base import Recommender

LAYER_COMBINES = ("sum", "mean")


@dataclass
class LightGCNConfig:
    """Hyperparameters of LightGCN (names as in the authors' YAML files).

    Fields:
        embedding_size: d, width of the user and item tables (32).
        layer_num: L, number of propagation layers (3).
        reg_weight: weight of the L2 term, sum of ||W||^2 over all parameters (1e-6 in RLMRec's
            LightGCN config).
        keep_rate: probability of keeping each entry of the normalised adjacency during training
            (edge dropout, no rescaling); 1.0 disables it. RLMRec's LightGCN baseline uses 0.8.
        layer_combine: "sum" (the released code) or "mean" (the LightGCN paper) of the L + 1
            layer embeddings.
    """

    embedding_size: int = 32
    layer_num: int = 3
    reg_weight: float = 1e-6
    keep_rate: float = 0.8
    layer_combine: str = "sum"

    def __post_init__(self):
        if self.embedding_size < 1:
            raise ValueError(f"embedding_size must be >= 1, got {self.embedding_size}")
        if self.layer_num < 0:
            raise ValueError(f"layer_num must be >= 0, got {self.layer_num}")
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {self.keep_rate}")
        if self.reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {self.reg_weight}")
        if self.layer_combine not in LAYER_COMBINES:
            raise ValueError(f"layer_combine must be one of {LAYER_COMBINES}, got "
                             f"{self.layer_combine!r}")


class LightGCN(Recommender):
    """E(l+1) = Â E(l), final = sum (or mean) over l of E(l); score(u, i) = <e_u, e_i>.

    Args:
        graph: the training interactions as a bipartite `CSRGraph` (from_interactions/from_scipy).
        config: `LightGCNConfig`.
        impl: "fused" (ops.spmm), "torch" (ops.reference.spmm) or None (fused where the build has
            kernels for the model's device, chosen again after each move).
    """

    OPERATORS = ("spmm",)

    def __init__(self, graph: CSRGraph, config: Optional[LightGCNConfig] = None, *,
                 impl: Optional[str] = None):
        super().__init__(graph)
        if config is not None and not isinstance(config, LightGCNConfig):
            raise TypeError(f"config must be a LightGCNConfig, got {type(config).__name__}")
        self.config = config if config is not None else LightGCNConfig()
        self.choose_operators(impl)
        d = self.config.embedding_size
        self.user_embeds = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_users, d)))
        self.item_embeds = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_items, d)))

    def propagate(self, keep_rate: float = 1.0) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """(final [N, d], layers [E(0), ..., E(L)]), users first. keep_rate < 1 drops edges of
        the normalised adjacency with the global torch RNG (fresh each call)."""
        graph = self.graph("sym")
        if keep_rate < 1.0:
            graph = graph.drop_edges(keep_rate)
        layers = [torch.cat([self.user_embeds, self.item_embeds], dim=0)]
        for _ in range(self.config.layer_num):
            layers.append(self._ops.spmm(graph, layers[-1]))
        final = sum(layers)
        if self.config.layer_combine == "mean":
            final = final / len(layers)
        return final, layers

    def forward(self) -> torch.Tensor:
        """Final embeddings [N, d]; in training mode with edge dropout."""
        return self.propagate(self.config.keep_rate if self.training else 1.0)[0]

    def embeddings(self) -> Tuple[torch.Tensor, torch.Tensor]:
        final, _ = self.propagate(1.0)
        return final[:self.num_users], final[self.num_users:]

    def calculate_loss(self, batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """BPR (mean over the batch) + reg_weight * sum ||W||^2."""
        users, pos, neg = self.unpack_batch(batch)
        final, _ = self.propagate(self.config.keep_rate)
        user, item = final[:self.num_users], final[self.num_users:]
        bpr = losses.cal_bpr_loss(take_rows(user, users), take_rows(item, pos),
                                  take_rows(item, neg)) / users.shape[0]
        reg = self.config.reg_weight * losses.reg_params(self, impl=self.impl)
        return bpr + reg, {"bpr": bpr, "reg": reg}
