"""Fused operator against its reference, forward+backward, the two interleaved in one process.

    python scripts/interleaved_ops.py [--op intent_assign] [--dataset amazon] [--rounds 20]
                                      [--calls 5] [--device cpu]

Ops (the benchmarks' inputs, at a dataset's shapes with d = 32):
- intent_assign: e [N, 32] against K = 128 prototypes (benchmarks/test_bench_intent_assign.py);
- intent_propagate: r, x [N, 32] over the dataset's graph (test_bench_intent_propagate.py);
- ssl_con_loss: the N x N translation alignment (test_bench_infonce.py; the reference takes
  seconds per call on a CPU, so give it few rounds and calls).

Each round times `calls` forward+backward calls of each path and keeps the fastest of each;
the path that goes first alternates from round to round. The ratio of a round compares two
minima taken seconds apart, so a machine whose speed drifts within minutes (a shared VM) moves
both sides of it alike; separate benchmark runs can land the two paths in different spells.
Prints each round and then the medians and minima of both paths and the median and range of the
per-round ratios (reference time / fused time).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import conftest  # noqa: E402,F401  (sets IRLLREC_FAST_SHARED like the benchmarks)
from inputs import DATASET_SHAPES, dataset_graph, prototypes, random_features  # noqa: E402

from irllrec_fast import losses, ops  # noqa: E402

D, K = 32, 128


def _timed(fn, grad, leaves):
    """A callable that runs fn's forward and its backward from `grad` (None for a scalar) and
    returns its seconds (synchronised on a GPU). The leaves' gradients are dropped first
    (untimed), so that no call adds into the last one's."""
    def call() -> float:
        for leaf in leaves:
            leaf.grad = None
        start = time.perf_counter()
        out = fn()
        out.backward(grad)
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        return time.perf_counter() - start
    return call


def intent_assign_pair(dataset: str, device: torch.device):
    graph, _ = dataset_graph(dataset, device)
    e = random_features(graph.num_nodes, D, device=device).requires_grad_()
    w = prototypes(D, K, device).requires_grad_()
    grad = random_features(graph.num_nodes, D, seed=1, device=device)
    return {impl: _timed(lambda f=f: f(e, w), grad, (e, w))
            for impl, f in (("fused", ops.intent_assign),
                            ("reference", ops.reference.intent_assign))}


def intent_propagate_pair(dataset: str, device: torch.device):
    graph, _ = dataset_graph(dataset, device)
    r = random_features(graph.num_nodes, D, device=device).requires_grad_()
    x = random_features(graph.num_nodes, D, seed=1, device=device).requires_grad_()
    grad = random_features(graph.num_nodes, D, seed=2, device=device)
    return {impl: _timed(lambda f=f: f(graph, r, x), grad, (r, x))
            for impl, f in (("fused", ops.intent_propagate),
                            ("reference", ops.reference.intent_propagate))}


def ssl_con_loss_pair(dataset: str, device: torch.device):
    users, items, _ = DATASET_SHAPES[dataset]
    x = random_features(users + items, D, device=device).requires_grad_()
    y = random_features(users + items, D, seed=1, device=device).requires_grad_()
    return {impl: _timed(lambda impl=impl: losses.ssl_con_loss(x, y, 1.0, impl=impl), None,
                         (x, y))
            for impl in ("fused", "torch")}


OPS = {"intent_assign": intent_assign_pair, "intent_propagate": intent_propagate_pair,
       "ssl_con_loss": ssl_con_loss_pair}


def interleave(paths: dict, rounds: int, calls: int, report=print) -> dict:
    """Runs the rounds (after one warm-up call of each path); returns the per-path minima of
    every round and the per-round ratios (second path's time / first path's)."""
    names = list(paths)
    for call in paths.values():
        call()
    best = {name: [] for name in names}
    ratios = []
    for round_ in range(rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            best[name].append(min(paths[name]() for _ in range(calls)))
        ratios.append(best[names[1]][-1] / best[names[0]][-1])
        report(f"round {round_ + 1}: " + ", ".join(f"{n} {best[n][-1] * 1e3:.2f} ms" for n in names)
               + f", ratio {ratios[-1]:.2f}x")
    return {"best": best, "ratios": ratios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", choices=list(OPS), default="intent_assign")
    parser.add_argument("--dataset", choices=list(DATASET_SHAPES), default="amazon")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=5, help="calls per path and round")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    device = torch.device(args.device)
    paths = OPS[args.op](args.dataset, device)
    result = interleave(paths, args.rounds, args.calls)
    summary = ", ".join(f"{name} median {statistics.median(t) * 1e3:.2f} ms (min {min(t) * 1e3:.2f})"
                        for name, t in result["best"].items())
    ratios = result["ratios"]
    print(f"{args.op}, {args.dataset}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, forward+backward, best of {args.calls} calls per "
          f"round: {summary}; per-round ratio median {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}x over {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
