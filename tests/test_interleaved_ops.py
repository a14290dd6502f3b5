"""scripts/interleaved_ops.py: the round logic on fake paths, and one short real run."""
import itertools
import subprocess
import sys

import pytest

from conftest import SCRIPTS, load_script

SCRIPT = SCRIPTS / "interleaved_ops.py"


@pytest.fixture(scope="module")
def script():
    return load_script("interleaved_ops")


def fake_path(name, seconds, log):
    """A path whose calls take the given seconds in turn, logging its name."""
    times = itertools.cycle(seconds)

    def call():
        log.append(name)
        return next(times)
    return call


def test_rounds_keep_each_paths_minimum_and_alternate_the_order(script):
    log = []
    paths = {"fused": fake_path("fused", [3.0, 1.0], log),
             "reference": fake_path("reference", [8.0, 6.0, 4.0], log)}
    result = script.interleave(paths, rounds=3, calls=2, report=lambda line: None)
    # one warm-up call each, then per round `calls` calls of each path, the first path alternating
    assert log[:2] == ["fused", "reference"]
    rounds = [log[2 + 4 * k: 6 + 4 * k] for k in range(3)]
    assert rounds == [["fused"] * 2 + ["reference"] * 2, ["reference"] * 2 + ["fused"] * 2,
                      ["fused"] * 2 + ["reference"] * 2]
    # fused's calls after the warm-up take 1, 3, 1, 3, ...: every round's minimum is 1;
    # reference's take 6, 4 | 8, 6 | 4, 8 after its warm-up 8
    assert result["best"] == {"fused": [1.0, 1.0, 1.0], "reference": [4.0, 6.0, 4.0]}
    assert result["ratios"] == [4.0, 6.0, 4.0]


@pytest.mark.parametrize("op", ["intent_assign", "intent_propagate"])
def test_a_short_run_prints_the_summary(op):
    run = subprocess.run([sys.executable, str(SCRIPT), "--op", op, "--rounds", "2", "--calls", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["round 1", "round 2"]
    assert lines[-1].startswith(f"{op}, amazon, cpu, ")
    assert "per-round ratio median" in lines[-1] and "over 2 rounds" in lines[-1]


def test_bad_arguments_exit_with_2():
    run = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "0"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2
    assert "--rounds and --calls must be at least 1" in run.stderr
