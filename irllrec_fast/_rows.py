"""Row gathers whose backward is deterministic on every device.

`x[index]` and `x.index_select(0, index)` give the same rows, but their backwards scatter-add the
gradient differently: `x[index]`'s (index_put with accumulate) is multithreaded and rounds
differently from run to run on the CPU, while index_select's (index_add) is serial there, and
faster; on CUDA it is the other way round (index_add uses atomics, index_put sorts). So a seeded
run repeats bit for bit on either device.
"""
from __future__ import annotations

import torch


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[index] for a 1-D integer index, with a run-to-run deterministic backward."""
    if x.device.type == "cpu":
        return x.index_select(0, index)
    return x[index]
