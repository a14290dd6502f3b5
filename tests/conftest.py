"""Shared test settings: the devices every op test runs on and one dtype -> tolerance table."""
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
