"""Shared test settings: the devices every op test runs on, one dtype -> tolerance table, and the
comparisons the op tests share."""
import contextlib
import importlib.util
import os
from pathlib import Path

import pytest
import torch

# ../shared beside the project root holds the real data (see irllrec_fast.testing.shared_dir)
os.environ.setdefault("IRLLREC_FAST_SHARED", str(Path(__file__).resolve().parents[2] / "shared"))

from irllrec_fast import testing

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# dtype -> (atol, rtol) for comparing a fused op with its reference.
TOLERANCES = {
    torch.float32: (1e-5, 1e-4),
    torch.float64: (1e-10, 1e-9),
}


def assert_close(actual, expected, dtype=None, scale=1.0):
    """torch.testing.assert_close with the table's tolerances (atol scaled by `scale`)."""
    atol, rtol = TOLERANCES[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, atol=atol * scale, rtol=rtol)


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name):
    """scripts/<name>.py imported as a module (the scripts are files, not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def tf32_allowed(switch="allow_tf32"):
    """TF32 matmuls allowed through one of torch's two switches, restored afterwards."""
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, switch):  # fp32_precision is new in torch 2.9
        pytest.skip(f"this torch has no torch.backends.cuda.matmul.{switch}")
    saved = getattr(matmul, switch)
    setattr(matmul, switch, True if switch == "allow_tf32" else "tf32")
    try:
        yield
    finally:
        setattr(matmul, switch, saved)


def assert_compiles_like_eager(fn, inputs):
    """torch.compile(fn, fullgraph=True) gives eager's scalar value and its gradients with respect
    to `inputs`; a graph break fails. The aot_eager backend traces through the ops' fake and
    autograd registrations without needing a C++ compiler."""
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    expected = fn(*inputs)
    expected_grads = torch.autograd.grad(expected, inputs)
    got = compiled(*inputs)
    got_grads = torch.autograd.grad(got, inputs)
    assert_close(got, expected)
    for actual, wanted in zip(got_grads, expected_grads):
        assert_close(actual, wanted)


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(scope="session")
def amazon_graph():
    graph = testing.real_graph("amazon")
    if graph is None:
        pytest.skip(f"real data absent: {testing.real_interactions_path('amazon')} "
                    "(set IRLLREC_FAST_SHARED)")
    return graph
