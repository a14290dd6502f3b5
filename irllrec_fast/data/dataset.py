"""The in-memory dataset every reader returns: three interaction splits and optional text."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from ..graph import CSRGraph

SPLITS = ("train", "valid", "test")


class DatasetError(ValueError):
    """A dataset that cannot be used as it is: wrong shapes, indices out of range, overlapping
    splits, missing files. The message names the file or split."""


@dataclass
class TextEmbeddings:
    """LLM text embeddings, one row per user and per item (IRLLREC_SPEC.md section 3).

    Fields:
        profile_user: [U, dp] embeddings of the user profiles.
        profile_item: [I, dp] embeddings of the item profiles.
        intent_user: [U, dt] embeddings of the users' intent texts.
        intent_item: [I, dt] embeddings of the items' intent texts.
    """

    profile_user: np.ndarray
    profile_item: np.ndarray
    intent_user: np.ndarray
    intent_item: np.ndarray

    # each field's file in an IRLLRec/RLMRec dataset folder (spec section 6), named in errors
    FILE_STEMS = {"profile_user": "usr_emb_np", "profile_item": "itm_emb_np",
                  "intent_user": "user_intent_emb_3", "intent_item": "item_intent_emb_3"}

    def check(self, num_users: int, num_items: int, source: str = "text embeddings") -> None:
        for kind in ("profile", "intent"):
            users, items = getattr(self, f"{kind}_user"), getattr(self, f"{kind}_item")
            for side, x, n in (("user", users, num_users), ("item", items, num_items)):
                field = f"{kind}_{side}"
                name = f"{field} ({self.FILE_STEMS[field]})"
                if not isinstance(x, np.ndarray) or x.ndim != 2:
                    raise DatasetError(f"{source}: {name} must be a 2-D array, got "
                                       f"{getattr(x, 'shape', type(x).__name__)}")
                if x.shape[0] != n:
                    raise DatasetError(f"{source}: {name} has {x.shape[0]} rows but the "
                                       f"dataset has {n} {side}s")
                if not np.issubdtype(x.dtype, np.floating):
                    raise DatasetError(f"{source}: {name} must hold floats, got {x.dtype}")
                if not np.isfinite(x).all():
                    raise DatasetError(f"{source}: {name} contains NaN or infinity")
            if users.shape[1] != items.shape[1]:
                raise DatasetError(f"{source}: {kind} user and item embeddings differ in width "
                                   f"({users.shape[1]} and {items.shape[1]})")


def interaction_matrix(users, items, num_users: int, num_items: int,
                       source: str = "interactions") -> sp.csr_matrix:
    """A binary [U, I] CSR matrix (sorted indices, duplicates merged) from id arrays, with the
    ids checked against the shape."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise DatasetError(f"{source}: user and item id arrays must be 1-D and equally long")
    for name, ids, bound in (("user", users, num_users), ("item", items, num_items)):
        if ids.size and (ids.min() < 0 or ids.max() >= bound):
            raise DatasetError(f"{source}: {name} ids must lie in [0, {bound}), found "
                               f"[{ids.min()}, {ids.max()}]")
    mat = sp.csr_matrix((np.ones(users.size, dtype=np.float32), (users, items)),
                        shape=(num_users, num_items))
    return binarize(mat)


def binarize(mat) -> sp.csr_matrix:
    """Any nonzero becomes 1 (float32), duplicates merged, indices sorted."""
    mat = sp.csr_matrix(mat)
    mat.sum_duplicates()
    mat.eliminate_zeros()
    mat.data = np.ones_like(mat.data, dtype=np.float32)
    mat.sort_indices()
    return mat.astype(np.float32)


@dataclass
class Dataset:
    """Users, items, the train / valid / test interactions and (optionally) text embeddings.

    Fields:
        name: dataset name; selects the per-dataset overrides of a config file.
        train, valid, test: binary [U, I] scipy CSR matrices (sorted indices, float32 ones).
        text: `TextEmbeddings` or None (LightGCN needs none; IRLLRec needs them).
        source: where it was read from (for messages).
        user_ids, item_ids: the original ids of each row / column when a reader compacted
            them (MovieLens), else None.

    Construction validates: equal shapes, disjoint splits, a non-empty training split, text
    shapes; violations raise `DatasetError`.
    """

    name: str
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    text: Optional[TextEmbeddings] = None
    source: str = field(default="")
    user_ids: Optional[np.ndarray] = None
    item_ids: Optional[np.ndarray] = None

    def __post_init__(self):
        where = self.source or self.name
        for split in SPLITS:
            mat = getattr(self, split)
            if not sp.issparse(mat) or mat.ndim != 2:
                raise DatasetError(f"{where}: the {split} split must be a 2-D scipy sparse "
                                   f"matrix, got {type(mat).__name__}")
            setattr(self, split, binarize(mat))
        shape = self.train.shape
        for split in ("valid", "test"):
            if getattr(self, split).shape != shape:
                raise DatasetError(f"{where}: the {split} split has shape "
                                   f"{getattr(self, split).shape} but train has {shape}")
        if self.train.nnz == 0:
            raise DatasetError(f"{where}: the training split is empty")
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            common = getattr(self, a).multiply(getattr(self, b)).nnz
            if common:
                raise DatasetError(f"{where}: the {a} and {b} splits share {common} "
                                   "interactions; splits must be disjoint")
        if self.text is not None:
            self.text.check(self.num_users, self.num_items, f"{where} text embeddings")

    @property
    def num_users(self) -> int:
        return self.train.shape[0]

    @property
    def num_items(self) -> int:
        return self.train.shape[1]

    def train_graph(self) -> CSRGraph:
        """The training interactions as the bipartite `CSRGraph` the models propagate over."""
        return CSRGraph.from_scipy(self.train)

    def summary(self) -> str:
        text = "none" if self.text is None else (
            f"profiles {self.text.profile_user.shape[1]}-d, intents "
            f"{self.text.intent_user.shape[1]}-d")
        return (f"{self.name}: {self.num_users} users, {self.num_items} items, interactions "
                f"train {self.train.nnz} / valid {self.valid.nnz} / test {self.test.nnz}, "
                f"text {text}")
