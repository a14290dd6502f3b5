"""spmm: the fused kernel against torch.sparse.mm on COO (what the original IRLLRec/LightGCN code
runs) and on CSR (cuSPARSE on GPUs, MKL or native on CPUs), forward and forward+backward (x only,
as in LightGCN: the adjacency is not trained). Groups: spmm-<fwd|fwdbwd>-<graph>-d<d>."""
import pytest
import torch

from conftest import synchronize
from inputs import dataset_graph, normalized_graph, random_features
from irllrec_fast import ops

IMPLS = ("fused", "torch_coo", "torch_csr")


def make_spmm(impl, graph):
    """The spmm of `impl` over the (normalised, on-device) graph."""
    if impl == "fused":
        return lambda x: ops.spmm(graph, x)
    sparse = graph.to_torch_sparse("coo" if impl == "torch_coo" else "csr")
    return lambda x: torch.sparse.mm(sparse, x)


@pytest.mark.parametrize("d", [32, 64])
@pytest.mark.parametrize("pass_", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("impl", IMPLS)
def test_spmm(benchmark, run_benchmark, bench_device, graph_name, d, pass_, impl):
    if graph_name.startswith("large") and bench_device.type != "cuda":
        pytest.skip("large graphs are for GPUs (--bench-size=large on a CUDA device)")
    graph, source = dataset_graph(graph_name, bench_device)
    benchmark.group = f"spmm-{pass_}-{graph_name}-d{d}"
    norm = normalized_graph(graph_name, bench_device)
    fn = make_spmm(impl, norm)
    x = random_features(graph.num_nodes, d, device=bench_device)
    grad = random_features(graph.num_nodes, d, seed=1, device=bench_device)

    # correctness before timing: every implementation against the fused kernel's reference
    expected = ops.reference.spmm(norm, x) if not graph_name.startswith("large") \
        else make_spmm("torch_csr", norm)(x)
    torch.testing.assert_close(fn(x), expected, atol=1e-4, rtol=1e-4)

    if pass_ == "fwd":
        def step():
            with torch.no_grad():
                fn(x)
    else:
        xg = x.clone().requires_grad_()

        def step():
            fn(xg).backward(grad)
            xg.grad = None
    run_benchmark(step, impl=impl, graph=graph_name, source=source, nodes=graph.num_nodes,
                  edges=graph.num_edges, d=d)
    synchronize(bench_device)
