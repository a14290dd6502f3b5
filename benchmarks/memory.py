"""Peak extra memory of one call, on CUDA (the caching allocator's peak) or on the CPU (the
process's peak resident set, reset through /proc/self/clear_refs before the call)."""
from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import torch

def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_extra_bytes(fn, device: torch.device) -> int:
    """Bytes above the memory in use before the call that fn needs at its peak (its result
    included while alive). -1 when this platform cannot tell."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    try:
        if _LIBC is not None:
            _LIBC.malloc_trim(0)  # free heap pages leave the resident set, so reusing them counts
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _status_kb("VmRSS")
        fn()
        return max(0, _status_kb("VmHWM") - before) * 1024
    except OSError:
        return -1
