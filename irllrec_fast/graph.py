"""The user-item interaction graph in CSR form, validated once.

IRLLRec propagates over the symmetric bipartite adjacency of N = U + I nodes: users first, item j
is node U + j (IRLLREC_SPEC.md section 1). `CSRGraph` holds that structure with int32 indices
(half the index traffic of int64 in the kernels) and keeps a transpose for the backward pass of
the operators; symmetric graphs need none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

_MAX_INDEX = 2**31 - 1


@dataclass(frozen=True)
class Transpose:
    """The transpose of a CSR structure.

    `rowptr` [n + 1] and `col` [E] describe A^T; `perm` [E] gives, for each edge of A^T, the id of
    the same edge in A (so A^T's values are `value[perm]`).
    """

    rowptr: torch.Tensor
    col: torch.Tensor
    perm: torch.Tensor

    def to(self, device) -> "Transpose":
        return Transpose(self.rowptr.to(device), self.col.to(device), self.perm.to(device))


def _as_long_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if x.size == 0 and x.dtype == np.float64:  # an empty list has no integer dtype to infer
            x = x.astype(np.int64)
    t = torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must hold integer indices, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def _rowptr_from_sorted_rows(rows: torch.Tensor, num_nodes: int) -> torch.Tensor:
    counts = torch.bincount(rows, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    return rowptr


def _transpose_structure(rowptr: torch.Tensor, col: torch.Tensor, num_nodes: int) -> Transpose:
    rows = torch.repeat_interleave(
        torch.arange(num_nodes, device=col.device, dtype=torch.int64), rowptr.diff().long()
    )
    # Stable sort by column keeps each transposed row ordered by the original row id.
    perm = torch.argsort(col.long(), stable=True)
    t_rowptr = _rowptr_from_sorted_rows(col.long()[perm], num_nodes)
    return Transpose(t_rowptr.int(), rows[perm].int(), perm.int())


class CSRGraph:
    """A square sparse matrix over `num_nodes` nodes in CSR form.

    Attributes:
        rowptr: int32 [num_nodes + 1], row r's edges are rowptr[r] .. rowptr[r + 1] - 1.
        col: int32 [num_edges], the column (target node) of each edge.
        value: float [num_edges], the edge weights.
        num_nodes, num_edges: sizes; num_users / num_items are set for bipartite graphs.
        transpose: `Transpose` of the structure, used by the operators' backward passes.
        values_symmetric: True when A == A^T including values (then the transpose is A itself).

    The constructor validates the arrays and raises ValueError naming the problem; use the
    `from_interactions` / `from_scipy` constructors for user-item data.
    """

    def __init__(
        self,
        rowptr,
        col,
        value=None,
        num_nodes: Optional[int] = None,
        *,
        dtype: torch.dtype = torch.float32,
        validate: bool = True,
        transpose: Optional[Transpose] = None,
        values_symmetric: Optional[bool] = None,
        num_users: Optional[int] = None,
        num_items: Optional[int] = None,
    ):
        rowptr = _as_long_tensor(rowptr, "rowptr") if validate else rowptr
        col = _as_long_tensor(col, "col") if validate else col
        if num_nodes is None:
            num_nodes = int(rowptr.numel()) - 1
        if value is None:
            value = torch.ones(col.numel(), dtype=dtype, device=col.device)
        value = torch.as_tensor(value)
        if validate:
            _validate(rowptr, col, value, num_nodes)
        self.rowptr = rowptr.to(torch.int32)
        self.col = col.to(torch.int32)
        self.value = value
        self.num_nodes = int(num_nodes)
        self.num_users = num_users
        self.num_items = num_items
        self.transpose = transpose if transpose is not None else _transpose_structure(
            self.rowptr, self.col, self.num_nodes
        )
        if values_symmetric is None:
            values_symmetric = self._check_symmetric()
        self.values_symmetric = bool(values_symmetric)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_interactions(cls, users, items, num_users: int, num_items: int, *,
                          dtype: torch.dtype = torch.float32, device=None) -> "CSRGraph":
        """The symmetric bipartite adjacency of user-item pairs (duplicates merged, weight 1).

        users, items: integer arrays [P] with 0 <= users < num_users, 0 <= items < num_items.
        """
        users = _as_long_tensor(users, "users")
        items = _as_long_tensor(items, "items")
        if users.numel() != items.numel():
            raise ValueError(f"users and items must have the same length, got {users.numel()} "
                             f"and {items.numel()}")
        if num_users < 0 or num_items < 0:
            raise ValueError(f"num_users and num_items must be >= 0, got {num_users}, {num_items}")
        _check_range(users, num_users, "users", "num_users")
        _check_range(items, num_items, "items", "num_items")
        n = num_users + num_items
        if n > _MAX_INDEX:
            raise ValueError(f"num_users + num_items = {n} exceeds the int32 index range")
        rows = torch.cat([users, items + num_users])
        cols = torch.cat([items + num_users, users])
        key = torch.unique(rows * n + cols)  # sorted, duplicates merged
        rows, cols = key // max(n, 1), key % max(n, 1)
        if rows.numel() > _MAX_INDEX:
            raise ValueError(f"{rows.numel()} edges exceed the int32 index range")
        rowptr = _rowptr_from_sorted_rows(rows, n)
        # The reverse of edge (r, c) is (c, r); in a symmetric structure with sorted rows the
        # transpose equals the structure itself and perm maps each edge to its reverse.
        reverse = torch.searchsorted(key, cols * n + rows)
        transpose = Transpose(rowptr.int(), cols.int(), reverse.int())
        graph = cls(rowptr, cols, None, n, dtype=dtype, validate=False, transpose=transpose,
                    values_symmetric=True, num_users=num_users, num_items=num_items)
        return graph.to(device) if device is not None else graph

    @classmethod
    def from_scipy(cls, mat, *, dtype: torch.dtype = torch.float32, device=None) -> "CSRGraph":
        """The bipartite adjacency of a [U, I] interaction matrix (any nonzero is a pair)."""
        try:
            coo = mat.tocoo()
        except AttributeError as error:
            raise ValueError(f"mat must be a scipy.sparse matrix, got {type(mat).__name__}") from error
        if coo.ndim != 2:
            raise ValueError(f"mat must be 2-D, got shape {coo.shape}")
        nonzero = coo.data != 0
        return cls.from_interactions(coo.row[nonzero], coo.col[nonzero], coo.shape[0],
                                     coo.shape[1], dtype=dtype, device=device)

    # ----------------------------------------------------------------- derived graphs
    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    @property
    def device(self) -> torch.device:
        return self.col.device

    def row_index(self) -> torch.Tensor:
        """int64 [num_edges]: the row (source node) of every edge."""
        return torch.repeat_interleave(
            torch.arange(self.num_nodes, device=self.device), self.rowptr.diff().long(),
            output_size=self.num_edges,
        )

    def degree(self) -> torch.Tensor:
        """Weighted out-degree [num_nodes] (the row sums of the values)."""
        return torch.zeros(self.num_nodes, dtype=self.value.dtype, device=self.device).index_add_(
            0, self.row_index(), self.value
        )

    def normalized(self, mode: str = "sym") -> "CSRGraph":
        """D^-1/2 A D^-1/2 (`"sym"`) or D^-1 A (`"row"`); a node of degree 0 keeps weight 0."""
        deg = self.degree()
        rows, cols = self.row_index(), self.col.long()
        if mode == "sym":
            inv = torch.where(deg > 0, deg.clamp_min(torch.finfo(deg.dtype).tiny).rsqrt(), 0.0)
            value = self.value * inv[rows] * inv[cols]
            symmetric = self.values_symmetric
        elif mode == "row":
            inv = torch.where(deg > 0, 1.0 / deg.clamp_min(torch.finfo(deg.dtype).tiny), 0.0)
            value = self.value * inv[rows]
            symmetric = None  # only if every row has the same degree; checked
        else:
            raise ValueError(f"mode must be 'sym' or 'row', got {mode!r}")
        return self._with(value=value, values_symmetric=symmetric)

    def drop_edges(self, keep_rate: float, generator: Optional[torch.Generator] = None) -> "CSRGraph":
        """Keeps each stored edge independently with probability keep_rate (no rescaling).

        The result is in general not symmetric; its transpose is derived from this graph's
        without sorting.
        """
        if not 0.0 <= keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in [0, 1], got {keep_rate}")
        if keep_rate == 1.0:
            return self
        keep = torch.rand(self.num_edges, generator=generator, device=self.device) < keep_rate
        new_id = torch.cumsum(keep, 0) - 1
        rows = self.row_index()
        rowptr = _rowptr_from_sorted_rows(rows[keep], self.num_nodes)
        t = self.transpose
        t_keep = keep[t.perm.long()]
        t_rows = torch.repeat_interleave(
            torch.arange(self.num_nodes, device=self.device), t.rowptr.diff().long(),
            output_size=self.num_edges,
        )
        transpose = Transpose(
            _rowptr_from_sorted_rows(t_rows[t_keep], self.num_nodes).int(),
            t.col[t_keep],
            new_id[t.perm.long()[t_keep]].int(),
        )
        return CSRGraph(rowptr, self.col[keep], self.value[keep], self.num_nodes, validate=False,
                        transpose=transpose, values_symmetric=False, num_users=self.num_users,
                        num_items=self.num_items)

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "CSRGraph":
        """The same graph with its tensors on `device` (and values in `dtype`)."""
        value = self.value.to(device=device, dtype=dtype)
        return CSRGraph(self.rowptr.to(device), self.col.to(device), value, self.num_nodes,
                        validate=False, transpose=self.transpose.to(device),
                        values_symmetric=self.values_symmetric, num_users=self.num_users,
                        num_items=self.num_items)

    def with_values(self, value: torch.Tensor, values_symmetric: Optional[bool] = None) -> "CSRGraph":
        """The same structure with new edge values [num_edges]."""
        _check_value(value, self.num_edges)
        return self._with(value=value, values_symmetric=values_symmetric)

    # ----------------------------------------------------------------- conversions
    def to_scipy(self):
        import scipy.sparse as sp

        return sp.csr_matrix(
            (self.value.detach().cpu().numpy(), self.col.cpu().numpy(), self.rowptr.cpu().numpy()),
            shape=(self.num_nodes, self.num_nodes),
        )

    def to_torch_sparse(self, layout: str = "coo") -> torch.Tensor:
        """A torch sparse tensor (`"coo"`, coalesced, or `"csr"`) with the same entries."""
        size = (self.num_nodes, self.num_nodes)
        if layout == "csr":
            # the structure was validated when the graph was built
            return torch.sparse_csr_tensor(self.rowptr.long(), self.col.long(), self.value, size,
                                           check_invariants=False)
        if layout == "coo":
            # coalesce() sums repeated (row, col) entries, as A x does; never claim it unchecked
            index = torch.stack([self.row_index(), self.col.long()])
            coo = torch.sparse_coo_tensor(index, self.value, size, check_invariants=False)
            return coo.coalesce()
        raise ValueError(f"layout must be 'coo' or 'csr', got {layout!r}")

    def transpose_args(self, value_overridden: bool):
        """(t_rowptr, t_col, t_perm) as the operators take them; t_perm is empty when the
        transpose is the graph itself (symmetric structure and values, default values)."""
        t = self.transpose
        if self.values_symmetric and not value_overridden:
            return self.rowptr, self.col, self.col.new_empty(0)
        return t.rowptr, t.col, t.perm

    def __repr__(self) -> str:
        kind = "" if self.num_users is None else f", users={self.num_users}, items={self.num_items}"
        return (f"CSRGraph(nodes={self.num_nodes}, edges={self.num_edges}{kind}, "
                f"dtype={self.value.dtype}, device={self.device})")

    # ----------------------------------------------------------------- internals
    def _with(self, value: torch.Tensor, values_symmetric: Optional[bool]) -> "CSRGraph":
        return CSRGraph(self.rowptr, self.col, value, self.num_nodes, validate=False,
                        transpose=self.transpose, values_symmetric=values_symmetric,
                        num_users=self.num_users, num_items=self.num_items)

    def _check_symmetric(self) -> bool:
        t = self.transpose
        if not (torch.equal(t.rowptr, self.rowptr) and torch.equal(t.col, self.col)):
            return False
        return bool(torch.equal(self.value[t.perm.long()], self.value))


def _check_range(index: torch.Tensor, bound: int, name: str, bound_name: str) -> None:
    if index.numel() == 0:
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0 or hi >= bound:
        raise ValueError(f"{name} must lie in [0, {bound_name} = {bound}), found values in "
                         f"[{lo}, {hi}]")


def _check_value(value: torch.Tensor, num_edges: int) -> None:
    if not isinstance(value, torch.Tensor) or not value.dtype.is_floating_point:
        raise ValueError(f"value must be a floating-point tensor, got "
                         f"{getattr(value, 'dtype', type(value).__name__)}")
    if value.dim() != 1 or value.numel() != num_edges:
        raise ValueError(f"value must have shape ({num_edges},) like col, got {tuple(value.shape)}")


def _validate(rowptr: torch.Tensor, col: torch.Tensor, value: torch.Tensor, num_nodes: int) -> None:
    if num_nodes < 0 or num_nodes > _MAX_INDEX:
        raise ValueError(f"num_nodes must be in [0, 2^31), got {num_nodes}")
    if rowptr.numel() != num_nodes + 1:
        raise ValueError(f"rowptr must have num_nodes + 1 = {num_nodes + 1} entries, got "
                         f"{rowptr.numel()}")
    if int(rowptr[0]) != 0:
        raise ValueError(f"rowptr[0] must be 0, got {int(rowptr[0])}")
    if num_nodes > 0 and bool((rowptr.diff() < 0).any()):
        bad = int(torch.nonzero(rowptr.diff() < 0)[0])
        raise ValueError(f"rowptr must be non-decreasing, but rowptr[{bad + 1}] = "
                         f"{int(rowptr[bad + 1])} < rowptr[{bad}] = {int(rowptr[bad])}")
    if int(rowptr[-1]) != col.numel():
        raise ValueError(f"rowptr[-1] must equal the number of edges len(col) = {col.numel()}, "
                         f"got {int(rowptr[-1])}")
    if col.numel() > _MAX_INDEX:
        raise ValueError(f"{col.numel()} edges exceed the int32 index range")
    _check_range(col, num_nodes, "col", "num_nodes")
    _check_value(value, col.numel())
    if value.device != col.device or rowptr.device != col.device:
        raise ValueError(f"rowptr, col and value must be on one device, got {rowptr.device}, "
                         f"{col.device}, {value.device}")
