"""spmm against its reference: values, both gradients, edge cases, bad input, registrations."""
import pytest
import torch

from conftest import DEVICES, assert_close, assert_compiles_like_eager
from irllrec_fast import CSRGraph, ops, testing
from irllrec_fast.ops import reference


def run_both(graph, x, value=None):
    """Output and gradients (x, value) of the fused op and of the reference, for one upstream grad."""
    results = []
    g = torch.randn(graph.num_nodes, x.shape[1], dtype=x.dtype, device=x.device,
                    generator=torch.Generator(x.device).manual_seed(1))
    for fn in (ops.spmm, reference.spmm):
        xx = x.detach().clone().requires_grad_()
        vv = None if value is None else value.detach().clone().requires_grad_()
        out = fn(graph, xx, vv)
        out.backward(g)
        results.append((out.detach(), xx.grad, None if vv is None else vv.grad))
    return results


@pytest.mark.parametrize("d", [1, 3, 32, 64, 130])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_power_law_graph_matches_reference(device, d, dtype):
    graph = testing.power_law_graph(seed=d).normalized("sym").to(device, dtype)
    x = torch.randn(graph.num_nodes, d, dtype=dtype, device=device)
    value = torch.rand(graph.num_edges, dtype=dtype, device=device)
    (out, gx, _), (ref, ref_gx, _) = run_both(graph, x)
    assert_close(out, ref)
    assert_close(gx, ref_gx)
    (out, gx, gv), (ref, ref_gx, ref_gv) = run_both(graph, x, value)
    assert_close(out, ref)
    assert_close(gx, ref_gx)
    assert_close(gv, ref_gv)


@pytest.mark.parametrize("d", [24, 48, 96])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_of_several_vector_chunks(device, d, dtype):
    # d a multiple of 8 but of no wider chunk width (8, 16, 32): three chunks of features per row
    graph = testing.power_law_graph(seed=d).normalized("sym").to(device, dtype)
    gen = torch.Generator().manual_seed(d)
    x = torch.randn(graph.num_nodes, d, generator=gen, dtype=dtype).to(device)
    value = torch.rand(graph.num_edges, generator=gen, dtype=dtype).to(device)
    (out, gx, gv), (ref, ref_gx, ref_gv) = run_both(graph, x, value)
    assert_close(out, ref)
    assert_close(gx, ref_gx)
    assert_close(gv, ref_gv)

@pytest.mark.parametrize("d", [3, 32])
def test_directed_graph_with_empty_rows(device, d):
    graph = testing.random_directed_graph(500, 4000, seed=d).to(device)
    assert not graph.values_symmetric
    assert int((graph.rowptr.diff() == 0).sum()) > 0  # the case under test is present
    x = torch.randn(graph.num_nodes, d, device=device)
    (out, gx, _), (ref, ref_gx, _) = run_both(graph, x)
    assert_close(out, ref)
    assert_close(gx, ref_gx)
    empty = graph.rowptr.diff() == 0
    assert torch.all(out[empty] == 0)


def test_edge_dropped_graph_uses_transpose(device):
    base = testing.power_law_graph(seed=5).normalized("sym").to(device)
    dropped = base.drop_edges(0.7, torch.Generator(device).manual_seed(0))
    assert dropped.num_edges < base.num_edges and not dropped.values_symmetric
    x = torch.randn(base.num_nodes, 32, device=device)
    (out, gx, _), (ref, ref_gx, _) = run_both(dropped, x)
    assert_close(out, ref)
    assert_close(gx, ref_gx)


def test_power_law_rows_longer_than_a_segment(device):
    # One user with 5000 items: its row spans many CUDA segments (fixup path) and CPU chunks.
    gen = torch.Generator().manual_seed(7)
    users = torch.cat([torch.zeros(5000, dtype=torch.long), torch.randint(1, 50, (2000,), generator=gen)])
    items = torch.cat([torch.arange(5000), torch.randint(0, 5000, (2000,), generator=gen)])
    graph = CSRGraph.from_interactions(users, items, 50, 5000).normalized("sym").to(device)
    x = torch.randn(graph.num_nodes, 64, generator=gen).to(device)
    value = torch.rand(graph.num_edges, generator=gen).to(device)
    (out, gx, gv), (ref, ref_gx, ref_gv) = run_both(graph, x, value)
    # float32 sums over the 5000-edge row carry ~n * eps relative rounding of the sum of |terms| in
    # both implementations (the CUDA reference adds in atomic order): measured 1.6e-5 absolute on
    # a result of 0.04 on an H100, over the default tolerance of 1e-5
    assert_close(out, ref, scale=20.0)
    assert_close(gx, ref_gx, scale=20.0)
    assert_close(gv, ref_gv, scale=20.0)


def test_real_amazon_graph(amazon_graph, device):
    graph = amazon_graph.normalized("sym").to(device)
    x = torch.randn(graph.num_nodes, 32, device=device)
    value = graph.value.clone()
    (out, gx, gv), (ref, ref_gx, ref_gv) = run_both(graph, x, value)
    assert_close(out, ref)
    assert_close(gx, ref_gx)
    assert_close(gv, ref_gv)


def test_matches_dense_product(device):
    graph = testing.random_directed_graph(40, 300, seed=3, dtype=torch.float64).to(device)
    x = torch.randn(40, 5, dtype=torch.float64, device=device)
    dense = graph.to_torch_sparse("coo").to_dense()
    assert_close(ops.spmm(graph, x), dense @ x)


def test_float32_graph_with_float64_features(device):
    """A graph's values follow the features' dtype: a float32 graph times float64 x is the float64
    product with the graph's values widened, in both directions."""
    graph = testing.random_directed_graph(40, 300, seed=4).to(device)
    assert graph.value.dtype == torch.float32
    x = torch.randn(40, 5, dtype=torch.float64, device=device)
    (out, gx, _), (ref, ref_gx, _) = run_both(graph, x)
    assert out.dtype == gx.dtype == torch.float64
    assert_close(out, ref)
    assert_close(gx, ref_gx)


def test_forward_is_deterministic(device):
    graph = testing.power_law_graph(seed=2).normalized("sym").to(device)
    x = torch.randn(graph.num_nodes, 64, device=device)
    first = ops.spmm(graph, x)
    assert all(torch.equal(first, ops.spmm(graph, x)) for _ in range(3))


def test_non_contiguous_features(device):
    graph = testing.power_law_graph(seed=4).normalized("sym").to(device)
    wide = torch.randn(graph.num_nodes, 66, device=device)
    x = wide[:, 1:65]  # misaligned, strided view
    assert not x.is_contiguous()
    assert_close(ops.spmm(graph, x), reference.spmm(graph, x.contiguous()))


def test_single_node_and_empty_graph(device):
    lonely = CSRGraph(torch.tensor([0, 0]), torch.tensor([], dtype=torch.long), None, 1).to(device)
    x = torch.randn(1, 4, device=device)
    assert torch.equal(ops.spmm(lonely, x), torch.zeros(1, 4, device=device))
    loop = CSRGraph(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([2.0]), 1).to(device)
    assert_close(ops.spmm(loop, x), 2 * x)
    nothing = CSRGraph(torch.tensor([0]), torch.tensor([], dtype=torch.long), None, 0).to(device)
    assert ops.spmm(nothing, torch.randn(0, 4, device=device)).shape == (0, 4)


def test_gradcheck_float64():
    graph = testing.random_directed_graph(30, 120, seed=9, dtype=torch.float64)
    x = torch.randn(30, 3, dtype=torch.float64, requires_grad=True)
    value = graph.value.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, v: ops.spmm(graph, x, v), (x, value))


def test_mixed_second_derivative_through_the_edge_values():
    """x's gradient A^T g depends on the edge values: a penalty on it differentiates back to them
    (through spmm's first-order value gradient), as through the reference's autograd."""
    graph = testing.random_directed_graph(30, 120, seed=9, dtype=torch.float64)
    x = torch.randn(30, 3, dtype=torch.float64)
    g = torch.randn(30, 3, dtype=torch.float64)
    results = []
    for fn in (ops.spmm, reference.spmm):
        xx = x.clone().requires_grad_()
        vv = graph.value.clone().requires_grad_()
        (grad_x,) = torch.autograd.grad((fn(graph, xx, vv) * g).sum(), xx, create_graph=True)
        results.append(torch.autograd.grad(grad_x.square().sum(), vv)[0])
    assert results[0].abs().max() > 0
    assert_close(results[0], results[1])


def test_opcheck(device):
    graph = testing.random_directed_graph(60, 300, seed=1).to(device)
    x = torch.randn(60, 8, device=device, requires_grad=True)
    value = graph.value.clone().requires_grad_()
    t_rowptr, t_col, t_perm = graph.transpose_args(True)
    torch.library.opcheck(torch.ops.irllrec_fast.spmm,
                          (graph.rowptr, graph.col, value, t_rowptr, t_col, t_perm, x))
    torch.library.opcheck(torch.ops.irllrec_fast.spmm_backward_value,
                          (graph.rowptr, graph.col, torch.randn(60, 8, device=device), x.detach()))


def test_torch_compile_fullgraph(device):
    graph = testing.power_law_graph(seed=6).normalized("sym").to(device)
    x = torch.randn(graph.num_nodes, 16, device=device, requires_grad=True)

    def two_layers(x):
        return ops.spmm(graph, ops.spmm(graph, x)).square().sum()

    assert_compiles_like_eager(two_layers, (x,))


class TestBadInput:
    def setup_method(self):
        self.graph = testing.power_law_graph(seed=1)

    def test_wrong_rows(self):
        with pytest.raises(ValueError, match=r"x must have shape \(500, d\)"):
            ops.spmm(self.graph, torch.randn(499, 4))

    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match="x must be float32 or float64"):
            ops.spmm(self.graph, torch.randn(500, 4).half())

    def test_not_a_graph_or_not_a_tensor(self):
        with pytest.raises(TypeError, match="graph must be an irllrec_fast.CSRGraph"):
            ops.spmm(torch.zeros(500, 500), torch.randn(500, 4))
        with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
            ops.spmm(self.graph, torch.randn(500, 4).numpy())

    def test_value_shape_and_dtype(self):
        x = torch.randn(500, 4)
        with pytest.raises(ValueError, match="value must have shape"):
            ops.spmm(self.graph, x, torch.rand(3))
        with pytest.raises(TypeError, match="value must have the dtype of x"):
            ops.spmm(self.graph, x, torch.rand(self.graph.num_edges, dtype=torch.float64))

    def test_value_must_be_a_1d_tensor(self):
        x = torch.randn(500, 4)
        with pytest.raises(TypeError, match="value must be a torch.Tensor, got list"):
            ops.spmm(self.graph, x, self.graph.value.tolist())
        with pytest.raises(ValueError, match="value must have shape"):
            ops.spmm(self.graph, x, self.graph.value.unsqueeze(1))

    @pytest.mark.parametrize("fn", [ops.spmm, reference.spmm], ids=["fused", "reference"])
    def test_the_reference_checks_like_the_op(self, fn):
        x = torch.randn(500, 4)
        with pytest.raises(ValueError, match=r"x must have shape \(500, d\)"):
            fn(self.graph, torch.randn(499, 4))
        with pytest.raises(ValueError, match="value must have shape"):
            fn(self.graph, x, torch.rand(3))
        with pytest.raises(TypeError, match="value must have the dtype of x"):
            fn(self.graph, x, torch.rand(self.graph.num_edges, dtype=torch.float64))

    def test_other_device(self):
        # the meta device stands in for a second device on a CPU-only machine
        with pytest.raises(ValueError, match="x is on meta but the graph is on cpu"):
            ops.spmm(self.graph, torch.randn(500, 4, device="meta"))
        with pytest.raises(ValueError, match="value is on meta but the graph is on cpu"):
            ops.spmm(self.graph, torch.randn(500, 4),
                     torch.rand(self.graph.num_edges, device="meta"))

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
    def test_wrong_device(self):
        with pytest.raises(ValueError, match="x is on cuda"):
            ops.spmm(self.graph, torch.randn(500, 4, device="cuda"))

    def test_kernel_checks_name_the_argument(self):
        g = self.graph
        with pytest.raises(RuntimeError, match="x must be 2-D"):
            torch.ops.irllrec_fast.spmm(g.rowptr, g.col, g.value, g.rowptr, g.col,
                                        g.col[:0], torch.randn(500))
        with pytest.raises(RuntimeError, match="rowptr must have dtype Int"):
            torch.ops.irllrec_fast.spmm(g.rowptr.long(), g.col, g.value, g.rowptr, g.col,
                                        g.col[:0], torch.randn(500, 2))
        with pytest.raises(RuntimeError, match="value must have dtype Double"):
            torch.ops.irllrec_fast.spmm(g.rowptr, g.col, g.value, g.rowptr, g.col,
                                        g.col[:0], torch.randn(500, 2, dtype=torch.float64))


def test_gradgradcheck_float64_on_a_directed_graph():
    """The backward is differentiable in turn (a double backward runs the transpose's transpose,
    the graph itself, through the inverse permutation): second derivatives agree with finite
    differences on a graph whose transpose differs from it."""
    graph = testing.random_directed_graph(30, 120, seed=9, dtype=torch.float64)
    x = torch.randn(30, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: ops.spmm(graph, x), (x,))
