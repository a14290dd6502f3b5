"""Every operator against its reference on seeded random cases: shapes, graphs (uniform, power-law
rows, symmetric, edge-dropped, empty), memory layouts and magnitudes drawn at random, values and
all gradients compared with the float64 reference. A failing case names its seed; rerun it alone
by its id, e.g. `pytest "tests/ops/test_random_cases.py::test_spmm[cpu-7]"`. A random sweep like
this one found the float64 NaN of intent_assign fixed in 1bdbbef (of the 40 default seeds,
test_intent_assign[cpu-24] fails on the kernel before the fix).
"""
import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import TOLERANCES
from irllrec_fast import CSRGraph, ops
from irllrec_fast.ops import reference

# IRLLREC_FAST_RANDOM_CASES=2000 for a longer sweep (about 25 s per 1000 seeds on 2 cores)
SEEDS = range(int(os.environ.get("IRLLREC_FAST_RANDOM_CASES", "40")))


def odd_layout(t, rng):
    """t itself, or the same values in a column-major or strided, offset view."""
    kind = rng.integers(0, 3)
    if kind == 0:
        return t.clone()
    if kind == 1:
        return t.T.contiguous().T
    wide = torch.zeros(t.shape[0] + 1, 2 * t.shape[1], dtype=t.dtype, device=t.device)
    wide[1:, ::2] = t
    return wide[1:, ::2]


def random_rows(rng, n, d, scale_range=(-1.0, 1.0)):
    """[n, d] float64 values ~ N(0, 1) times 10^U(scale_range), sometimes with duplicate rows."""
    x = torch.from_numpy(rng.standard_normal((n, d))) * 10 ** rng.uniform(*scale_range)
    if n > 1 and rng.random() < 0.3:
        x = x[torch.from_numpy(rng.integers(0, n, n))]
    return x


def random_graph(rng, n):
    """A CSR graph over n nodes with random values: uniform, power-law rows, or symmetric
    (values included, so the operators take their paths for A^T = A); sometimes edge-dropped (a
    structure without symmetry)."""
    kind = rng.integers(0, 3)
    if kind == 1:
        degrees = np.minimum(rng.zipf(1.6, n), n)
        rows = np.repeat(np.arange(n), degrees)
        mat = sp.csr_matrix((np.ones(rows.size), (rows, rng.integers(0, n, rows.size))),
                            shape=(n, n))
    else:
        mat = sp.random(n, n, density=rng.uniform(0, 0.3) ** 2, format="csr",
                        random_state=int(rng.integers(1 << 30)),
                        data_rvs=rng.standard_normal)
    if kind == 2:
        mat = mat + mat.T
    else:
        mat.data = rng.standard_normal(mat.nnz)
    mat.sum_duplicates()
    mat.sort_indices()
    graph = CSRGraph(torch.from_numpy(mat.indptr.astype(np.int64)),
                     torch.from_numpy(mat.indices.astype(np.int64)), torch.from_numpy(mat.data),
                     n, dtype=torch.float64)
    assert graph.values_symmetric or kind != 2
    if graph.num_edges and rng.random() < 0.3:
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
        graph = graph.drop_edges(float(rng.uniform(0.3, 0.9)), gen)
    return graph


def compare(fused, ref, inputs, dtype, device, rng, scales, seed):
    """fused(*inputs in dtype, odd layouts, on device) against ref(*inputs in float64): the
    output and every input's gradient for one random upstream gradient, within the dtype's
    tolerance times each quantity's scale (scales: output's, then each gradient's)."""
    rounded = [t.to(dtype) for t in inputs]
    ours = [odd_layout(t.to(device), rng).requires_grad_() for t in rounded]
    exact = [t.double().requires_grad_() for t in rounded]
    out = fused(*ours)
    want = ref(*exact)
    upstream = torch.from_numpy(rng.standard_normal(tuple(want.shape)))
    got_grads = torch.autograd.grad(out, ours, upstream.to(device, dtype), allow_unused=True)
    want_grads = torch.autograd.grad(want, exact, upstream, allow_unused=True)
    atol, rtol = TOLERANCES[dtype]
    names = ["output"] + [f"grad of input {i}" for i in range(len(inputs))]
    for name, got, expected, scale in zip(names, [out, *got_grads], [want, *want_grads], scales):
        if expected is None:
            assert got is None or not got.any(), f"seed {seed}: {name} should be zero"
            continue
        assert torch.isfinite(got).all(), f"seed {seed}: {name} is not finite"
        torch.testing.assert_close(got.double().cpu(), expected, rtol=rtol, atol=atol * scale,
                                   msg=lambda m: f"seed {seed}, {name}: {m}")


def dtype_for(seed):
    return torch.float64 if seed % 2 == 0 else torch.float32


def norm_max(x):
    return float(x.abs().max()) if x.numel() else 0.0


def graph_case(seed):
    """(rng, n, d, dtype, graph) of one graph operator's case."""
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 300)), int(rng.integers(1, 140))
    return rng, n, d, dtype_for(seed), random_graph(rng, n)


@pytest.mark.parametrize("seed", SEEDS)
def test_spmm(device, seed):
    rng, n, d, dtype, graph = graph_case(seed)
    x = random_rows(rng, n, d)
    value = graph.value.clone()
    on_device = graph.to(device, dtype)
    # |out| <= sum |a_ij| |x_j|: the scale of the output and of grad x; grad value[e] = <g, x>
    row_sums = float(torch.zeros(n, dtype=torch.float64).index_add_(
        0, graph.row_index().cpu(), value.abs()).max()) if graph.num_edges else 0.0
    scale = max(1.0, row_sums) * max(1.0, norm_max(x)) * d
    compare(lambda x, v: ops.spmm(on_device, x, v.reshape(-1)),
            lambda x, v: reference.spmm(graph, x, v.reshape(-1)),
            [x, value.reshape(-1, 1)], dtype, device, rng, [scale, scale, scale], seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_intent_assign(device, seed):
    rng = np.random.default_rng(seed)
    n, d, k = int(rng.integers(1, 400)), int(rng.integers(1, 140)), int(rng.integers(1, 513))
    dtype = dtype_for(seed)
    # float64 logits up to ~1e5, far past exp's range; float32 ones only as large as float32
    # resolves: above ~100 its softmax is ill-conditioned for the reference too
    # (test_large_logits_are_stable)
    e = random_rows(rng, n, d, (-1.0, 2.0))
    w = random_rows(rng, d, k)
    if rng.random() < 0.4:  # every prototype leaning one way, some rows the other way: rows
        # whose logits all lie thousands below 0, far past exp's range
        lean = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal(d)), dim=0)
        w = w + lean[:, None] * 3 * norm_max(w)
        e[torch.from_numpy(rng.random(n) < 0.2)] = -lean * 1000 / norm_max(w)
    if dtype == torch.float32:
        e = e / max(1.0, norm_max(e @ w) / 30)
    scale = max(1.0, norm_max(w)) ** 2 * max(1.0, norm_max(e)) * d
    compare(ops.intent_assign, reference.intent_assign, [e, w], dtype, device, rng,
            [scale] * 3, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_intent_propagate(device, seed):
    rng, n, d, dtype, graph = graph_case(seed)
    r, x = random_rows(rng, n, d), random_rows(rng, n, d)
    on_device = graph.to(device, dtype)
    # the gradient for r goes through r / ||r||: its rounding noise grows as 1 / ||r||, and where
    # it is exactly 0 (rows of one edge, d = 1) only that noise remains
    smallest = float(r.norm(dim=1).min()) if n else 1.0
    scale = max(1.0, norm_max(x)) * d
    compare(lambda r, x: ops.intent_propagate(on_device, r, x),
            lambda r, x: reference.intent_propagate(graph, r, x), [r, x], dtype, device, rng,
            [scale, scale / min(1.0, smallest) * 10, scale], seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_infonce(device, seed):
    rng = np.random.default_rng(seed)
    b, m, d = int(rng.integers(1, 300)), int(rng.integers(1, 900)), int(rng.integers(1, 140))
    dtype = dtype_for(seed)
    tau = float(10 ** rng.uniform(-2, 1))
    # unit rows, as the losses give the operator: logits within 1 / tau
    unit = [torch.nn.functional.normalize(random_rows(rng, rows, d), dim=1)
            for rows in (b, b, m)]
    scale = 1.0 / tau
    if rng.random() < 0.4:  # candidates are the positives themselves
        compare(lambda a, p: ops.infonce(a, p, p, tau),
                lambda a, p: reference.infonce(a, p, p, tau), unit[:2], dtype, device, rng,
                [scale] * 3, seed)
    else:
        compare(lambda a, p, c: ops.infonce(a, p, c, tau),
                lambda a, p, c: reference.infonce(a, p, c, tau), unit, dtype, device, rng,
                [scale] * 4, seed)
