"""Configuration files in the layout of the authors' model configs (encoder/config/modelconf/*.yml):
sections `optimizer`, `train`, `test`, `data`, `model` with global keys, and inside any section a
mapping named after a dataset that overrides the global keys for that dataset.

The package ships one file per model (irllrec_fast/configs/<model>.yml, IRLLREC_SPEC.md section 4);
a user file is laid over it (see `resolve`), so it only needs the keys it changes. Unknown keys
are errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import yaml

from .models import MODELS

# the authors' model names that mean ours
MODEL_ALIASES = {"lightgcn": "lightgcn", "irllrec": "irllrec", "lightgcn_int": "irllrec"}
# model keys spelled differently in some of the authors' releases
MODEL_KEY_ALIASES = {"kd_int_weight_1": "kd_int_weight"}
# keys of the authors' files that have no effect here (their trainer's switches)
IGNORED = {"optimizer": {"name"}, "train": {"save_model", "loss", "reproducible", "log_loss"},
           "test": {"metrics"}, "data": {"type", "name"}, "model": {"name"}}
TRAIN_KEYS = {("optimizer", "lr"): "lr", ("optimizer", "weight_decay"): "weight_decay",
              ("train", "epoch"): "epochs", ("train", "batch_size"): "batch_size",
              ("train", "test_step"): "eval_every", ("train", "seed"): "seed",
              ("train", "patience"): "patience", ("test", "k"): "ks",
              ("test", "batch_size"): "eval_batch_size"}


class ConfigError(ValueError):
    """A configuration file that cannot be used (unreadable, unknown key, bad value)."""


@dataclass
class TrainConfig:
    """Training and evaluation protocol (IRLLREC_SPEC.md section 5).

    Fields (YAML key in brackets):
        epochs: maximum number of epochs [train.epoch] (3000).
        batch_size: BPR triples per step [train.batch_size] (4096).
        lr: Adam learning rate [optimizer.lr] (1e-3).
        weight_decay: Adam weight decay [optimizer.weight_decay] (0).
        eval_every: validate every this many epochs, starting at epoch 0 [train.test_step] (3).
        patience: stop after this many validations without a better Recall@20 [train.patience] (5).
        seed: seed of the model initialisation, the sampler and the noise [train.seed] (2023).
        ks: cut-offs of Recall/NDCG [test.k] ((5, 10, 20)); the largest selects the best model.
        eval_batch_size: users per ranking batch [test.batch_size] (1024).
    """

    epochs: int = 3000
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 3
    patience: int = 5
    seed: int = 2023
    ks: Tuple[int, ...] = (5, 10, 20)
    eval_batch_size: int = 1024

    def __post_init__(self):
        self.ks = tuple(int(k) for k in self.ks)
        for name in ("epochs", "batch_size", "eval_every", "patience", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"ks must be positive, got {self.ks}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")

    @property
    def metric(self) -> str:
        """The validation metric that selects the best model: Recall at the largest K."""
        return f"recall@{max(self.ks)}"


@dataclass
class RunConfig:
    """A model name, its hyperparameters and the training protocol, resolved for one dataset."""

    model: str
    model_config: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    # the datasets with overrides in the configuration, and whether this dataset's were applied
    override_datasets: Tuple[str, ...] = ()
    overridden: bool = False

    def overrides_note(self, dataset: str) -> str:
        """One line saying which values this run took, since overrides apply by exact name."""
        if self.overridden:
            return f"config: global values with the overrides for {dataset!r}"
        known = ", ".join(self.override_datasets) or "none"
        return (f"config: global values (no overrides for {dataset!r}; the configuration has "
                f"them for: {known})")


def read_yaml(path) -> Dict[str, Any]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def shipped_config(model: str) -> Dict[str, Any]:
    """The defaults shipped for `model` ("lightgcn" | "irllrec")."""
    text = resources.files("irllrec_fast").joinpath("configs", f"{model}.yml").read_text()
    return yaml.safe_load(text)


SECTIONS = ("optimizer", "train", "test", "data", "model")


def _resolve_section(section: Dict[str, Any], dataset: str) -> Dict[str, Any]:
    """Global keys of a section with the dataset's overrides applied; other datasets dropped."""
    flat = {k: v for k, v in section.items() if not isinstance(v, dict)}
    override = section.get(dataset)
    if isinstance(override, dict):
        nested = [k for k, v in override.items() if isinstance(v, dict)]
        if nested:
            raise ConfigError(f"override for {dataset!r} may not nest mappings ({nested})")
        flat.update(override)
    return flat


def _coerce(cls, values: Dict[str, Any], labels: Dict[str, str]) -> Dict[str, Any]:
    """Values converted to the type of each field's default (YAML reads `1e-7` as a string);
    `labels` names each field as the file does, for the error messages."""
    defaults = {f.name: f.default for f in fields(cls)}
    out = {}
    for key, value in values.items():
        default = defaults.get(key)
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError("expected true or false")
            elif isinstance(default, float):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise ValueError("expected a number") from None
            elif isinstance(default, int):
                try:
                    as_float = float(value)
                except (TypeError, ValueError):
                    as_float = math.nan
                if not math.isfinite(as_float) or as_float != int(as_float):
                    raise ValueError("expected an integer")
                value = int(as_float)
            elif isinstance(default, str):
                value = str(value)
            elif isinstance(default, tuple):
                value = tuple(int(v) for v in (value if isinstance(value, (list, tuple))
                                               else [value]))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{labels[key]} = {value!r}: {error}") from None
        out[key] = value
    return out


def model_name_of(data: Dict[str, Any]) -> Optional[str]:
    name = (data.get("model") or {}).get("name")
    if name is None:
        return None
    if name not in MODEL_ALIASES:
        raise ConfigError(f"model.name must be one of {sorted(MODEL_ALIASES)}, got {name!r}")
    return MODEL_ALIASES[name]


def resolve(model: str, dataset: str, user: Optional[Dict[str, Any]] = None,
            source: str = "config") -> RunConfig:
    """The run configuration of `model` on `dataset`, in layers, each over the one before: the
    shipped global values, the shipped overrides for `dataset`, the `user` file's global values,
    the user file's overrides for `dataset`. (A user's global value wins over a shipped
    per-dataset one: what a file says for every dataset holds for the shipped datasets too.)"""
    model = MODEL_ALIASES.get(model, model)
    if model not in MODELS:
        raise ConfigError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    layers = (("config", shipped_config(model)), (source, user or {}))
    sections = {name: {} for name in SECTIONS}
    override_datasets, overridden = set(), False
    for where, data in layers:
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)}; expected "
                              f"{', '.join(SECTIONS)}")
        for name in SECTIONS:
            value = data.get(name) or {}
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: section {name!r} must be a mapping")
            sections[name].update(_resolve_section(value, dataset))
            datasets = {k for k, v in value.items() if isinstance(v, dict)}
            override_datasets |= datasets
            overridden |= dataset in datasets

    train_kwargs = {}
    for (section, key), target in TRAIN_KEYS.items():
        if key in sections[section]:
            train_kwargs[target] = sections[section].pop(key)
    for section in ("optimizer", "train", "test", "data"):
        unknown = set(sections[section]) - IGNORED[section]
        if unknown:
            allowed = sorted({k for (s, k) in TRAIN_KEYS if s == section} | IGNORED[section])
            raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)} in section "
                              f"{section!r}; known: {allowed}")
    if str(sections["optimizer"].get("name", "adam")).lower() != "adam":
        raise ConfigError(f"{source}: only optimizer.name = adam is supported")

    _, config_cls = MODELS[model]
    model_keys = {MODEL_KEY_ALIASES.get(k, k): v for k, v in sections["model"].items()
                  if k not in IGNORED["model"]}
    known = {f.name for f in fields(config_cls)}
    unknown = set(model_keys) - known
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)} in section 'model' for "
                          f"{model}; known: {sorted(known)}")
    # the file's names for the messages: train.epoch, not TrainConfig's epochs
    labels = {target: f"{section}.{key}" for (section, key), target in TRAIN_KEYS.items()}
    labels.update({key: f"model.{key}" for key in model_keys})
    try:
        model_config = config_cls(**_coerce(config_cls, model_keys, labels))
        train = TrainConfig(**_coerce(TrainConfig, train_kwargs, labels))
        return RunConfig(model, model_config, train, tuple(sorted(override_datasets)), overridden)
    except (TypeError, ValueError) as error:
        message = str(error)
        field_name = message.split(" ", 1)[0]
        if field_name in labels and not message.startswith(labels[field_name]):
            message = labels[field_name] + message[len(field_name):]
        raise ConfigError(f"{source}: {message}") from None
