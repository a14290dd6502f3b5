"""Dataset readers: IRLLRec / RLMRec folders, LightGCN text folders, MovieLens-100K.

Every reader returns a validated `Dataset`; anything wrong with the files raises `DatasetError`
naming the file. Text embeddings are optional everywhere and are looked up under the file names of
the authors' folders (IRLLREC_SPEC.md section 6), as .npy, .npz or (allow-listed) .pkl.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from . import safe_pickle
from .dataset import Dataset, DatasetError, TextEmbeddings, interaction_matrix

FORMATS = ("irllrec", "lightgcn", "movielens")
IRLLREC_SPLITS = {"train": "trn_mat", "valid": "val_mat", "test": "tst_mat"}
TEXT_FILES = TextEmbeddings.FILE_STEMS
# .npz / .npy first: they cannot run code
EXTENSIONS = (".npz", ".npy", ".pkl")


def _find(folder: Path, stem: str) -> Optional[Path]:
    for ext in EXTENSIONS:
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


# how .npz (a zip archive) and .npy files begin; numpy takes anything else for a pickle and
# suggests allow_pickle=True, which a data file must never need
_MAGIC = {".npz": b"PK", ".npy": b"\x93NUMPY"}


def _read_array_or_matrix(path: Path):
    try:
        if path.suffix == ".pkl":
            return safe_pickle.load(path)
        magic = _MAGIC.get(path.suffix)
        if magic is not None:
            with open(path, "rb") as handle:
                if handle.read(len(magic)) != magic:
                    raise DatasetError(f"{path}: not a {path.suffix} file (it does not begin "
                                       f"as one)")
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        try:
            return sp.load_npz(path)
        except (ValueError, KeyError):  # not a sparse .npz: a plain numpy archive
            with np.load(path, allow_pickle=False) as archive:
                if len(archive.files) != 1:
                    raise DatasetError(f"{path}: expected one array in the archive, found "
                                       f"{archive.files}")
                return archive[archive.files[0]]
    except DatasetError:
        raise
    except safe_pickle.UnsafePickleError as error:
        raise DatasetError(str(error)) from None
    except (OSError, ValueError, EOFError, KeyError) as error:
        raise DatasetError(f"{path}: cannot read it ({error})") from None


def load_text(folder, num_users: int, num_items: int) -> Optional[TextEmbeddings]:
    """The four text-embedding files of `folder`, or None when there are none at all."""
    folder = Path(folder)
    found = {key: _find(folder, stem) for key, stem in TEXT_FILES.items()}
    if not any(found.values()):
        return None
    missing = [TEXT_FILES[k] for k, path in found.items() if path is None]
    if missing:
        raise DatasetError(f"{folder}: incomplete text embeddings, missing "
                           f"{', '.join(missing)} (.npy/.npz/.pkl)")
    arrays = {}
    for key, path in found.items():
        value = _read_array_or_matrix(path)
        if sp.issparse(value):
            raise DatasetError(f"{path}: expected a dense array of embeddings, got a sparse matrix")
        arrays[key] = np.asarray(value)
    text = TextEmbeddings(**arrays)
    text.check(num_users, num_items, str(folder))
    return text


def load_irllrec(folder, *, name: Optional[str] = None, text_dir=None) -> Dataset:
    """An IRLLRec / RLMRec folder: trn_mat, val_mat, tst_mat ([U, I] scipy sparse, .npz
    preferred, .pkl through the allow-list unpickler) and optional text embeddings."""
    folder = Path(folder)
    splits = {}
    for split, stem in IRLLREC_SPLITS.items():
        path = _find(folder, stem)
        if path is None:
            raise DatasetError(f"{folder}: missing {stem}.npz (or {stem}.pkl)")
        mat = _read_array_or_matrix(path)
        if not sp.issparse(mat):
            raise DatasetError(f"{path}: expected a scipy sparse matrix, got "
                               f"{type(mat).__name__}")
        splits[split] = mat
    train = splits["train"]
    text = load_text(text_dir or folder, train.shape[0], train.shape[1])
    return Dataset(name or folder.resolve().name, splits["train"], splits["valid"],
                   splits["test"], text=text, source=str(folder))


def _read_lightgcn_txt(path: Path):
    users, items = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read it ({error})") from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            ids = np.array(fields, dtype=np.int64)
        except ValueError:
            raise DatasetError(f"{path}:{number}: expected integer ids 'user item item ...', "
                               f"got {line[:60]!r}") from None
        if (ids < 0).any():
            raise DatasetError(f"{path}:{number}: ids must be >= 0")
        users.append(np.full(ids.size - 1, ids[0]))
        items.append(ids[1:])
    if not users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(users), np.concatenate(items)


def load_lightgcn(folder, *, name: Optional[str] = None, text_dir=None, seed: int = 2023,
                  valid_fraction: float = 0.1) -> Dataset:
    """A LightGCN folder: train.txt and test.txt with lines `user item item ...` (0-based ids).

    valid.txt is used when present; otherwise a seeded `valid_fraction` of each user's training
    items is held out for validation (LightGCN's own protocol has no validation split), keeping
    every user and item in training.
    """
    folder = Path(folder)
    parts = {}
    for split in ("train", "valid", "test"):
        path = folder / f"{split}.txt"
        if path.is_file():
            parts[split] = _read_lightgcn_txt(path)
        elif split != "valid":
            raise DatasetError(f"{folder}: missing {split}.txt")
    if parts["train"][0].size == 0:
        raise DatasetError(f"{folder / 'train.txt'}: no interactions in it")
    num_users = 1 + max(int(u.max()) for u, _ in parts.values() if u.size)
    num_items = 1 + max(int(i.max()) for _, i in parts.values() if i.size)
    if "valid" not in parts:
        users, items = parts["train"]
        held = per_user_split(users, items, num_users, num_items, (1 - valid_fraction,
                                                                   valid_fraction, 0.0), seed)
        parts["train"] = users[held == 0], items[held == 0]
        parts["valid"] = users[held == 1], items[held == 1]
    mats = {split: interaction_matrix(*parts[split], num_users, num_items,
                                      str(folder / f"{split}.txt")) for split in parts}
    text = load_text(text_dir or folder, num_users, num_items)
    return Dataset(name or folder.resolve().name, mats["train"], mats["valid"], mats["test"],
                   text=text, source=str(folder))


def per_user_split(users, items, num_users: int, num_items: int, ratios=(3, 1, 1),
                   seed: int = 2023) -> np.ndarray:
    """Assigns each interaction to 0 (train), 1 (valid) or 2 (test): per user, a seeded shuffle
    then round(n * r_valid) valid, round(n * r_test) test items, always keeping at least one in
    training; then every item whose interactions all landed in valid / test gets its first one
    moved back to training, so every user and item with interactions is kept in training."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.shape != (3,) or (ratios < 0).any() or ratios[0] <= 0:
        raise ValueError(f"ratios must be 3 non-negative numbers with a positive train share, "
                         f"got {ratios.tolist()}")
    ratios = ratios / ratios.sum()
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(users.size), users))  # by user, shuffled within a user
    counts = np.bincount(users, minlength=num_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_users = users[order]
    rank = np.arange(users.size) - starts[sorted_users]
    n = counts[sorted_users]
    n_test = np.floor(n * ratios[2] + 0.5).astype(np.int64)
    n_valid = np.floor(n * ratios[1] + 0.5).astype(np.int64)
    over = np.maximum(n_test + n_valid - (n - 1), 0)  # keep >= 1 training item
    n_valid -= np.minimum(over, n_valid)
    n_test -= np.maximum(n_test + n_valid - (n - 1), 0)
    assign_sorted = np.where(rank < n_test, 2, np.where(rank < n_test + n_valid, 1, 0))
    assign = np.empty(users.size, dtype=np.int64)
    assign[order] = assign_sorted
    in_train = np.bincount(items[assign == 0], minlength=num_items) > 0
    held = np.flatnonzero((assign != 0) & ~in_train[items])
    if held.size:
        _, first = np.unique(items[held], return_index=True)
        assign[held[first]] = 0
    return assign


def load_movielens(folder, *, name: Optional[str] = None, text_dir=None, seed: int = 2023,
                   min_rating: int = 4, max_users: Optional[int] = None) -> Dataset:
    """MovieLens-100K raw files: u.data (user, item, rating, time; tab separated, 1-based).

    Ratings >= min_rating are interactions; users and items without one are dropped and the ids
    compacted (Dataset.user_ids / item_ids hold the original ids of each row); a seeded per-user
    split 3:1:1 keeps every user and item in training. max_users keeps the users with the
    smallest max_users original ids (a quick subset for tests).
    """
    folder = Path(folder)
    path = folder / "u.data"
    if not path.is_file():
        raise DatasetError(f"{folder}: missing u.data (MovieLens-100K ratings)")
    try:
        raw = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read it as 'user item rating timestamp' rows "
                           f"({error})") from None
    if raw.shape[1] < 3:
        raise DatasetError(f"{path}: expected at least 3 columns (user item rating), got "
                           f"{raw.shape[1]}")
    raw = raw[raw[:, 2] >= min_rating]
    if max_users is not None:
        raw = raw[np.isin(raw[:, 0], np.unique(raw[:, 0])[:max_users])]
    if raw.size == 0:
        raise DatasetError(f"{path}: no rating >= {min_rating}")
    user_ids, users = np.unique(raw[:, 0], return_inverse=True)
    item_ids, items = np.unique(raw[:, 1], return_inverse=True)
    U, I = user_ids.size, item_ids.size
    assign = per_user_split(users, items, U, I, (3, 1, 1), seed)
    mats = [interaction_matrix(users[assign == s], items[assign == s], U, I, str(path))
            for s in range(3)]
    text = load_text(text_dir, U, I) if text_dir is not None else load_text(folder, U, I)
    return Dataset(name or folder.resolve().name, *mats, text=text, source=str(folder),
                   user_ids=user_ids, item_ids=item_ids)


def detect_format(folder) -> str:
    """'irllrec' (trn_mat.*), 'lightgcn' (train.txt) or 'movielens' (u.data)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a directory")
    if _find(folder, "trn_mat") is not None:
        return "irllrec"
    if (folder / "train.txt").is_file():
        return "lightgcn"
    if (folder / "u.data").is_file():
        return "movielens"
    raise DatasetError(f"{folder}: cannot tell the format: expected trn_mat.npz (IRLLRec/RLMRec), "
                       "train.txt (LightGCN) or u.data (MovieLens); pass --format")


def load_folder(folder, format: Optional[str] = None, *, name: Optional[str] = None,
                text_dir=None, seed: int = 2023) -> Dataset:
    """Reads a dataset folder in `format` (detected when None)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a directory")
    format = format or detect_format(folder)
    if format == "irllrec":
        return load_irllrec(folder, name=name, text_dir=text_dir)
    if format == "lightgcn":
        return load_lightgcn(folder, name=name, text_dir=text_dir, seed=seed)
    if format == "movielens":
        return load_movielens(folder, name=name, text_dir=text_dir, seed=seed)
    raise DatasetError(f"format must be one of {FORMATS}, got {format!r}")
