"""A build without the CUDA kernels meeting a GPU: the ops and an explicit impl="fused" refuse with
the cause and the fix; the losses' and the command line's defaults pick the references.

CUDA tensors cannot be made on a CPU-only machine, so these tests stand a CPU-only build in by
setting _library's flag, and check the wiring: each op and each loss asks about its input's
device, and the command line asks before training."""
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


def test_the_load_error_names_a_source_folder_without_a_compiled_module(monkeypatch, tmp_path):
    package = tmp_path / "irllrec_fast"
    package.mkdir()
    (tmp_path / "setup.py").write_text("")
    monkeypatch.setattr(_library, "__file__", str(package / "_library.py"))
    monkeypatch.setattr(_library, "_load_error", ImportError("No module named 'irllrec_fast._C'"))
    assert f"imported the source folder {package}" in _library.load_error_message()
    (package / "_C.cpython-311-x86_64-linux-gnu.so").write_text("")
    assert "imported the source folder" not in _library.load_error_message()


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


def test_the_losses_pick_the_references_where_the_build_has_no_kernels(monkeypatch):
    from irllrec_fast import losses

    monkeypatch.setattr(_library, "_CUDA_KERNELS", False)
    assert losses.resolve_impl(None, torch.device("cuda")) == "torch"
    assert losses.resolve_impl(None, torch.device("cpu")) == "fused"
    assert losses.resolve_impl(None) == "fused"
    with pytest.raises(ExtensionNotLoadedError, match="built without its CUDA kernels"):
        losses.resolve_impl("fused", torch.device("cuda"))
    assert losses.resolve_impl("torch", torch.device("cuda")) == "torch"


def test_every_loss_resolves_for_its_inputs_device(monkeypatch):
    from irllrec_fast import losses

    asked = []
    resolve = losses.resolve_impl
    monkeypatch.setattr(losses, "resolve_impl",
                        lambda impl, device=None: asked.append(device) or resolve(impl, device))
    x = torch.randn(6, 4)
    losses.cal_infonce_loss(x, x, x)
    losses.ssl_con_loss(x, x)
    losses.info_nce(x, x)
    losses.reg_params(torch.nn.Linear(4, 2))
    assert asked == [torch.device("cpu")] * 4


def test_the_command_lines_default_operators_follow_the_build(monkeypatch):
    monkeypatch.setattr(_library, "_CUDA_KERNELS", False)
    assert cli._operators(None, torch.device("cuda")) == "torch"
    assert cli._operators(None, torch.device("cpu")) is None  # the model's default: fused
    with pytest.raises(ExtensionNotLoadedError, match="built without its CUDA kernels"):
        cli._operators("fused", torch.device("cuda"))  # refused before training
    monkeypatch.setattr(_library, "_CUDA_KERNELS", True)
    assert cli._operators(None, torch.device("cuda")) is None
