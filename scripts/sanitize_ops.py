"""Runs every CUDA operator (forward and backward) once on small inputs, for compute-sanitizer:

    compute-sanitizer --tool memcheck --error-exitcode 1 python scripts/sanitize_ops.py
    compute-sanitizer --tool racecheck --error-exitcode 1 python scripts/sanitize_ops.py

Sizes are small (the sanitizer slows kernels down a lot) but cover the awkward cases: empty rows,
a row longer than a CUDA segment, feature widths that are not a multiple of 4, tails of tiles.
"""
import sys

import torch

from irllrec_fast import CSRGraph, ops, testing


def graphs(device):
    # a 3000-edge row (many segments) next to short and empty rows, and a directed graph
    users = torch.cat([torch.zeros(3000, dtype=torch.long), torch.randint(1, 40, (500,))])
    items = torch.cat([torch.arange(3000), torch.randint(0, 3000, (500,))])
    long_row = CSRGraph.from_interactions(users, items, 60, 3000).normalized("sym").to(device)
    directed = testing.random_directed_graph(300, 2000, seed=1).to(device)
    return long_row, directed


def main() -> int:
    if not torch.cuda.is_available():
        print("sanitize_ops: no CUDA device")
        return 1
    device = torch.device("cuda")
    torch.manual_seed(0)
    ran = []
    for graph in graphs(device):
        for d in (3, 32, 64):
            x = torch.randn(graph.num_nodes, d, device=device, requires_grad=True)
            value = graph.value.clone().requires_grad_()
            ops.spmm(graph, x, value).square().sum().backward()
            ran.append(f"spmm d={d}")
            if hasattr(ops, "intent_propagate"):
                r = torch.randn(graph.num_nodes, d, device=device, requires_grad=True)
                ops.intent_propagate(graph, r, x).square().sum().backward()
                ran.append(f"intent_propagate d={d}")
    if hasattr(ops, "intent_assign"):
        # K <= 128 and d <= 64 run the tiled kernels (20,000 rows: several 32-row steps per block
        # of the backward, whose shared slices are rewritten between steps); K = 300 the row ones
        for n, d, k in ((1, 3, 1), (257, 32, 7), (1000, 32, 128), (20000, 64, 128), (300, 64, 300)):
            e = torch.randn(n, d, device=device, requires_grad=True)
            w = torch.randn(d, k, device=device, requires_grad=True)
            ops.intent_assign(e, w).square().sum().backward()
            ran.append(f"intent_assign n={n} d={d} K={k}")
    if hasattr(ops, "infonce"):
        # float32 with d <= 128 runs the tensor-core kernels; d = 200 and float64 the SIMT ones
        for b, m, d, dtype in ((1, 1, 1, torch.float32), (70, 130, 3, torch.float32),
                               (300, 1000, 32, torch.float32), (129, 257, 64, torch.float32),
                               (64, 200, 128, torch.float32), (50, 90, 200, torch.float32),
                               (70, 130, 32, torch.float64)):
            a = torch.randn(b, d, device=device, dtype=dtype, requires_grad=True)
            bb = torch.randn(b, d, device=device, dtype=dtype, requires_grad=True)
            c = torch.randn(m, d, device=device, dtype=dtype, requires_grad=True)
            ops.infonce(a, bb, c, 0.2).sum().backward()
            ran.append(f"infonce B={b} M={m} d={d} {str(dtype)[6:]}")
    torch.cuda.synchronize()
    print(f"sanitize_ops: ran {len(ran)} cases: " + ", ".join(ran))
    return 0


if __name__ == "__main__":
    sys.exit(main())
