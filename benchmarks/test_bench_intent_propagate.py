"""intent_propagate: the fused kernel against its reference (per-edge cosines, row sums and a
weighted index_add in eager PyTorch, with several [E, d] temporaries), forward and
forward+backward (gradients for r and x), over the datasets' graphs. Groups:
intent_propagate-<fwd|fwdbwd>-<graph>-d<d>."""
import pytest
import torch

from conftest import assert_paths_agree, synchronize
from inputs import dataset_graph, random_features
from irllrec_fast import ops

IMPLS = {"fused": ops.intent_propagate, "reference": ops.reference.intent_propagate}


@pytest.mark.parametrize("d", [32])
@pytest.mark.parametrize("pass_", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_intent_propagate(benchmark, run_benchmark, bench_device, graph_name, d, pass_, impl):
    if graph_name.startswith("large") and bench_device.type != "cuda":
        pytest.skip("large graphs are for GPUs (--bench-size=large on a CUDA device)")
    if graph_name.startswith("large") and impl == "reference":
        pytest.skip("the reference's [E, d] temporaries do not fit at 100M edges")
    graph, source = dataset_graph(graph_name, bench_device)
    graph = graph.to(bench_device)
    benchmark.group = f"intent_propagate-{pass_}-{graph_name}-d{d}"
    fn = IMPLS[impl]
    r = random_features(graph.num_nodes, d, device=bench_device)
    x = random_features(graph.num_nodes, d, seed=1, device=bench_device)
    grad = random_features(graph.num_nodes, d, seed=2, device=bench_device)

    def forward_backward(f, tensors):
        out = f(graph, *tensors)
        out.backward(grad)
        return (out.detach(),)
    if not graph_name.startswith("large"):  # the reference does not fit there
        assert_paths_agree(IMPLS.values(), forward_backward, [r, x], tol=1e-4)

    if pass_ == "fwd":
        def step():
            with torch.no_grad():
                fn(graph, r, x)
    else:
        rg, xg = r.clone().requires_grad_(), x.clone().requires_grad_()

        def step():
            fn(graph, rg, xg).backward(grad)
            rg.grad = xg.grad = None
    run_benchmark(step, impl=impl, graph=graph_name, source=source, nodes=graph.num_nodes,
                  edges=graph.num_edges, d=d)
    synchronize(bench_device)
