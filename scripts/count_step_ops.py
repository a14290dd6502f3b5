"""How many ATen operators one IRLLRec training step dispatches, and from where.

    python scripts/count_step_ops.py [--impl fused] [--dataset amazon] [--device cpu] [--top 20]

On a GPU nearly every dispatched operator is a kernel launch of a few microseconds, whatever its
size, so this count is what launch overhead scales with; it can be taken on a CPU. The step is
scripts/profile_step.py's (that of benchmarks/test_bench_train_step.py: forward, backward, Adam),
counted after one warm-up step. Operators are attributed to the innermost line of irllrec_fast
or torch.optim that called them; those dispatched by autograd's engine during the backward count
as "backward". The text MLPs' second halves, which run in row blocks on a CPU only, are counted
in their whole-tensor form, as a GPU runs them.
"""
from __future__ import annotations

import argparse
import collections
import sys
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_step import make_step  # noqa: E402  (the same step, on any device)

from irllrec_fast.models import _text_tail  # noqa: E402

_OURS = ("irllrec_fast", "torch/optim")


class _CountBySource(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        source = "backward"
        for frame in reversed(traceback.extract_stack(limit=30)):
            if any(part in frame.filename for part in _OURS):
                source = f"{Path(frame.filename).name}:{frame.lineno}"
                break
        self.counts[source] += 1
        return func(*args, **(kwargs or {}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", default="fused", choices=("fused", "torch"))
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    _text_tail.BLOCK_ROWS = None  # the GPU's whole-tensor form (see the docstring)
    step = make_step(args.impl, args.dataset, device)
    step()
    with _CountBySource() as counter:
        step()
    print(f"{sum(counter.counts.values())} operators per {args.impl} step "
          f"({args.dataset} shapes, {device}); by source:")
    for source, count in counter.counts.most_common(args.top):
        print(f"{count:6d}  {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
