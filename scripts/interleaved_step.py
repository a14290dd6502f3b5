"""The fused-vs-torch ratio of one IRLLRec training step, with the two steps interleaved in one
process: fused, torch, fused, torch, ..., each torch step compared with the mean of the fused
steps just before and after it. On a shared machine whose speed drifts by tens of percent within
minutes, separate runs (or pytest-benchmark's one group after the other) can put the two paths in
different spells; neighbours in time share one.

    python scripts/interleaved_step.py [--dataset amazon] [--pairs 6] [--device cpu]

The step is scripts/profile_step.py's, that of benchmarks/test_bench_train_step.py (1536-wide
random text, batch 4096, forward, backward and Adam), after one warm-up step of each path.
Prints every step's time and the median of the per-pair ratios.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_step import make_step  # noqa: E402  (the same step, on any device)


def timed_step(impl, dataset, device):
    step = make_step(impl, dataset, device)

    def run():
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run


def seconds(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    device = torch.device(args.device)
    fused, torch_path = (timed_step(impl, args.dataset, device) for impl in ("fused", "torch"))
    fused()
    torch_path()
    fused_times = [seconds(fused)]
    torch_times, ratios = [], []
    for pair in range(args.pairs):
        torch_times.append(seconds(torch_path))
        fused_times.append(seconds(fused))
        ratios.append(torch_times[-1] / statistics.mean(fused_times[-2:]))
        print(f"pair {pair + 1}: fused {fused_times[-2]:.3f} / {fused_times[-1]:.3f} s, "
              f"torch {torch_times[-1]:.3f} s, ratio {ratios[-1]:.2f}x", flush=True)
    print(f"{args.dataset}, {device}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads: fused median {statistics.median(fused_times):.3f} s "
          f"(min {min(fused_times):.3f}), torch median {statistics.median(torch_times):.3f} s "
          f"(min {min(torch_times):.3f}); median ratio {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}x over {args.pairs} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
