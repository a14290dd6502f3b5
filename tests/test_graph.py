"""CSRGraph: construction, validation, normalisation, edge dropout, transpose, devices."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from irllrec_fast import CSRGraph, testing


def dense(graph):
    return graph.to_torch_sparse("coo").to_dense().double()


def test_from_interactions_builds_symmetric_bipartite_adjacency():
    users = [0, 0, 1, 2, 0]  # (0, 1) twice: merged
    items = [1, 0, 1, 2, 1]
    g = CSRGraph.from_interactions(users, items, num_users=3, num_items=3)
    expected = torch.zeros(6, 6, dtype=torch.float64)
    for u, i in zip(users, items):
        expected[u, 3 + i] = expected[3 + i, u] = 1.0
    assert g.num_nodes == 6 and g.num_edges == 8
    assert torch.equal(dense(g), expected)
    assert g.values_symmetric and (g.num_users, g.num_items) == (3, 3)


def test_from_scipy_equals_from_interactions():
    mat = sp.random(40, 30, density=0.1, format="coo", random_state=0)
    a = CSRGraph.from_scipy(mat)
    b = CSRGraph.from_interactions(mat.row, mat.col, 40, 30)
    assert torch.equal(a.rowptr, b.rowptr) and torch.equal(a.col, b.col)
    assert torch.equal(dense(a)[:40, 40:], torch.from_numpy((mat.toarray() != 0).astype(float)))


def test_sym_and_row_normalisation():
    g = testing.power_law_graph(seed=0).to(dtype=torch.float64)
    a = dense(g)
    deg = a.sum(1)
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    inv = torch.where(deg > 0, 1 / deg, torch.zeros_like(deg))
    sym = g.normalized("sym")
    torch.testing.assert_close(dense(sym), inv_sqrt[:, None] * a * inv_sqrt[None, :])
    assert sym.values_symmetric
    row = g.normalized("row")
    torch.testing.assert_close(dense(row), inv[:, None] * a)
    assert not row.values_symmetric
    assert torch.isfinite(row.value).all() and (deg == 0).any()  # isolated nodes are present


def test_transpose_is_correct_for_directed_graph():
    g = testing.random_directed_graph(50, 400, seed=2)
    t = g.transpose
    gt = CSRGraph(t.rowptr, t.col, g.value[t.perm.long()], g.num_nodes)
    torch.testing.assert_close(dense(gt), dense(g).T)


def test_reverse_permutation_of_interaction_graph():
    g = testing.power_law_graph(seed=3).normalized("row")
    t = g.transpose
    gt = CSRGraph(t.rowptr, t.col, g.value[t.perm.long()], g.num_nodes)
    torch.testing.assert_close(dense(gt), dense(g).T)


def test_drop_edges_keeps_a_subset_and_a_valid_transpose():
    g = testing.power_law_graph(seed=1).normalized("sym")
    d = g.drop_edges(0.6, torch.Generator().manual_seed(0))
    kept = dense(d)
    full = dense(g)
    assert 0.5 * g.num_edges < d.num_edges < 0.7 * g.num_edges
    assert torch.all((kept == 0) | (kept == full))  # entries kept unscaled
    t = d.transpose
    dt = CSRGraph(t.rowptr, t.col, d.value[t.perm.long()], d.num_nodes)
    torch.testing.assert_close(dense(dt), kept.T)
    assert g.drop_edges(1.0) is g
    with pytest.raises(ValueError, match="keep_rate"):
        g.drop_edges(1.5)


def test_to_moves_everything():
    g = testing.power_law_graph(seed=1)
    h = g.to(dtype=torch.float64)
    assert h.value.dtype == torch.float64 and h.transpose.perm.device == h.device
    if torch.cuda.is_available():
        c = g.to("cuda")
        assert c.rowptr.is_cuda and c.col.is_cuda and c.transpose.col.is_cuda


@pytest.mark.parametrize(
    "rowptr, col, n, message",
    [
        ([0, 1, 2], [0, 5], 2, r"col must lie in \[0, num_nodes = 2\)"),
        ([0, 1, 2], [0, -1], 2, r"col must lie in"),
        ([0, 2, 1], [0, 1], 2, "rowptr must be non-decreasing"),
        ([0, 1], [0], 2, "rowptr must have num_nodes \\+ 1 = 3 entries"),
        ([1, 1, 2], [0, 1], 2, r"rowptr\[0\] must be 0"),
        ([0, 1, 3], [0, 1], 2, r"rowptr\[-1\] must equal the number of edges"),
        ([0, 1, 2], [0.0, 1.0], 2, "col must hold integer indices"),
    ],
)
def test_bad_structure_raises_value_error(rowptr, col, n, message):
    with pytest.raises(ValueError, match=message):
        CSRGraph(torch.tensor(rowptr), torch.tensor(col), None, n)


def test_bad_values_and_interactions():
    with pytest.raises(ValueError, match="value must have shape"):
        CSRGraph(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(2), 1)
    with pytest.raises(ValueError, match="value must be a floating-point tensor"):
        CSRGraph(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"items must lie in \[0, num_items = 3\)"):
        CSRGraph.from_interactions([0], [3], 2, 3)
    with pytest.raises(ValueError, match="same length"):
        CSRGraph.from_interactions([0, 1], [0], 2, 3)
    with pytest.raises(ValueError, match="scipy.sparse"):
        CSRGraph.from_scipy(np.ones((2, 2)))


def test_real_amazon_graph_shape(amazon_graph):
    assert amazon_graph.num_nodes == 11000 + 9332
    assert amazon_graph.num_edges == 2 * 120464
    assert amazon_graph.values_symmetric


def test_degree_and_row_normalisation_of_a_directed_graph():
    """Out-degree is the row sum, also where A != A^T (e.g. after edge dropout)."""
    g = testing.random_directed_graph(50, 400, seed=2, dtype=torch.float64)
    a = dense(g)
    torch.testing.assert_close(g.degree(), a.sum(1))
    deg = a.sum(1)
    inv = torch.where(deg > 0, 1 / deg, torch.zeros_like(deg))
    torch.testing.assert_close(dense(g.normalized("row")), inv[:, None] * a)
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    torch.testing.assert_close(dense(g.normalized("sym")), inv_sqrt[:, None] * a * inv_sqrt[None, :])


def test_transpose_rows_are_ordered_by_source_node():
    g = testing.random_directed_graph(50, 400, seed=2)
    t = g.transpose
    for r in range(g.num_nodes):
        cols = t.col[t.rowptr[r]:t.rowptr[r + 1]].long()
        assert torch.all(cols[1:] >= cols[:-1]), r


def test_user_ids_are_range_checked_and_stored_zeros_are_no_edges():
    with pytest.raises(ValueError, match=r"users must lie in \[0, num_users = 2\)"):
        CSRGraph.from_interactions([2], [0], 2, 3)  # would silently become item node 0
    with pytest.raises(ValueError, match="must be >= 0"):
        CSRGraph.from_interactions(np.zeros(0, np.int64), np.zeros(0, np.int64), -1, 3)
    mat = sp.coo_matrix((np.array([1.0, 0.0]), ([0, 1], [1, 2])), shape=(2, 3))
    g = CSRGraph.from_scipy(mat)
    assert g.num_edges == 2 and dense(g)[1, 2 + 2] == 0


def test_drop_edges_follows_its_generator_and_checks_the_rate():
    g = testing.power_law_graph(seed=1)
    a = g.drop_edges(0.5, torch.Generator().manual_seed(7))
    torch.manual_seed(0)
    b = g.drop_edges(0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a.rowptr, b.rowptr) and torch.equal(a.col, b.col)
    with pytest.raises(ValueError, match="keep_rate"):
        g.drop_edges(-0.1)


def test_rowptr_must_end_at_the_edge_count():
    with pytest.raises(ValueError, match=r"rowptr\[-1\] must equal the number of edges"):
        CSRGraph(torch.tensor([0, 1, 1]), torch.tensor([0, 1]), None, 2)


def test_empty_python_lists_make_a_graph_without_edges():
    g = CSRGraph.from_interactions([], [], 2, 3)
    assert (g.num_nodes, g.num_edges) == (5, 0)
    with pytest.raises(ValueError, match="integer indices"):
        CSRGraph.from_interactions([0.5], [1.0], 2, 3)
