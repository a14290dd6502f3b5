"""Full-ranking evaluation, IRLLREC_SPEC.md section 5.

Every user with at least one interaction in the evaluated split is ranked against all items on the
model's device, in batches of users; the user's training items are pushed down by 1e8. Then, with
n_u the user's number of evaluated items and hits the binary relevance of the top K:
- Recall@K = hits in the top K / n_u (no min(K, n_u) cap);
- NDCG@K = sum_r hits_r / log2(r + 2) over the top K, divided by the same sum over the first
  min(K, n_u) ranks.
Metrics are means over those users, accumulated in float64.
"""
from __future__ import annotations

from typing import Dict, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

MASK = 1e8


def _rows_coo(mat: sp.csr_matrix, rows: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    sub = mat[rows].tocoo()
    return (torch.from_numpy(sub.row.astype(np.int64)).to(device),
            torch.from_numpy(sub.col.astype(np.int64)).to(device))


def _binary(mat) -> sp.csr_matrix:
    """Any stored nonzero is one interaction (spec section 5); explicit zeros are none."""
    mat = sp.csr_matrix(mat, copy=True)
    mat.eliminate_zeros()
    mat.sum_duplicates()
    mat.data[:] = 1
    return mat


@torch.no_grad()
def evaluate(model, split, train, ks: Sequence[int] = (5, 10, 20),
             batch_size: int = 1024) -> Dict[str, float]:
    """{"recall@K": ..., "ndcg@K": ...} for each K, plus "users" (the number evaluated).

    Args:
        model: anything with `full_sort_predict(users) -> [b, num_items]` scores and a `device`
            (or parameters); it is put in eval mode.
        split, train: [U, I] scipy sparse matrices of the evaluated and the training interactions.
        ks: cut-offs; batch_size: users per ranking batch.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    split, train = _binary(split), _binary(train)
    if split.shape != train.shape:
        raise ValueError(f"split and train must have the same shape, got {split.shape} and "
                         f"{train.shape}")
    model.eval()
    device = getattr(model, "device", None) or next(model.parameters()).device
    num_items = split.shape[1]
    top = min(max(ks), num_items)
    counts_all = np.diff(split.indptr)
    users = np.flatnonzero(counts_all > 0)
    discount = 1.0 / torch.log2(torch.arange(2, top + 2, dtype=torch.float64, device=device))
    ideal = torch.cumsum(discount, 0)
    sums = {f"{name}@{k}": torch.zeros((), dtype=torch.float64, device=device)
            for k in ks for name in ("recall", "ndcg")}
    for start in range(0, users.size, batch_size):
        rows = users[start:start + batch_size]
        rows_t = torch.from_numpy(rows).to(device)
        scores = model.full_sort_predict(rows_t).clone()
        r, c = _rows_coo(train, rows, device)
        scores[r, c] -= MASK
        ranked = torch.topk(scores, top, dim=1).indices
        truth = torch.zeros(rows.size, num_items, dtype=torch.bool, device=device)
        r, c = _rows_coo(split, rows, device)
        truth[r, c] = True
        hits = truth.gather(1, ranked).to(torch.float64)
        n = torch.from_numpy(counts_all[rows]).to(device=device, dtype=torch.float64)
        for k in ks:
            kk = min(k, top)
            sums[f"recall@{k}"] += (hits[:, :kk].sum(1) / n).sum()
            dcg = (hits[:, :kk] * discount[:kk]).sum(1)
            idcg = ideal[torch.clamp(n.long(), max=kk) - 1]
            sums[f"ndcg@{k}"] += (dcg / idcg).sum()
    result = {name: float(total) / max(users.size, 1) for name, total in sums.items()}
    result["users"] = int(users.size)
    return result


def format_table(metrics: Dict[str, float], ks: Iterable[int] = (5, 10, 20)) -> str:
    """A small text table: one row per metric, one column per K."""
    ks = list(ks)
    lines = ["metric  " + "".join(f"{'@' + str(k):>9}" for k in ks)]
    for name in ("recall", "ndcg"):
        lines.append(f"{name:<8}" + "".join(f"{metrics[f'{name}@{k}']:>9.4f}" for k in ks))
    return "\n".join(lines)
