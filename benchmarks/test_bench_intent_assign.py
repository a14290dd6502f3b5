"""intent_assign: the fused kernel against its reference (softmax(e w) w^T in eager PyTorch, which
materialises the [n, K] logits and probabilities), forward and forward+backward (gradients for e
and w), on every node of the datasets' graphs. Groups: intent_assign-<fwd|fwdbwd>-<graph>-d<d>-K<K>."""
import pytest
import torch

from conftest import assert_paths_agree, synchronize
from inputs import dataset_graph, prototypes, random_features
from irllrec_fast import ops

IMPLS = {"fused": ops.intent_assign, "reference": ops.reference.intent_assign}
K = 128


@pytest.mark.parametrize("d", [32])
@pytest.mark.parametrize("pass_", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_intent_assign(benchmark, run_benchmark, bench_device, graph_name, d, pass_, impl):
    if graph_name.startswith("large") and bench_device.type != "cuda":
        pytest.skip("large graphs are for GPUs (--bench-size=large on a CUDA device)")
    graph, source = dataset_graph(graph_name, bench_device)
    benchmark.group = f"intent_assign-{pass_}-{graph_name}-d{d}-K{K}"
    fn = IMPLS[impl]
    e = random_features(graph.num_nodes, d, device=bench_device)
    w = prototypes(d, K, bench_device)
    grad = random_features(graph.num_nodes, d, seed=1, device=bench_device)

    def forward_backward(f, tensors):
        out = f(*tensors)
        out.backward(grad)
        return (out.detach(),)
    assert_paths_agree(IMPLS.values(), forward_backward, [e, w], tol=1e-3)

    if pass_ == "fwd":
        def step():
            with torch.no_grad():
                fn(e, w)
    else:
        eg, wg = e.clone().requires_grad_(), w.clone().requires_grad_()

        def step():
            fn(eg, wg).backward(grad)
            eg.grad = wg.grad = None
    run_benchmark(step, impl=impl, graph=graph_name, source=source, nodes=graph.num_nodes, d=d,
                  K=K)
    synchronize(bench_device)
