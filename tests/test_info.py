"""`python -m irllrec_fast.info`: what was built, and what is missing with the fix."""
import subprocess
import sys

import torch

from irllrec_fast import _library, info

OPERATORS = ["infonce", "intent_assign", "intent_propagate", "spmm"]


def test_every_operator_is_listed_with_its_cpu_kernel():
    report = info.report()
    assert f"torch        {torch.__version__}" in report
    for op in OPERATORS:
        line = next(line for line in report.splitlines() if line.strip().startswith(op + " "))
        assert "CPU" in line
    assert info.main() == 0


def test_the_backends_line_and_cuda_kernels_are_listed(monkeypatch):
    assert any(line.startswith("backends     CPU") for line in info.report().splitlines())
    real = torch._C._dispatch_has_kernel_for_dispatch_key
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key",
                        lambda op, key: True if key == "CUDA" else real(op, key))
    assert info.backends_of("spmm") == ["CPU", "CUDA"]
    report = info.report().splitlines()
    assert "backends     CPU, CUDA" in report
    assert next(line for line in report if line.strip().startswith("spmm ")).split()[1:] == [
        "CPU,", "CUDA"]


def test_a_cuda_torch_with_a_cpu_only_build_is_told_why(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(_library, "_CUDA_KERNELS", False)
    assert "no CUDA kernels, though torch has CUDA 12.4" in info.report()
    monkeypatch.setattr(_library, "_CUDA_KERNELS", True)
    assert "no CUDA kernels" not in info.report()


def test_kernels_that_failed_to_load_give_the_fix_and_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(_library, "_C", None)
    monkeypatch.setattr(_library, "_load_error", ImportError("undefined symbol: _ZN3c10"))
    assert info.main() == 1
    out = capsys.readouterr().out
    assert "kernels      NOT LOADED" in out and "undefined symbol" in out
    assert "pip install --no-build-isolation ." in out


def test_runs_as_a_module(tmp_path):
    # from another folder: `-m` puts the working folder first on sys.path, and the source folder
    # of a fresh clone has no compiled _C (pip installed it elsewhere)
    done = subprocess.run([sys.executable, "-m", "irllrec_fast.info"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "operators" in done.stdout
