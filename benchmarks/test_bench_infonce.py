"""infonce through the drop-in losses, fused against the literal torch formula, forward+backward:

- ssl_con_loss (the translation alignment, N x N over all nodes) at the three datasets' N, d = 32;
- cal_infonce_loss at 4096 x 11,000 (anchors against all users) and 4096 x 4096 (in-batch items);
- with --bench-size=large on a GPU: cal_infonce_loss at 4096 x 1,000,000, d = 64, forward+backward
  and the forward alone (which DESIGN.md's exp-unit floor judges).

Groups: infonce-fwdbwd-<case> and infonce-fwd-<case>. The torch path materialises the logits (gigabytes at these sizes
and seconds per call on a CPU), so it runs fewer rounds there.
"""
import functools

import pytest
import torch

from conftest import synchronize
from inputs import DATASET_SHAPES
from irllrec_fast import losses

# name -> (loss, B, M, d)
CASES = {f"ssl-{name}": ("ssl", users + items, users + items, 32)
         for name, (users, items, _) in DATASET_SHAPES.items()}
CASES.update({"cal-4096x11000": ("cal", 4096, 11000, 32), "cal-4096x4096": ("cal", 4096, 4096, 32)})
LARGE_CASES = {"cal-4096x1000000-d64": ("cal", 4096, 1_000_000, 64)}


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        runs = [(name, "fwdbwd") for name in CASES]
        if metafunc.config.getoption("--bench-size") == "large":
            runs += [(name, passes) for name in LARGE_CASES for passes in ("fwdbwd", "fwd")]
        metafunc.parametrize("case, passes", runs, ids=[f"{c}-{p}" for c, p in runs])


def make_inputs(case, device):
    kind, B, M, d = {**CASES, **LARGE_CASES}[case]
    gen = torch.Generator(device).manual_seed(0)
    if kind == "ssl":  # x: text intents of all nodes, y: final graph embeddings
        return [torch.randn(B, d, device=device, generator=gen).requires_grad_() for _ in range(2)]
    anchors, positives = (torch.randn(B, d, device=device, generator=gen).requires_grad_()
                          for _ in range(2))
    if M == B:  # in-batch: the positives are the candidates
        return [anchors, positives]
    return [anchors, positives, torch.randn(M, d, device=device, generator=gen).requires_grad_()]


def make_loss(case, impl):
    kind = {**CASES, **LARGE_CASES}[case][0]
    if kind == "ssl":
        return lambda x, y: losses.ssl_con_loss(x, y, 1.0, impl=impl)
    return lambda a, b, c=None: losses.cal_infonce_loss(a, b, b if c is None else c, 0.2, impl=impl)


def forward_backward(loss_fn, inputs):
    for x in inputs:
        x.grad = None
    loss = loss_fn(*inputs)
    loss.backward()
    return loss.detach(), [x.grad for x in inputs]


@functools.lru_cache(maxsize=None)
def torch_result(case, device):
    """The torch path's loss and gradients, computed once per case for the correctness checks."""
    return forward_backward(make_loss(case, "torch"), make_inputs(case, device))


@pytest.mark.parametrize("impl", ["torch", "fused"])
def test_infonce(benchmark, run_benchmark, bench_device, case, passes, impl, matmul_precision):
    kind, B, M, d = {**CASES, **LARGE_CASES}[case]
    if case in LARGE_CASES and bench_device.type != "cuda":
        pytest.skip("the large size is for GPUs (--bench-size=large on a CUDA device)")
    benchmark.group = f"infonce-{passes}-{case}"
    inputs = make_inputs(case, bench_device)
    loss_fn = make_loss(case, impl)
    if passes == "fwd":  # the forward alone, no autograd graph (checked by the fwdbwd case)
        inputs = [x.detach() for x in inputs]
        with torch.no_grad():
            run_benchmark(lambda: loss_fn(*inputs), impl=impl, loss=kind, B=B, M=M, d=d)
        synchronize(bench_device)
        return

    # correctness before timing: fused and torch agree on the loss and every gradient (the
    # torch side computed once per case: it is the slow one)
    fused_loss, fused_grads = forward_backward(make_loss(case, "fused"), make_inputs(case, bench_device))
    torch_loss, torch_grads = torch_result(case, bench_device)
    # TF32 products carry ~1e-3 relative errors (10-bit mantissa) on either side
    tf32 = matmul_precision and bench_device.type == "cuda"
    rtol, grad_rtol = (1e-2, 3e-2) if tf32 else (1e-4, 1e-3)
    torch.testing.assert_close(fused_loss, torch_loss, rtol=rtol, atol=1e-5)
    for got, want in zip(fused_grads, torch_grads):
        torch.testing.assert_close(got, want, rtol=grad_rtol, atol=grad_rtol / 10 * float(want.abs().max()))

    # N x N on a CPU: seconds per call for fused, tens for torch (which also needs gigabytes)
    big_cpu = bench_device.type == "cpu" and B * M > 1e8
    rounds, warmup = ((1, 0) if impl == "torch" else (3, 1)) if big_cpu else (None, 1)
    run_benchmark(lambda: forward_backward(loss_fn, inputs), rounds=rounds, warmup_rounds=warmup,
                  impl=impl, loss=kind, B=B, M=M, d=d)
    synchronize(bench_device)
