"""`irllrec-fast train` / `python -m irllrec_fast train`: runs, tables, one-line errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from irllrec_fast import cli, config as config_mod
from irllrec_fast.trainer import CHECKPOINT

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, pattern):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("irllrec-fast: error: "), err
    assert pattern in lines[0], lines[0]


def test_train_synthetic_lightgcn_prints_a_table(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--model", "lightgcn", "--epochs", "2", "--out",
                         str(tmp_path), "--quiet")
    assert code == 0, err
    assert "lightgcn on synthetic" in out
    assert "recall" in out and "ndcg" in out and "@20" in out
    assert (tmp_path / CHECKPOINT).is_file() and (tmp_path / "metrics.json").is_file()
    # --resume picks the finished run up and reports the same table
    code, again, err = run(capsys, "train", "--model", "lightgcn", "--epochs", "2", "--out",
                           str(tmp_path), "--resume", "--quiet")
    assert code == 0, err
    assert again.splitlines()[1:4] == out.splitlines()[1:4]


def test_irllrec_on_a_folder_without_text_is_one_line(capsys, tmp_path):
    for stem, rows, cols in (("trn_mat", [0, 1, 2], [0, 1, 2]), ("val_mat", [0], [1]),
                             ("tst_mat", [1], [2])):
        sp.save_npz(tmp_path / f"{stem}.npz",
                    sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(3, 4)))
    code, _, err = run(capsys, "train", "--data", str(tmp_path), "--model", "irllrec")
    one_line_error(code, err, "IRLLRec needs text embeddings")


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/nonexistent/folder"], "no such folder"),
    (["train", "--device", "gpu0"], "not a torch device"),
    (["train", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--model", "svd"], "invalid choice"),
    (["train", "--bogus"], "unrecognized arguments"),
    (["train", "--format", "movielens"], "--format applies to a dataset folder"),
    (["train", "--text", "/tmp"], "--text applies to a dataset folder"),
    (["train", "--data", ""], "--data is empty"),
    (["train", "--config", "/nonexistent.yml"], "cannot read config file"),
    ([], "missing command"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, args, message):
    code, _, err = run(capsys, *args)
    one_line_error(code, err, message)


def test_bad_config_and_resume_without_checkpoint(capsys, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("model:\n  kd_weigth: 0.1\n")
    code, _, err = run(capsys, "train", "--config", str(bad))
    one_line_error(code, err, "unknown key(s) ['kd_weigth']")
    bad.write_text("model: [1, 2\n")
    code, _, err = run(capsys, "train", "--config", str(bad))
    one_line_error(code, err, "not valid YAML")
    code, _, err = run(capsys, "train", "--resume", "--out", str(tmp_path / "empty"))
    one_line_error(code, err, "no checkpoint")
    empty = tmp_path / "data"
    empty.mkdir()
    code, _, err = run(capsys, "train", "--data", str(empty))
    one_line_error(code, err, "cannot tell the format")


def test_config_layout_global_keys_and_dataset_overrides(tmp_path):
    path = tmp_path / "lightgcn_int.yml"
    path.write_text(
        "optimizer: {name: adam, lr: 5.0e-3, weight_decay: 0}\n"
        "train: {epoch: 10, batch_size: 256, test_step: 3, save_model: true, reproducible: true}\n"
        "test: {metrics: [recall, ndcg], k: [10, 20], batch_size: 64}\n"
        "data: {type: general_cf, name: amazon}\n"
        "model:\n  name: lightgcn_int\n  kd_weight: 1e-3\n  toy:\n    kd_weight: 0.5\n"
        "  amazon:\n    kd_weight: 0.25\n")
    user = config_mod.read_yaml(path)
    assert config_mod.model_name_of(user) == "irllrec"
    run = config_mod.resolve("irllrec", "toy", user)
    assert run.model_config.kd_weight == 0.5 and run.train.lr == 5e-3
    assert run.train.epochs == 10 and run.train.ks == (10, 20) and run.train.eval_batch_size == 64
    assert config_mod.resolve("irllrec", "amazon", user).model_config.kd_weight == 0.25
    other = config_mod.resolve("irllrec", "other", user)
    assert other.model_config.kd_weight == 1e-3  # YAML's "1e-3" (a string) is coerced


def test_a_user_files_global_values_win_over_the_shipped_overrides():
    """The shipped file has per-dataset rows; a user's file that sets a value for every dataset
    sets it for those datasets too, and its own per-dataset rows win over its global values."""
    user = {"train": {"epoch": 2, "batch_size": 64},
            "model": {"kd_int_weight": 0.5, "reg_weight": 1e-3, "yelp": {"reg_weight": 1e-2}}}
    amazon = config_mod.resolve("irllrec", "amazon", user)
    assert (amazon.model_config.kd_int_weight, amazon.model_config.reg_weight) == (0.5, 1e-3)
    assert amazon.model_config.kd_weight == 1e-2  # not set by the user: the shipped amazon row
    synthetic = config_mod.resolve("irllrec", "synthetic", user)
    assert (synthetic.train.epochs, synthetic.train.batch_size) == (2, 64)
    assert config_mod.resolve("irllrec", "yelp", user).model_config.reg_weight == 1e-2
    with pytest.raises(config_mod.ConfigError, match="batch_size"):
        config_mod.resolve("irllrec", "synthetic", {"train": {"batch_size": 0}})


@pytest.mark.parametrize("text, message", [
    ("model:\n  embedding_size: abc\n", ": model.embedding_size = 'abc': expected an integer"),
    ("model:\n  kd_weight: lots\n", ": model.kd_weight = 'lots': expected a number"),
    ("train:\n  epoch: 1.5\n", ": train.epoch = 1.5: expected an integer"),
    ("train:\n  epoch: 0\n", ": train.epoch must be >= 1, got 0"),
    ("test:\n  batch_size: 0\n", ": test.batch_size must be >= 1, got 0"),
])
def test_config_errors_use_the_files_names_once(capsys, tmp_path, text, message):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    code, _, err = run(capsys, "train", "--config", str(path))
    one_line_error(code, err, f"error: {path}{message}")


def test_a_negative_seed_is_named(capsys):
    code, _, err = run(capsys, "train", "--seed", "-1", "--epochs", "1")
    one_line_error(code, err, "--seed must be >= 0, got -1")


def test_the_run_says_whether_its_dataset_had_overrides():
    """Overrides apply by exact name, so a folder named Amazon-book gets the global values: the
    run says so, and names the datasets that have overrides."""
    run = config_mod.resolve("irllrec", "amazon")
    assert run.overridden and run.overrides_note("amazon") == (
        "config: global values with the overrides for 'amazon'")
    run = config_mod.resolve("irllrec", "Amazon-book")
    assert not run.overridden and run.override_datasets == ("amazon", "movie", "synthetic", "yelp")
    assert "no overrides for 'Amazon-book'" in run.overrides_note("Amazon-book")
    assert run.model_config.kd_int_weight == 1e-2  # the global value, not amazon's 2e-2


def test_shipped_defaults_follow_the_spec_table():
    expected = {"amazon": (1e-7, 1e-2, 0.2, 2e-2, 0.2, 1e-7, 1e-7),
                "yelp": (1e-7, 1e-2, 0.2, 1e-2, 0.2, 1e-7, 1e-7),
                "movie": (1e-6, 1e-3, 0.2, 3e-2, 0.2, 1e-7, 1e-7)}
    for dataset, values in expected.items():
        run = config_mod.resolve("irllrec", dataset)
        c = run.model_config
        assert (c.reg_weight, c.kd_weight, c.kd_temperature, c.kd_int_weight,
                c.kd_int_temperature, c.kd_int_weight_2, c.kd_int_weight_3) == values
        assert (c.embedding_size, c.intent_num, c.layer_num, c.keep_rate) == (32, 128, 3, 1.0)
        assert (run.train.lr, run.train.batch_size, run.train.eval_every, run.train.patience,
                run.train.seed, run.train.epochs) == (1e-3, 4096, 3, 5, 2023, 3000)
    lightgcn = config_mod.resolve("lightgcn", "amazon")
    assert lightgcn.model_config.keep_rate == 0.8 and lightgcn.model_config.reg_weight == 1e-6


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "irllrec_fast", "train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--data" in done.stdout and "--resume" in done.stdout
    done = subprocess.run([sys.executable, "-m", "irllrec_fast", "train", "--epochs", "x"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_fused_without_the_operators_is_one_line(capsys, monkeypatch):
    from irllrec_fast import extension_available, ops
    if not extension_available():
        pytest.skip("compiled operators absent")
    monkeypatch.delattr(ops, "intent_assign", raising=False)
    code, _, err = run(capsys, "train", "--impl", "fused", "--epochs", "1")
    one_line_error(code, err, "impl='fused' needs the operators intent_assign")


def test_authors_alias_kd_int_weight_1():
    user = {"model": {"name": "lightgcn_int", "amazon": {"kd_int_weight_1": 0.02}}}
    assert config_mod.resolve("irllrec", "amazon", user).model_config.kd_int_weight == 0.02


def small_folder(path, num_users=30, num_items=20, seed=0):
    """An IRLLRec-format folder: every user has training, validation and test items."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    items = np.stack([rng.permutation(num_items)[:6] for _ in range(num_users)])
    for stem, columns in (("trn_mat", slice(0, 4)), ("val_mat", slice(4, 5)),
                          ("tst_mat", slice(5, 6))):
        cols = items[:, columns].ravel()
        rows = np.repeat(np.arange(num_users), cols.size // num_users)
        sp.save_npz(path / f"{stem}.npz", sp.coo_matrix((np.ones(rows.size), (rows, cols)),
                                                        shape=(num_users, num_items)))
    return path


def test_an_unusable_out_folder_is_one_line(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for out in (afile, afile / "sub"):
        code, _, err = run(capsys, "train", "--model", "lightgcn", "--out", str(out), "--quiet")
        one_line_error(code, err, f"--out {out}: ")


def test_resume_refuses_another_dataset_of_the_same_name(capsys, tmp_path):
    first = small_folder(tmp_path / "a" / "toy")
    other = small_folder(tmp_path / "b" / "toy", num_users=25)
    out = tmp_path / "run"
    common = ["--model", "lightgcn", "--epochs", "1", "--out", str(out), "--quiet"]
    code, _, err = run(capsys, "train", "--data", str(first), *common)
    assert code == 0, err
    code, _, err = run(capsys, "train", "--data", str(other), *common, "--resume")
    one_line_error(code, err, "belongs to another run (shape: [30, 20, ")


def test_a_diverging_loss_is_one_line_with_exit_1(capsys, tmp_path):
    data = small_folder(tmp_path / "toy")
    config = tmp_path / "huge.yml"
    config.write_text("optimizer: {lr: 1.0e+30}\ntrain: {batch_size: 16}\n")
    code, _, err = run(capsys, "train", "--data", str(data), "--model", "lightgcn", "--config",
                       str(config), "--out", str(tmp_path / "run"), "--quiet")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("irllrec-fast: error: loss became ")


def test_empty_splits_are_one_line(capsys, tmp_path):
    folder = tmp_path / "lg"
    folder.mkdir()
    (folder / "train.txt").write_text("")
    (folder / "test.txt").write_text("0 1\n")
    code, _, err = run(capsys, "train", "--data", str(folder), "--model", "lightgcn")
    one_line_error(code, err, "train.txt: no interactions in it")
    # one training item per user: the 10% held out for validation rounds to none
    (folder / "train.txt").write_text("0 0\n1 2\n")
    code, _, err = run(capsys, "train", "--data", str(folder), "--model", "lightgcn")
    one_line_error(code, err, "the valid split has no interactions")


def test_train_config_defaults_are_the_spec_protocol():
    """IRLLREC_SPEC.md section 5, for code that builds a TrainConfig without a file."""
    c = config_mod.TrainConfig()
    assert (c.epochs, c.batch_size, c.lr, c.weight_decay, c.eval_every, c.patience, c.seed,
            c.ks, c.eval_batch_size) == (3000, 4096, 1e-3, 0.0, 3, 5, 2023, (5, 10, 20), 1024)
    assert c.metric == "recall@20"
    assert config_mod.TrainConfig(ks=(20, 5)).metric == "recall@20"


@pytest.mark.parametrize("change, message", [
    ({"lr": 0.0}, "lr must be > 0"),
    ({"eval_every": 0}, "eval_every must be >= 1"),
    ({"patience": 0}, "patience must be >= 1"),
    ({"ks": (0, 20)}, "ks must be positive"),
])
def test_train_config_rejects_values_out_of_range(change, message):
    with pytest.raises(config_mod.ConfigError, match=message):
        config_mod.TrainConfig(**change)


def test_only_adam_is_accepted():
    with pytest.raises(config_mod.ConfigError, match="only optimizer.name = adam"):
        config_mod.resolve("irllrec", "amazon", {"optimizer": {"name": "sgd"}})
def test_ctrl_c_during_training_exits_130_naming_the_resume(capsys, tmp_path, monkeypatch):
    from irllrec_fast.trainer import Trainer

    def interrupted(self, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    code, _, err = run(capsys, "train", "--model", "lightgcn", "--epochs", "1", "--out",
                       str(tmp_path), "--quiet")
    assert code == 130
    assert f"--resume --out {tmp_path}" in err
    # before training starts (reading data, building the model) too
    monkeypatch.setattr(cli, "train", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = run(capsys, "train", "--quiet")
    assert code == 130 and "interrupted" in err


def test_the_seed_makes_a_run_repeatable(capsys, tmp_path):
    """--seed seeds the initialisation as well as the sampler: two runs with one seed end with
    the same weights (whatever the global RNG held before); the seed and --epochs are the ones
    used."""
    import json

    import torch

    states = []
    for name in ("a", "b"):
        torch.manual_seed(ord(name))  # whatever came before must not matter
        code, _, err = run(capsys, "train", "--model", "lightgcn", "--epochs", "1", "--seed", "5",
                           "--out", str(tmp_path / name), "--quiet")
        assert code == 0, err
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics["train_config"]["seed"] == 5
        assert [e["epoch"] for e in metrics["epochs"]] == [0]  # --epochs 1 (the config says 2)
        states.append(torch.load(tmp_path / name / CHECKPOINT, weights_only=True)["model"])
    for key, value in states[0].items():
        assert torch.equal(states[1][key], value), key  # bit for bit (irllrec_fast/_rows.py)


def test_the_fused_operators_are_the_default_where_built(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--model", "lightgcn", "--epochs", "1", "--out",
                       str(tmp_path))
    assert code == 0, err
    assert "lightgcn (fused operators) on cpu" in err


def test_the_config_files_model_name_picks_the_model(capsys, tmp_path):
    config = tmp_path / "lightgcn.yml"
    config.write_text("model:\n  name: lightgcn\n")
    code, out, err = run(capsys, "train", "--config", str(config), "--epochs", "1", "--out",
                         str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    assert "lightgcn on synthetic" in out
