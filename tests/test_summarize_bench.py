"""scripts/summarize_bench.py: DESIGN.md's hardware floors, and the table from a benchmark JSON."""
import json
import subprocess
import sys

import pytest

from conftest import SCRIPTS, load_script

SCRIPT = SCRIPTS / "summarize_bench.py"
RATES = {"bandwidth": 4e12, "exp_rate": 4e12, "flops": 6.4e13}


@pytest.fixture(scope="module")
def script():
    return load_script("summarize_bench")


def test_spmm_floor_reads_the_structure_once_and_x_and_out(script):
    info = {"nodes": 1000, "edges": 50_000, "d": 16}
    bytes_moved = 4 * 1001 + 50_000 * 8 + 2 * 1000 * 16 * 4
    assert script.floor_seconds("spmm-fwd-g-d16", info, **RATES) == pytest.approx(bytes_moved / 4e12)
    assert script.floor_seconds("spmm-fwdbwd-g-d16", info, **RATES) == pytest.approx(
        2 * bytes_moved / 4e12)


def test_intent_propagate_floor_adds_r_and_the_row_sums(script):
    info = {"nodes": 1000, "edges": 50_000, "d": 16}
    bytes_moved = 4 * 1001 + 50_000 * 8 + 2 * 1000 * 16 * 4 + 1000 * 16 * 4 + 1000 * 4
    assert script.floor_seconds("intent_propagate-fwd-g-d16", info, **RATES) == pytest.approx(
        bytes_moved / 4e12)
    assert script.floor_seconds("intent_propagate-fwdbwd-g-d16", info, **RATES) == pytest.approx(
        3 * bytes_moved / 4e12)


def test_compute_floors_take_the_binding_bound(script):
    # intent_assign at d = 32, K = 128: the products (4 n d K FLOP) bind
    info = {"nodes": 2_000_000, "d": 32, "K": 128}
    assert script.floor_seconds("intent_assign-fwd-g-d32-K128", info, **RATES) == pytest.approx(
        4 * 2_000_000 * 32 * 128 / 6.4e13)
    # infonce at d = 1: the exponentials (B M) bind; without an exp rate the next bound does
    info = {"B": 4096, "M": 1_000_000, "d": 1}
    assert script.floor_seconds("infonce-fwd-c", info, **RATES) == pytest.approx(4096e6 / 4e12)
    no_exp = dict(RATES, exp_rate=None)
    assert script.floor_seconds("infonce-fwd-c", info, **no_exp) == pytest.approx(
        2 * 4096e6 / 6.4e13)


def test_no_floor_without_a_formula_or_a_rate(script):
    info = {"nodes": 10, "edges": 20, "d": 4, "K": 3, "B": 5, "M": 6}
    for group in ("infonce-fwdbwd-c", "intent_assign-fwdbwd-g", "train_step-fwdbwd-amazon"):
        assert script.floor_seconds(group, info, **RATES) is None
    assert script.floor_seconds("spmm-fwd-g", info, None, None, None) is None


def test_table_shows_speed_up_memory_ratio_and_floor(tmp_path):
    def bench(impl, ms, mb):
        return {"group": "spmm-fwd-g-d16", "name": impl, "stats": {"median": ms / 1e3},
                "extra_info": {"impl": impl, "peak_extra_mb": mb, "nodes": 1000,
                               "edges": 50_000, "d": 16}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"benchmarks": [bench("torch_csr", 3.0, 8.0),
                                               bench("fused", 1.0, 2.0)]}))
    table = subprocess.run([sys.executable, str(SCRIPT), str(path), "--bandwidth-gbs", "1"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    fused, torch_csr = table[2].split(" | "), table[3].split(" | ")
    assert fused[1] == "fused" and torch_csr[1] == "torch_csr"
    assert torch_csr[4:6] == ["3.0x", "4.0x"]
    # 532,004 bytes at 1 GB/s: 0.532 ms, of the fused 1 ms
    assert fused[6] == "53% of floor (0.532 ms) |"
