"""The training loop of IRLLREC_SPEC.md section 5.

Each epoch draws one negative per training interaction, shuffles, and takes Adam steps on batches
of triples. After epochs 0, eval_every, 2 * eval_every, ... (and after the last epoch, when the
epoch limit ends the run) the model is ranked on the validation split; the best state by
validation Recall@max(K) is kept, and training stops after `patience` validations without
improvement or after `epochs` epochs. The best state is then reloaded and
ranked once on the test split.

With an output folder, every validation writes (atomically: a temporary file, then os.replace)
`checkpoint.pt` (model, optimiser, sampler and torch RNG states, best state, counters, history)
and `metrics.json`; the end writes `metrics.json` with the test metrics. `fit(resume=True)` picks
up from `checkpoint.pt` and, on the CPU, ends exactly where an uninterrupted run would. An
interrupt (Ctrl-C) can only ever hit between two complete checkpoint files.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from .config import TrainConfig
from .data import BPRSampler, Dataset
from .evaluation import evaluate

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CHECKPOINT_VERSION = 1
HOST_LOOK_EVERY = 25  # steps between reads of the losses on an accelerator (see train_epoch)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or belongs to another run."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) then os.replace(tmp, path): readers see the old file or the new one, whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_dump(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


class Trainer:
    """Trains `model` on `dataset` with `config` (a `TrainConfig`).

    Args:
        model: a `Recommender` already on its device.
        dataset: the `Dataset` whose splits drive sampling and evaluation.
        config: `TrainConfig`.
        out_dir: folder for checkpoint.pt and metrics.json (None: keep nothing on disk).
        progress: show a progress bar per epoch (tqdm, on stderr) with the running loss parts.
        log: called with one line per validation and at the end (None: silent).
        run_info: JSON-serialisable facts stored with the checkpoint and the metrics (model name,
            its config, dataset); a resume refuses a checkpoint whose run_info differs.
    """

    def __init__(self, model, dataset: Dataset, config: TrainConfig, *, out_dir=None,
                 progress: bool = True, log: Optional[Callable[[str], None]] = None,
                 run_info: Optional[Dict[str, Any]] = None):
        self.model = model
        self.dataset = dataset
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.log = log or (lambda line: None)
        self.run_info = dict(run_info or {})
        self.device = next(model.parameters()).device
        # reading the losses (and checking them for NaN / inf) waits for the device: free on a
        # CPU, but on a GPU it drains the queue of launched kernels, so there it happens only
        # every HOST_LOOK_EVERY steps
        self.host_look_every = 1 if self.device.type == "cpu" else HOST_LOOK_EVERY
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr,
                                          weight_decay=config.weight_decay)
        self.sampler = BPRSampler(dataset.train, config.batch_size, seed=config.seed)
        self.next_epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = -1
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.bad_evaluations = 0
        self.history: Dict[str, list] = {"epochs": [], "validations": []}

    # ------------------------------------------------------------------ loop
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """One pass over the sampled triples; returns the mean of each loss part."""
        self.model.train()
        sums: Dict[str, float] = {}
        unread = []  # per step since the last look: [loss, *parts] on the device
        look_every = self.host_look_every
        steps = 0
        bar = None
        if self.progress:
            from tqdm import tqdm

            # disable=None: no bar when stderr is not a terminal (logs, CI)
            bar = tqdm(total=len(self.sampler), desc=f"epoch {epoch}", leave=False,
                       dynamic_ncols=True, disable=None)

        def look(names) -> None:
            """Adds the unread steps to the sums, in step order; stops at a non-finite loss."""
            # to float64 on the host: some devices (MPS) have none
            rows = torch.stack(unread).cpu().double().tolist()
            first = steps - len(unread)
            unread.clear()
            for offset, row in enumerate(rows):
                if not math.isfinite(row[0]):
                    raise FloatingPointError(
                        f"loss became {row[0]} at epoch {epoch}, step {first + offset}: "
                        + self._fmt(dict(zip(names[1:], row[1:]))))
                for name, value in zip(names, row):
                    sums[name] = sums.get(name, 0.0) + value
            if bar is not None:
                bar.set_postfix_str(self._fmt({k: v / steps for k, v in sums.items()}),
                                    refresh=False)

        names = ()
        try:
            for batch in self.sampler.epoch(self.device):
                self.optimizer.zero_grad(set_to_none=True)
                loss, parts = self.model.calculate_loss(batch)
                names = ("loss", *parts)
                unread.append(torch.stack([loss.detach(), *(v.detach() for v in parts.values())]))
                steps += 1
                if steps % look_every == 0:
                    look(names)  # before the backward: on a CPU no NaN step updates weights
                loss.backward()
                self.optimizer.step()
                if bar is not None:
                    bar.update(1)
            if unread:
                look(names)
        finally:
            if bar is not None:
                bar.close()
        return {k: v / max(steps, 1) for k, v in sums.items()}

    @staticmethod
    def _fmt(parts: Dict[str, Any]) -> str:
        return " ".join(f"{k}={float(v):.4g}" for k, v in parts.items())

    def evaluate(self, split: str) -> Dict[str, float]:
        matrix = getattr(self.dataset, split)
        return evaluate(self.model, matrix, self.dataset.train, self.config.ks,
                        self.config.eval_batch_size)

    def fit(self, resume: bool = False) -> Dict[str, Any]:
        """Trains, reloads the best state, tests; returns {"best_epoch", "valid", "test",
        "epochs_run", "seconds"}."""
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load_checkpoint()
        cfg = self.config
        start = time.perf_counter()
        while self.next_epoch < cfg.epochs and self.bad_evaluations < cfg.patience:
            epoch = self.next_epoch
            tick = time.perf_counter()
            means = self.train_epoch(epoch)
            self.history["epochs"].append({"epoch": epoch, **means,
                                           "seconds": time.perf_counter() - tick})
            self.next_epoch = epoch + 1
            # the last epoch too, so that no trained epoch goes unjudged (--epochs 2 would
            # otherwise report epoch 0's model)
            if epoch % cfg.eval_every == 0 or self.next_epoch == cfg.epochs:
                self._validate(epoch)
        if self.best_state is None:  # no validation ran (cannot happen with epochs >= 1)
            raise RuntimeError("training ended before the first validation")
        self.model.load_state_dict(self.best_state)
        test = self.evaluate("test")
        valid = next(v for v in self.history["validations"] if v["epoch"] == self.best_epoch)
        result = {"best_epoch": self.best_epoch, "valid": valid, "test": test,
                  "epochs_run": self.next_epoch, "seconds": time.perf_counter() - start}
        self.log(f"best epoch {self.best_epoch}; test {self._metrics_line(test)}")
        self._write_metrics(test)
        return result

    def _validate(self, epoch: int) -> None:
        tick = time.perf_counter()
        metrics = self.evaluate("valid")
        value = metrics[self.config.metric]
        improved = value > self.best_metric
        if improved:
            self.best_metric, self.best_epoch = value, epoch
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
        self.history["validations"].append({"epoch": epoch, **metrics,
                                            "seconds": time.perf_counter() - tick})
        self.log(f"epoch {epoch:4d} valid {self._metrics_line(metrics)}"
                 f"{'  *best' if improved else ''}")
        self.save_checkpoint()
        self._write_metrics(None)

    def _metrics_line(self, metrics: Dict[str, float]) -> str:
        k = max(self.config.ks)
        return f"recall@{k} {metrics[f'recall@{k}']:.4f} ndcg@{k} {metrics[f'ndcg@{k}']:.4f}"

    # ------------------------------------------------------------------ files
    def _write_metrics(self, test: Optional[Dict[str, float]]) -> None:
        if self.out_dir is None:
            return
        _json_dump({"run": self.run_info, "train_config": asdict(self.config),
                    "best_epoch": self.best_epoch, "test": test, **self.history},
                   self.out_dir / METRICS)

    def _state(self) -> Dict[str, Any]:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "version": CHECKPOINT_VERSION,
            "run_info": json.loads(json.dumps(self.run_info)),
            "train_config": asdict(self.config),
            "next_epoch": self.next_epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng,
            "best": {"metric": self.best_metric, "epoch": self.best_epoch,
                     "state": self.best_state},
            "bad_evaluations": self.bad_evaluations,
            "history": copy.deepcopy(self.history),
        }

    def save_checkpoint(self) -> None:
        if self.out_dir is None:
            return
        state = self._state()
        atomic_write(self.out_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self) -> None:
        if self.out_dir is None:
            raise CheckpointError("resuming needs an output folder with a checkpoint")
        path = self.out_dir / CHECKPOINT
        if not path.is_file():
            raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as error:  # a foreign or damaged file: say which, not a traceback
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CheckpointError(f"{path}: cannot load it as a checkpoint ({first_line})") \
                from None
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not "
                                  f"{CHECKPOINT_VERSION}")
        mine = json.loads(json.dumps(self.run_info))
        if state["run_info"] != mine:
            differences = _differences(state["run_info"], mine)
            raise CheckpointError(f"{path} belongs to another run ({differences}): use another "
                                  "output folder")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:  # the same facts, another model (e.g. hand-made run_info)
            raise CheckpointError(f"{path}: its weights do not fit this model "
                                  f"({str(error).splitlines()[-1].strip()})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"]["cpu"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
        self.next_epoch = state["next_epoch"]
        self.best_metric = state["best"]["metric"]
        self.best_epoch = state["best"]["epoch"]
        self.best_state = state["best"]["state"]
        self.bad_evaluations = state["bad_evaluations"]
        self.history = state["history"]
        self.log(f"resumed from {path} at epoch {self.next_epoch}")


def _differences(saved: Dict[str, Any], mine: Dict[str, Any], prefix: str = "") -> str:
    """'key: saved -> this run' for each differing fact, nested mappings flattened."""
    out = []
    for key in sorted(set(saved) | set(mine), key=str):
        a, b = saved.get(key), mine.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, f"{prefix}{key}.")
            if inner:
                out.append(inner)
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} here")
    return "; ".join(out)
