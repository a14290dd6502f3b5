"""One forward+backward of IRLLRec's interaction tower (IRLLREC_SPEC.md sections 1 and 2), fused
against the references: per layer l = 0..2, on the layer's input E(l),
    r      = intent_assign(E(l)[users], W_user) ++ intent_assign(E(l)[items], W_item)
    IAA(l) = intent_propagate(graph, r, E(l))
    E(l+1) = spmm(D^-1/2 A D^-1/2, E(l))
with outputs the layer sum of E(0..3) and R = mean of IAA(0..2); gradients for E(0), W_user and
W_item. On a CPU only Amazon-book runs (the reference tower takes seconds per call; the other
datasets have the same shape class). Groups: interaction_tower-fwdbwd-<graph>-d<d>-K<K>."""
import math

import pytest
import torch

from conftest import assert_paths_agree, synchronize
from inputs import dataset_graph, random_features
from irllrec_fast import ops

IMPLS = {"fused": ops, "reference": ops.reference}
LAYERS = 3
K = 128


def interaction_tower(impl, graph, norm_graph, embeddings, w_user, w_item, num_users,
                      layers=LAYERS):
    """(layer sum [N, d], R [N, d]) of the interaction tower; `impl` is `ops` or `ops.reference`.

    graph: the plain bipartite adjacency (users first); norm_graph: its symmetric normalisation;
    embeddings: E(0) [N, d]; w_user, w_item: the prototypes [d, K].
    """
    e = embeddings
    layer_sum = e
    intents = []
    for _ in range(layers):
        r = torch.cat([impl.intent_assign(e[:num_users], w_user),
                       impl.intent_assign(e[num_users:], w_item)])
        intents.append(impl.intent_propagate(graph, r, e))
        e = impl.spmm(norm_graph, e)
        layer_sum = layer_sum + e
    return layer_sum, torch.stack(intents).mean(0)


def xavier(rows, cols, seed):
    uniform = torch.rand(rows, cols, generator=torch.Generator().manual_seed(seed))
    return (uniform * 2 - 1) * math.sqrt(6.0 / (rows + cols))


@pytest.mark.parametrize("d", [32])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_interaction_tower(benchmark, run_benchmark, bench_device, graph_name, d, impl):
    if graph_name.startswith("large") and bench_device.type != "cuda":
        pytest.skip("large graphs are for GPUs (--bench-size=large on a CUDA device)")
    if graph_name != "amazon" and bench_device.type != "cuda":
        pytest.skip("on a CPU the tower runs on Amazon-book only, to keep the suite in minutes")
    if graph_name.startswith("large") and impl == "reference":
        pytest.skip("the reference's [E, d] temporaries do not fit at 100M edges")
    graph, source = dataset_graph(graph_name, bench_device)
    graph = graph.to(bench_device)
    norm_graph = graph.normalized("sym")
    benchmark.group = f"interaction_tower-fwdbwd-{graph_name}-d{d}-K{K}"
    leaves = [xavier(graph.num_nodes, d, 0), xavier(d, K, 1), xavier(d, K, 2)]
    leaves = [t.to(bench_device) for t in leaves]
    grads = [random_features(graph.num_nodes, d, seed=s, device=bench_device) for s in (3, 4)]

    def run(impl_module, tensors):
        final, intents = interaction_tower(impl_module, graph, norm_graph, *tensors,
                                           num_users=graph.num_users)
        ((final * grads[0]).sum() + (intents * grads[1]).sum()).backward()
        return final.detach(), intents.detach()

    if not graph_name.startswith("large"):  # the reference does not fit there
        assert_paths_agree(IMPLS.values(), run, leaves, tol=1e-3)

    tensors = [t.clone().requires_grad_() for t in leaves]

    def step():
        run(IMPLS[impl], tensors)
        for t in tensors:
            t.grad = None
    run_benchmark(step, impl=impl, graph=graph_name, source=source, nodes=graph.num_nodes,
                  edges=graph.num_edges, d=d, K=K, layers=LAYERS)
    synchronize(bench_device)
