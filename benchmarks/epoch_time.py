"""Times one IRLLRec epoch at a dataset's shapes: sampling, every training step and one validation,
with random 1536-wide text embeddings (the authors' are not available), for impl fused or torch.

    python benchmarks/epoch_time.py --dataset amazon --impl fused [--device cuda] [--steps N]

--steps N stops after N steps and extrapolates the step time to the whole epoch (the torch path
takes about half a minute per step on 2 CPU cores). Prints one JSON line.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("IRLLREC_FAST_SHARED", str(Path(__file__).resolve().parents[2] / "shared"))

from irllrec_fast import testing  # noqa: E402
from irllrec_fast.config import TrainConfig  # noqa: E402
from irllrec_fast.data import Dataset, TextEmbeddings, load_folder  # noqa: E402
from irllrec_fast.models import IRLLRec, IRLLRecConfig  # noqa: E402
from irllrec_fast.trainer import Trainer  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon", choices=testing.DATASETS)
    parser.add_argument("--impl", default="fused", choices=("fused", "torch"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--text-width", type=int, default=1536)
    args = parser.parse_args()

    folder = testing.real_interactions_path(args.dataset).parent
    data = load_folder(folder, "irllrec")
    rng = np.random.default_rng(0)
    U, I, w = data.num_users, data.num_items, args.text_width
    data = Dataset(data.name, data.train, data.valid, data.test, source=data.source,
                   text=TextEmbeddings(*(rng.standard_normal((n, w), dtype=np.float32)
                                         for n in (U, I, U, I))))
    torch.manual_seed(0)
    model = IRLLRec(data.train_graph(), data.text, IRLLRecConfig(), impl=args.impl)
    model = model.to(args.device)
    trainer = Trainer(model, data, TrainConfig(epochs=1), progress=False)
    steps = len(trainer.sampler)
    if args.steps is not None:  # time a prefix of the epoch
        original = trainer.sampler.epoch

        def prefix(device=None):
            for index, batch in enumerate(original(device)):
                if index == args.steps:
                    return
                yield batch
        trainer.sampler.epoch = prefix
    tick = time.perf_counter()
    trainer.train_epoch(0)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - tick
    timed_steps = min(steps, args.steps or steps)
    tick = time.perf_counter()
    metrics = trainer.evaluate("valid")
    valid_seconds = time.perf_counter() - tick
    epoch = train_seconds * steps / timed_steps + valid_seconds
    print(json.dumps({"dataset": args.dataset, "impl": args.impl, "device": args.device,
                      "threads": torch.get_num_threads(), "steps": steps,
                      "timed_steps": timed_steps, "seconds_per_step": train_seconds / timed_steps,
                      "validation_seconds": valid_seconds, "epoch_seconds": epoch,
                      "recall@20": metrics["recall@20"]}))


if __name__ == "__main__":
    main()
