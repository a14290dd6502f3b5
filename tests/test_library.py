"""irllrec_fast._library: what a build without the CUDA kernels says when asked to run on a GPU.

CUDA tensors cannot be made on a CPU-only machine, so these tests stand a CPU-only build in by
setting the module's flag, and check the wiring: each op asks `require` about its input's device,
and the command line asks before training."""
import importlib

import pytest
import torch

from irllrec_fast import ExtensionNotLoadedError, _library, cli, ops, testing

# the op modules (irllrec_fast.ops re-exports the functions under the same names)
OP_MODULES = [importlib.import_module(f"irllrec_fast.ops.{name}")
              for name in ("spmm", "intent_assign", "intent_propagate", "infonce")]


def test_cuda_flag_matches_the_registered_kernels():
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key("irllrec_fast::infonce", "CUDA")
    assert _library._CUDA_KERNELS == has_cuda


def test_a_cpu_only_build_refuses_a_cuda_device_with_the_fix(monkeypatch):
    monkeypatch.setattr(_library, "_CUDA_KERNELS", False)
    with pytest.raises(ExtensionNotLoadedError, match="built without its CUDA kernels") as error:
        _library.require(torch.device("cuda", 1))
    assert "cuda:1" in str(error.value) and "impl='torch'" in str(error.value)
    _library.require(torch.device("cpu"))
    _library.require()


def test_with_cuda_kernels_a_cuda_device_passes(monkeypatch):
    monkeypatch.setattr(_library, "_CUDA_KERNELS", True)
    _library.require(torch.device("cuda"))


def test_every_op_asks_about_its_inputs_device(monkeypatch):
    asked = []
    for module in OP_MODULES:
        monkeypatch.setattr(module, "require", asked.append)
    graph = testing.power_law_graph(seed=3)
    x = torch.randn(graph.num_nodes, 4)
    w = torch.randn(4, 5)
    ops.spmm(graph.normalized("sym"), x)
    ops.intent_assign(x, w)
    ops.intent_propagate(graph, x, x)
    ops.infonce(x[:3], x[3:6], x, 0.5)
    assert asked == [torch.device("cpu")] * 4


def test_the_command_line_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(_library, "_CUDA_KERNELS", False)
    monkeypatch.setattr(cli, "_device", lambda name: torch.device("cuda"))
    code = cli.main(["train", "--model", "lightgcn", "--device", "cuda", "--epochs", "1",
                     "--impl", "fused", "--quiet"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("irllrec-fast: error: "), lines
    assert "built without its CUDA kernels" in lines[0]
