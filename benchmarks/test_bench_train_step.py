"""One IRLLRec training step (forward, backward, Adam step) at the datasets' shapes with 1536-wide
profile and intent-text embeddings (the authors' embedding width), impl="fused" against
impl="torch" (the released algorithm in eager PyTorch). Group: train_step-fwdbwd-<dataset>.

Before timing, the fused step's loss is checked against the torch step's from the same weights
and noise. On a CPU the torch step takes tens of seconds, so it is timed once (no warm-up).
"""
import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import synchronize
from inputs import dataset_graph
from irllrec_fast.models import IRLLRec, IRLLRecConfig

TEXT_WIDTH = 1536
BATCH = 4096
IMPLS = ("fused", "torch")


def datasets(bench_size):
    return ("amazon", "yelp", "movie") if bench_size == "large" else ("amazon",)


def pytest_generate_tests(metafunc):
    if "dataset" in metafunc.fixturenames:
        metafunc.parametrize("dataset", datasets(metafunc.config.getoption("--bench-size")))


@functools.lru_cache(maxsize=None)
def step_inputs(dataset):
    """(graph, text, batch) with text and batch drawn once per dataset."""
    graph, source = dataset_graph(dataset)
    rng = np.random.default_rng(0)
    U, I = graph.num_users, graph.num_items
    text = SimpleNamespace(
        profile_user=rng.standard_normal((U, TEXT_WIDTH), dtype=np.float32),
        profile_item=rng.standard_normal((I, TEXT_WIDTH), dtype=np.float32),
        intent_user=rng.standard_normal((U, TEXT_WIDTH), dtype=np.float32),
        intent_item=rng.standard_normal((I, TEXT_WIDTH), dtype=np.float32))
    rows = graph.row_index()
    users_edges = rows < U  # user -> item half of the symmetric graph
    pick = torch.from_numpy(rng.integers(0, int(users_edges.sum()), BATCH))
    users = rows[users_edges][pick]
    pos = graph.col.long()[users_edges][pick] - U
    neg = torch.from_numpy(rng.integers(0, I, BATCH))
    return graph, source, text, (users, pos, neg)


def make_model(impl, dataset, device, **config):
    """The model of the step; config: IRLLRecConfig fields to change from the defaults."""
    graph, _, text, _ = step_inputs(dataset)
    torch.manual_seed(0)
    return IRLLRec(graph, text, IRLLRecConfig(**config), impl=impl).to(device)


@pytest.mark.parametrize("impl", IMPLS)
def test_train_step(benchmark, run_benchmark, bench_device, dataset, impl):
    benchmark.group = f"train_step-fwdbwd-{dataset}"
    graph, source, _, batch = step_inputs(dataset)
    batch = tuple(t.to(bench_device) for t in batch)
    model = make_model(impl, dataset, bench_device)
    cpu = bench_device.type == "cpu"

    if impl == "fused":  # correctness first: the same step through the references
        reference = make_model("torch", dataset, bench_device)
        torch.manual_seed(1)
        expected, _ = reference.calculate_loss(batch)
        torch.manual_seed(1)
        actual, _ = model.calculate_loss(batch)
        torch.testing.assert_close(actual.detach(), expected.detach(), rtol=1e-4, atol=0)
        del reference
        model = make_model(impl, dataset, bench_device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)

    def first_step_of_an_epoch():
        # train() drops what a model keeps from step to step (the fused teacher's
        # pre-activation), so the memory measured includes building it again
        model.train()
        step()

    slow = cpu and impl == "torch"
    run_benchmark(step, rounds=1 if slow else None, warmup_rounds=0 if slow else 1,
                  memory_fn=first_step_of_an_epoch, impl=impl,
                  dataset=dataset, source=source, nodes=graph.num_nodes, edges=graph.num_edges,
                  batch=BATCH, text_width=TEXT_WIDTH, d=32, intents=128, layers=3)
    synchronize(bench_device)
