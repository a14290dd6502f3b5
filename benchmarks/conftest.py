"""Benchmark options and helpers.

`--bench-size=real` (default) runs the three datasets' shapes, which fit 2 CPU cores in minutes;
`--bench-size=large` adds millions of nodes, meant for a GPU.
"""
import os
import sys
from pathlib import Path

import pytest
import torch

# ../shared beside the project root holds the real data (see irllrec_fast.testing.shared_dir)
os.environ.setdefault("IRLLREC_FAST_SHARED", str(Path(__file__).resolve().parents[2] / "shared"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import peak_extra_bytes  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--bench-size", choices=("real", "large"), default="real",
                     help="real: the datasets' shapes (default); large: add GPU-sized cases")
    parser.addoption("--bench-device", default=None,
                     help="device to benchmark on (default: cuda when available, else cpu)")
    parser.addoption("--allow-tf32", action="store_true",
                     help="allow TF32 matmuls (torch.backends.cuda.matmul.allow_tf32) in every "
                          "implementation; correctness checks then use TF32 tolerances")


@pytest.fixture(scope="session", autouse=True)
def matmul_precision(request):
    """True when TF32 matmuls are allowed for this run (--allow-tf32)."""
    allow = request.config.getoption("--allow-tf32")
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    yield allow
    torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture(scope="session")
def bench_size(request):
    return request.config.getoption("--bench-size")


@pytest.fixture(scope="session")
def bench_device(request):
    name = request.config.getoption("--bench-device")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def record(benchmark, fn, device, rounds=None, warmup_rounds=1, memory_fn=None, **info):
    """Times fn with pytest-benchmark and stores its peak extra memory (one more call, of
    memory_fn when given) and device facts in extra_info. rounds defaults to
    benchmark_rounds(device); calls that take tens of seconds on a CPU pass fewer."""
    def timed():
        fn()
        synchronize(device)

    benchmark.pedantic(timed, rounds=rounds or benchmark_rounds(device),
                       warmup_rounds=warmup_rounds, iterations=1)
    benchmark.extra_info.update(info)
    benchmark.extra_info["device"] = (torch.cuda.get_device_name(device)
                                      if device.type == "cuda" else "cpu")
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.extra_info["tf32"] = torch.backends.cuda.matmul.allow_tf32
    benchmark.extra_info["peak_extra_mb"] = round(
        peak_extra_bytes(memory_fn or fn, device) / 2**20, 2)


def assert_paths_agree(paths, run, leaves, tol):
    """Correctness before timing. run(path, tensors) does one forward and backward of a path on
    fresh requires-grad copies of `leaves` and returns its outputs, detached; every other path
    must give the first one's outputs and leaf gradients (atol = rtol = tol)."""
    results = []
    for path in paths:
        tensors = [t.clone().requires_grad_() for t in leaves]
        results.append(tuple(run(path, tensors)) + tuple(t.grad for t in tensors))
    for other in results[1:]:
        for actual, expected in zip(results[0], other):
            torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)


def benchmark_rounds(device):
    return 20 if device.type == "cuda" else 5


@pytest.fixture
def run_benchmark(benchmark, bench_device):
    def run(fn, rounds=None, warmup_rounds=1, memory_fn=None, **info):
        record(benchmark, fn, bench_device, rounds=rounds, warmup_rounds=warmup_rounds,
               memory_fn=memory_fn, **info)
    return run


def pytest_generate_tests(metafunc):
    """Tests that take `graph_name` run on every graph of the chosen --bench-size."""
    if "graph_name" in metafunc.fixturenames:
        from inputs import sizes

        metafunc.parametrize("graph_name", sizes(metafunc.config.getoption("--bench-size")))
