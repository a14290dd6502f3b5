"""Recommenders. Each implements `calculate_loss(batch) -> (loss, parts)` and
`full_sort_predict(users) -> scores` (see `base.Recommender`).

| model    | config          | needs text embeddings |
|----------|-----------------|-----------------------|
| LightGCN | LightGCNConfig  | no                    |
| IRLLRec  | IRLLRecConfig   | yes                   |
"""
from .base import Recommender
from .irllrec import IRLLRec, IRLLRecConfig
from .lightgcn import LightGCN, LightGCNConfig

MODELS = {"lightgcn": (LightGCN, LightGCNConfig), "irllrec": (IRLLRec, IRLLRecConfig)}


def build_model(name: str, graph, config=None, *, text=None, impl=None) -> Recommender:
    """A model by name ("lightgcn" | "irllrec") on the training graph; text is required by
    IRLLRec and ignored by LightGCN."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    cls, config_cls = MODELS[name]
    config = config if config is not None else config_cls()
    if cls is IRLLRec:
        return IRLLRec(graph, text, config, impl=impl)
    return cls(graph, config, impl=impl)


__all__ = ["Recommender", "LightGCN", "LightGCNConfig", "IRLLRec", "IRLLRecConfig", "MODELS",
           "build_model"]
