"""The training protocol, checkpoints, resume and interrupts."""
import json
import math

import pytest
import torch

from irllrec_fast import trainer as trainer_mod
from irllrec_fast.config import TrainConfig
from irllrec_fast.data import make_synthetic
from irllrec_fast.models import IRLLRecConfig, LightGCNConfig, build_model
from irllrec_fast.trainer import CHECKPOINT, METRICS, CheckpointError, Trainer


@pytest.fixture(scope="module")
def data():
    return make_synthetic(num_users=150, num_items=100, num_intents=5, profile_width=16,
                          intent_width=12, seed=3)


CONFIGS = {"lightgcn": LightGCNConfig(embedding_size=8, layer_num=2),
           "irllrec": IRLLRecConfig(embedding_size=8, layer_num=2, intent_num=6,
                                    kd_int_weight_2=0.01, kd_int_weight_3=0.1)}


def make_trainer(data, name="lightgcn", out=None, seed=0, **train):
    torch.manual_seed(seed)
    model = build_model(name, data.train_graph(), CONFIGS[name], text=data.text, impl="torch")
    config = TrainConfig(**{"epochs": 7, "batch_size": 128, "lr": 0.01, **train})
    return Trainer(model, data, config, out_dir=out, progress=False,
                   run_info={"model": name})


def test_validates_every_third_epoch_and_stops_on_patience(data, monkeypatch):
    trainer = make_trainer(data, epochs=100, patience=2)
    recalls = iter([0.1, 0.2, 0.15, 0.19, 0.5])
    snapshots = {}

    def fake_evaluate(split):
        weights = trainer.model.user_embeds.detach().clone()
        if split == "test":
            snapshots["test"] = weights
            return {"recall@20": -1.0, "ndcg@20": 0.0}
        snapshots[len(snapshots)] = weights
        return {"recall@20": next(recalls), "ndcg@20": 0.0}

    monkeypatch.setattr(trainer, "evaluate", fake_evaluate)
    result = trainer.fit()
    assert [v["epoch"] for v in trainer.history["validations"]] == [0, 3, 6, 9]
    assert result["epochs_run"] == 10 and result["best_epoch"] == 3
    torch.testing.assert_close(snapshots["test"], snapshots[1])  # the best state was reloaded


def test_the_last_epoch_is_validated_when_the_epoch_limit_ends_the_run(data, monkeypatch):
    trainer = make_trainer(data, epochs=5, patience=10)
    recalls = iter([0.1, 0.2, 0.3])
    monkeypatch.setattr(trainer, "evaluate", lambda split: {
        "recall@20": next(recalls) if split == "valid" else -1.0, "ndcg@20": 0.0})
    result = trainer.fit()
    assert [v["epoch"] for v in trainer.history["validations"]] == [0, 3, 4]
    assert result["best_epoch"] == 4


def test_trains_and_writes_metrics(data, tmp_path):
    trainer = make_trainer(data, out=tmp_path)
    result = trainer.fit()
    assert result["test"]["recall@20"] > 0.05  # clearly better than random (20/100 * ...)
    saved = json.loads((tmp_path / METRICS).read_text())
    assert saved["test"] == result["test"] and saved["best_epoch"] == result["best_epoch"]
    assert [e["epoch"] for e in saved["epochs"]] == list(range(7))
    assert {"loss", "bpr", "reg", "seconds"} <= set(saved["epochs"][0])
    assert [v["epoch"] for v in saved["validations"]] == [0, 3, 6]
    assert not list(tmp_path.glob(".*tmp*"))


def fit_until_interrupted(trainer, epoch, monkeypatch):
    """trainer.fit() with a Ctrl-C (KeyboardInterrupt) as the training of `epoch` begins."""
    original = Trainer.train_epoch

    def interrupt(self, e):
        if e == epoch:
            raise KeyboardInterrupt
        return original(self, e)

    monkeypatch.setattr(Trainer, "train_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.setattr(Trainer, "train_epoch", original)


@pytest.mark.parametrize("name", ["lightgcn", "irllrec"])
def test_resume_after_interrupt_equals_an_uninterrupted_run(data, tmp_path, monkeypatch, name):
    straight = make_trainer(data, name, out=tmp_path / "a")
    expected = straight.fit()

    fit_until_interrupted(make_trainer(data, name, out=tmp_path / "b"), 5, monkeypatch)

    saved = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert saved["next_epoch"] == 4  # the checkpoint of the validation after epoch 3
    resumed = make_trainer(data, name, out=tmp_path / "b", seed=123)  # other initial weights
    result = resumed.fit(resume=True)
    assert result["test"] == expected["test"]
    assert result["best_epoch"] == expected["best_epoch"]
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)
    assert resumed.history["validations"][-1]["recall@20"] == \
        straight.history["validations"][-1]["recall@20"]


def test_interrupt_while_writing_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    trainer = make_trainer(data, out=tmp_path, epochs=4)
    real_save = torch.save
    calls = []

    def save_then_interrupt(obj, path):
        calls.append(path)
        if len(calls) == 2:  # the second validation: half a file, then Ctrl-C
            with open(path, "wb") as handle:
                handle.write(b"partial")
            raise KeyboardInterrupt
        real_save(obj, path)

    monkeypatch.setattr(trainer_mod.torch, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.setattr(trainer_mod.torch, "save", real_save)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["next_epoch"] == 1  # the first validation's checkpoint, intact
    assert not list(tmp_path.glob(".*tmp*"))
    resumed = make_trainer(data, out=tmp_path, epochs=4)
    assert resumed.fit(resume=True)["epochs_run"] == 4


def test_resume_refuses_a_foreign_or_missing_checkpoint(data, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        make_trainer(data, out=tmp_path).fit(resume=True)
    make_trainer(data, out=tmp_path, epochs=1).fit()
    other = make_trainer(data, out=tmp_path)
    other.run_info = {"model": "something else"}
    with pytest.raises(CheckpointError, match="belongs to another run"):
        other.fit(resume=True)
    (tmp_path / CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot load it"):
        make_trainer(data, out=tmp_path).fit(resume=True)


@pytest.mark.parametrize("look_every", [1, 4])
def test_a_non_finite_loss_names_its_step(data, monkeypatch, look_every):
    trainer = make_trainer(data)
    trainer.host_look_every = look_every  # 1 on a CPU; an accelerator reads every few steps
    calculate_loss, calls = trainer.model.calculate_loss, []

    def nan_at_step_4(batch):
        loss, parts = calculate_loss(batch)
        calls.append(1)
        if len(calls) == 5:
            loss, parts = loss * math.nan, {**parts, "bpr": parts["bpr"] * math.nan}
        return loss, parts

    monkeypatch.setattr(trainer.model, "calculate_loss", nan_at_step_4)
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch 0, step 4: .*bpr=nan"):
        trainer.fit()
    finite = all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert finite == (look_every == 1)  # read before the backward only when every step is read


def test_reading_the_losses_every_few_steps_changes_nothing(data):
    runs = []
    for look_every in (1, 4):  # 4 does not divide the number of steps per epoch
        trainer = make_trainer(data, epochs=2)
        trainer.host_look_every = look_every
        assert len(trainer.sampler) % 4 != 0
        trainer.fit()
        runs.append((trainer.history["epochs"], list(trainer.model.parameters())))
    (history_1, params_1), (history_4, params_4) = runs
    for e1, e4 in zip(history_1, history_4):
        assert {k: v for k, v in e1.items() if k != "seconds"} == \
            {k: v for k, v in e4.items() if k != "seconds"}
    for p1, p4 in zip(params_1, params_4):
        assert torch.equal(p1, p4)


def test_a_tie_is_no_improvement_and_an_improvement_resets_the_patience(data, monkeypatch):
    """Validation Recall@20: 0.1 (best), 0.05 (1 bad), 0.2 (best: the count starts again),
    0.2 (a tie: not better, 1 bad), 0.15 (2 bad) -> patience 2 stops after epoch 12, and the
    best is epoch 6, the first to reach 0.2."""
    trainer = make_trainer(data, epochs=100, patience=2)
    recalls = iter([0.1, 0.05, 0.2, 0.2, 0.15, 0.1, 0.1, 0.1])
    monkeypatch.setattr(trainer, "evaluate", lambda split: {
        "recall@20": next(recalls) if split == "valid" else -1.0, "ndcg@20": 0.0})
    result = trainer.fit()
    assert [v["epoch"] for v in trainer.history["validations"]] == [0, 3, 6, 9, 12]
    assert result["best_epoch"] == 6 and result["epochs_run"] == 13


def test_resume_restores_the_best_metric_and_the_patience_count(data, tmp_path, monkeypatch):
    """Interrupted after the validations 0.3 (best), 0.1 (1 bad), resumed: 0.2 is not better than
    the restored best 0.3 and is the second bad validation, so patience 2 ends the run there."""
    def scripted(trainer, values):
        values = iter(values)
        monkeypatch.setattr(trainer, "evaluate", lambda split: {
            "recall@20": next(values) if split == "valid" else -1.0, "ndcg@20": 0.0})
        return trainer

    first = scripted(make_trainer(data, out=tmp_path, epochs=100, patience=2), [0.3, 0.1])
    fit_until_interrupted(first, 4, monkeypatch)
    resumed = scripted(make_trainer(data, out=tmp_path, epochs=100, patience=2), [0.2, 0.25, 0.5])
    result = resumed.fit(resume=True)
    assert [v["epoch"] for v in resumed.history["validations"]] == [0, 3, 6]
    assert result["best_epoch"] == 0 and result["epochs_run"] == 7


def test_every_training_step_runs_in_training_mode(data):
    """Validation puts the model in eval mode; every epoch's steps run in training mode again."""
    trainer = make_trainer(data, epochs=2)
    calculate_loss, modes = trainer.model.calculate_loss, []

    def recording(batch):
        modes.append(trainer.model.training)
        return calculate_loss(batch)

    trainer.model.calculate_loss = recording
    trainer.fit()
    assert len(modes) == 2 * len(trainer.sampler) and all(modes)


def test_the_optimiser_uses_the_configured_weight_decay(data):
    trainer = make_trainer(data, weight_decay=0.25, lr=0.02)
    assert [(g["lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups] == [(0.02, 0.25)]


def test_the_epoch_history_holds_the_mean_of_each_loss_part(data):
    trainer = make_trainer(data, epochs=1)
    calculate_loss, steps = trainer.model.calculate_loss, []

    def recording(batch):
        loss, parts = calculate_loss(batch)
        steps.append({"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}})
        return loss, parts

    trainer.model.calculate_loss = recording
    trainer.fit()
    epoch = trainer.history["epochs"][0]
    assert len(steps) == len(trainer.sampler) > 1
    for name in ("loss", "bpr", "reg"):
        assert epoch[name] == pytest.approx(sum(s[name] for s in steps) / len(steps), rel=1e-12)


def test_validation_ranks_without_the_training_items(data):
    """Validation masks each user's training items (not the validated ones): a trained model
    finds some of its validation items."""
    trainer = make_trainer(data, epochs=4)
    trainer.fit()
    assert max(v["recall@20"] for v in trainer.history["validations"]) > 0.05
