"""intent_propagate against its reference: values, gradients for r and x on symmetric and
directed structures, zero-weight rows, isolated nodes, bad input, registrations."""
import pytest
import torch

from conftest import assert_close, assert_compiles_like_eager
from irllrec_fast import CSRGraph, ops, testing
from irllrec_fast.ops import reference


def features(graph, d, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r, x, g = (torch.randn(graph.num_nodes, d, generator=gen, dtype=torch.float64)
               for _ in range(3))
    return tuple(t.to(graph.device, dtype) for t in (r, x, g))


def run_both(graph, r, x, g):
    """(out, grad_r, grad_x) of the fused op and of the reference for one upstream gradient."""
    results = []
    for fn in (ops.intent_propagate, reference.intent_propagate):
        rr = r.detach().clone().requires_grad_()
        xx = x.detach().clone().requires_grad_()
        out = fn(graph, rr, xx)
        out.backward(g)
        results.append((out.detach(), rr.grad, xx.grad))
    return results


def assert_matches(graph, r, x, g, scale=1.0):
    (out, gr, gx), (ref, ref_gr, ref_gx) = run_both(graph, r, x, g)
    assert_close(out, ref, scale=scale)
    assert_close(gr, ref_gr, scale=scale)
    assert_close(gx, ref_gx, scale=scale)
    return out, gr, gx


def raw_op(graph, r, x, symmetric_hint):
    """The operator itself, with the transpose passed as the graph's own arrays (one-pass backward)
    or as the cached transpose copy (two-pass backward)."""
    t = (graph.rowptr, graph.col) if symmetric_hint else (graph.transpose.rowptr,
                                                           graph.transpose.col)
    return torch.ops.irllrec_fast.intent_propagate(graph.rowptr, graph.col, *t, r, x)


@pytest.mark.parametrize("d", [3, 32, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_power_law_graph_matches_reference(device, d, dtype):
    graph = testing.power_law_graph(seed=d).to(device, dtype)
    assert graph.values_symmetric  # the one-pass backward
    isolated = graph.rowptr.diff() == 0
    assert isolated.any()  # power_law_graph leaves some nodes without interactions
    out, gr, gx = assert_matches(graph, *features(graph, d, dtype, seed=d))
    assert torch.all(out[isolated] == 0)
    assert torch.all(gx[isolated] == 0)  # nobody aggregates an isolated node
    assert torch.all(gr[isolated] == 0)


@pytest.mark.parametrize("d", [3, 32, 20])
def test_directed_graph_with_empty_rows(device, d):
    graph = testing.random_directed_graph(500, 4000, seed=d).to(device)
    assert not graph.values_symmetric
    assert int((graph.rowptr.diff() == 0).sum()) > 0
    out, _, _ = assert_matches(graph, *features(graph, d, seed=d))
    assert torch.all(out[graph.rowptr.diff() == 0] == 0)


@pytest.mark.parametrize("d", [3, 32])
def test_edge_dropped_graph(device, d):
    base = testing.power_law_graph(seed=5).to(device)
    dropped = base.drop_edges(0.7, torch.Generator(device).manual_seed(0))
    assert dropped.num_edges < base.num_edges and not dropped.values_symmetric
    assert not torch.equal(dropped.transpose.col, dropped.col)  # really not symmetric
    assert_matches(dropped, *features(dropped, d, seed=d))


def test_graph_values_are_ignored(device):
    graph = testing.power_law_graph(seed=6).to(device)
    r, x, _ = features(graph, 16)
    assert torch.equal(ops.intent_propagate(graph.normalized("sym"), r, x),
                       ops.intent_propagate(graph, r, x))


def test_one_pass_and_two_pass_backward_agree(device):
    # a symmetric structure through both backward paths
    graph = testing.power_law_graph(seed=7).to(device)
    r, x, g = features(graph, 32, seed=7)
    grads = []
    for hint in (True, False):
        rr, xx = r.clone().requires_grad_(), x.clone().requires_grad_()
        out = raw_op(graph, rr, xx, hint)[0]
        out.backward(g)
        grads.append((out, rr.grad, xx.grad))
    for a, b in zip(*grads):
        assert_close(a, b)


def test_long_rows(device):
    # one user with 5000 items: a row longer than any CPU chunk or CUDA segment
    gen = torch.Generator().manual_seed(7)
    users = torch.cat([torch.zeros(5000, dtype=torch.long), torch.randint(1, 50, (2000,), generator=gen)])
    items = torch.cat([torch.arange(5000), torch.randint(0, 5000, (2000,), generator=gen)])
    graph = CSRGraph.from_interactions(users, items, 50, 5000).to(device)
    # float32 sums over a 5000-edge row carry ~n * eps relative rounding in both implementations
    # (the CUDA reference adds in atomic order): measured up to 7e-5 absolute on an H200
    assert_matches(graph, *features(graph, 32, seed=8), scale=20.0)
    dropped = graph.drop_edges(0.5, torch.Generator(device).manual_seed(1))
    assert_matches(dropped, *features(dropped, 32, seed=9), scale=20.0)


def test_real_amazon_graph(amazon_graph, device):
    graph = amazon_graph.to(device)
    assert_matches(graph, *features(graph, 32, seed=10))
    dropped = graph.drop_edges(0.8, torch.Generator(device).manual_seed(2))
    assert_matches(dropped, *features(dropped, 32, seed=11))


def opposite_intents_graph(device, dtype=torch.float32):
    """Node 0 points to 1, 2, 3 and they point back; they hold exactly the opposite intent of node
    0, so every alpha of rows 0..3 is exactly 0. Nodes 4..7 form a path, and 4 also points to 0
    (a directed structure)."""
    edges = [(0, 1), (0, 2), (0, 3), (1, 0), (2, 0), (3, 0), (4, 0), (4, 5), (5, 4), (5, 6),
             (6, 5), (6, 7), (7, 6)]
    rows = torch.tensor([a for a, _ in edges])
    cols = torch.tensor([b for _, b in edges])
    rowptr = torch.zeros(9, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=8), 0)
    graph = CSRGraph(rowptr, cols, None, 8).to(device)
    r = torch.randn(8, 5, dtype=dtype, generator=torch.Generator().manual_seed(12)).to(device)
    # axis-aligned intents normalise exactly to +-e_1, so cos is exactly -1 in any summation order
    r[0] = torch.tensor([2.5, 0, 0, 0, 0], dtype=dtype)
    r[1:4] = torch.tensor([[-0.5, 0, 0, 0, 0], [-3.0, 0, 0, 0, 0], [-1e-3, 0, 0, 0, 0]],
                          dtype=dtype)
    return graph, r


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_whose_alphas_are_all_zero(device, dtype):
    graph, r = opposite_intents_graph(device, dtype)
    x = torch.randn(8, 5, dtype=dtype, device=device)
    g = torch.randn(8, 5, dtype=dtype, device=device)
    _, row_sum, _ = raw_op(graph, r, x, symmetric_hint=False)
    assert torch.all(row_sum[:4] == 0) and torch.all(row_sum[4:] > 0)
    out, gr, gx = assert_matches(graph, r, x, g)
    assert torch.all(out[:4] == 0)
    assert torch.isfinite(gr).all() and torch.isfinite(gx).all()
    # the leaves are aggregated only by row 0 and aggregate only node 0, both with weight 0
    assert torch.all(gx[1:4] == 0) and torch.all(gr[1:4] == 0)
    assert gx[0].abs().sum() > 0 and gr[0].abs().sum() > 0  # through row 4


def test_zero_intent_rows(device):
    # r = 0 normalises to 0 (the 1e-12 clamp): alpha = 1/2 on its edges, gradient scaled by 1e12
    graph = testing.power_law_graph(seed=13, dtype=torch.float64).to(device)
    r, x, g = features(graph, 8, torch.float64, seed=13)
    r[::17] = 0
    (out, gr, gx), (ref, ref_gr, ref_gx) = run_both(graph, r, x, g)
    assert_close(out, ref)
    assert_close(gx, ref_gx)
    torch.testing.assert_close(gr, ref_gr, rtol=1e-9, atol=1e-9 * float(ref_gr.abs().max()))


def test_single_node(device):
    lonely = CSRGraph(torch.tensor([0, 0]), torch.tensor([], dtype=torch.long), None, 1).to(device)
    r, x, g = features(lonely, 4, seed=14)
    out, gr, gx = assert_matches(lonely, r, x, g)
    assert torch.equal(out, torch.zeros_like(x)) and torch.equal(gx, torch.zeros_like(x))
    loop = CSRGraph(torch.tensor([0, 1]), torch.tensor([0]), None, 1).to(device)
    out, gr, gx = assert_matches(loop, r, x, g)
    assert_close(out, x)  # alpha = 1 on the self-loop
    nothing = CSRGraph(torch.tensor([0]), torch.tensor([], dtype=torch.long), None, 0).to(device)
    assert ops.intent_propagate(nothing, *features(nothing, 4)[:2]).shape == (0, 4)


def test_non_contiguous_inputs(device):
    graph = testing.power_law_graph(seed=15).to(device)
    r, x, g = features(graph, 34, seed=15)
    assert_matches(graph, r[:, 1:33], x[:, 2:34], g[:, :32])


def test_is_deterministic(device):
    graph = testing.power_law_graph(seed=16).to(device)
    dropped = graph.drop_edges(0.8, torch.Generator(device).manual_seed(3))
    for gr_ in (graph, dropped):
        r, x, g = features(gr_, 32, seed=16)
        first = None
        for _ in range(3):
            rr, xx = r.clone().requires_grad_(), x.clone().requires_grad_()
            out = ops.intent_propagate(gr_, rr, xx)
            out.backward(g)
            now = (out, rr.grad, xx.grad)
            if first is None:
                first = now
            assert all(torch.equal(a, b) for a, b in zip(now, first))


@pytest.mark.parametrize("kind", ["symmetric", "directed"])
def test_gradcheck_float64(device, kind):
    if kind == "symmetric":
        graph = testing.power_law_graph(20, 15, 80, seed=17, dtype=torch.float64)
    else:
        graph = testing.random_directed_graph(30, 120, seed=17, dtype=torch.float64)
    graph = graph.to(device)
    r, x, _ = features(graph, 3, torch.float64, seed=17)
    r.requires_grad_(), x.requires_grad_()
    assert torch.autograd.gradcheck(lambda r, x: ops.intent_propagate(graph, r, x), (r, x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("symmetric_hint", [True, False])
def test_opcheck(device, symmetric_hint, dtype):
    graph = testing.random_directed_graph(60, 300, seed=18).to(device)
    r, x, g = features(graph, 8, dtype, seed=18)
    if symmetric_hint:
        graph = testing.power_law_graph(40, 20, 200, seed=18).to(device)
        r, x, g = features(graph, 8, dtype, seed=18)
    t = (graph.rowptr, graph.col) if symmetric_hint else (graph.transpose.rowptr,
                                                           graph.transpose.col)
    args = (graph.rowptr, graph.col, *t, r.requires_grad_(), x.requires_grad_())
    torch.library.opcheck(torch.ops.irllrec_fast.intent_propagate, args)
    out, row_sum, norm = torch.ops.irllrec_fast.intent_propagate(*args)
    torch.library.opcheck(torch.ops.irllrec_fast.intent_propagate_backward,
                          (g, graph.rowptr, graph.col, *t, r.detach(), x.detach(), out.detach(),
                           row_sum, norm))


def test_torch_compile_fullgraph(device):
    graph = testing.power_law_graph(seed=19).to(device)
    dropped = graph.drop_edges(0.8, torch.Generator(device).manual_seed(4))
    e, _, _ = features(graph, 16, seed=19)
    w = torch.randn(16, 24, device=device) * 0.3
    e.requires_grad_(), w.requires_grad_()

    def layer(e, w):
        r = ops.intent_assign(e, w)
        return (ops.intent_propagate(graph, r, e) + ops.intent_propagate(dropped, r, e)).square().sum()

    assert_compiles_like_eager(layer, (e, w))


class TestBadInput:
    def setup_method(self):
        self.graph = testing.power_law_graph(seed=1)

    def test_shapes(self):
        n = self.graph.num_nodes
        with pytest.raises(ValueError, match=r"r must have shape \(500, d\)"):
            ops.intent_propagate(self.graph, torch.randn(n - 1, 4), torch.randn(n, 4))
        with pytest.raises(ValueError, match=r"x must have shape \(500, d\)"):
            ops.intent_propagate(self.graph, torch.randn(n, 4), torch.randn(n, 4, 1))
        with pytest.raises(ValueError, match="r must have the width of x"):
            ops.intent_propagate(self.graph, torch.randn(n, 3), torch.randn(n, 4))

    def test_dtypes(self):
        n = self.graph.num_nodes
        with pytest.raises(TypeError, match="r must be float32 or float64"):
            ops.intent_propagate(self.graph, torch.randn(n, 4).half(), torch.randn(n, 4))
        with pytest.raises(TypeError, match="r must have the dtype of x"):
            ops.intent_propagate(self.graph, torch.randn(n, 4, dtype=torch.float64),
                                 torch.randn(n, 4))

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
    def test_devices(self):
        n = self.graph.num_nodes
        with pytest.raises(ValueError, match="r is on cuda"):
            ops.intent_propagate(self.graph, torch.randn(n, 4, device="cuda"), torch.randn(n, 4))

    def test_kernel_checks_name_the_argument(self):
        g, n = self.graph, self.graph.num_nodes
        op = torch.ops.irllrec_fast.intent_propagate
        with pytest.raises(RuntimeError, match=r"r.size\(1\) must be 4"):
            op(g.rowptr, g.col, g.rowptr, g.col, torch.randn(n, 3), torch.randn(n, 4))
        with pytest.raises(RuntimeError, match="t_col must have dtype Int"):
            op(g.rowptr, g.col, g.rowptr, g.col.long(), torch.randn(n, 4), torch.randn(n, 4))
        with pytest.raises(RuntimeError, match=r"t_rowptr.size\(0\) must be 501"):
            op(g.rowptr, g.col, g.rowptr[:-1], g.col, torch.randn(n, 4), torch.randn(n, 4))
        with pytest.raises(RuntimeError, match="norm must have dtype Float"):
            torch.ops.irllrec_fast.intent_propagate_backward(
                torch.randn(n, 4), g.rowptr, g.col, g.rowptr, g.col, torch.randn(n, 4),
                torch.randn(n, 4), torch.randn(n, 4), torch.randn(n),
                torch.randn(n, dtype=torch.float64))
