"""Profile and intent texts for MovieLens-100K, written from the training split only.

`build_movielens(ml_dir, out_dir)` makes an IRLLRec dataset folder (IRLLREC_SPEC.md section 6)
from the raw MovieLens-100K files: the split of `load_movielens` (ratings >= 4, seeded per-user
3:1:1), four text lists in the spirit of the paper, their embeddings, and the texts themselves
as JSON lines next to them.

- Item profile: title, year, genres.
- User profile: age band, gender, occupation, and the genres and titles of the training positives.
- User intent ("likes ... / dislikes ..."): genres over-represented among the user's training
  positives, and among the user's low ratings (<= 2).
- Item intent: the kinds of users (age band, gender, occupation) over-represented among the
  item's training positives (attracts) and among its low raters (repels).

No validation or test interaction reaches any text: positives come from the training matrix
only, and low ratings (<= 2) are never interactions of any split (only ratings >= 4 are).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from .dataset import DatasetError
from .readers import load_movielens

AGE_BANDS = ((0, 18, "teenage"), (18, 25, "18-24-year-old"), (25, 35, "25-34-year-old"),
             (35, 45, "35-44-year-old"), (45, 56, "45-55-year-old"), (56, 200, "over-55"))
LOW_RATING = 2
# How a group of users reads in "attracts ..." (default: the occupation plus "s")
GROUP_NAMES = {"teenage": "teenagers", "over-55": "people over 55", "men": "men", "women": "women",
               "entertainment": "people in entertainment", "healthcare": "people in healthcare",
               "marketing": "people in marketing", "none": "people without an occupation",
               "other": "people of other occupations", "retired": "retired people",
               "salesman": "salespeople"}
TEXT_FILES = ("user_profiles", "item_profiles", "user_intents", "item_intents")


@dataclass
class MovieLensMeta:
    """Side information of the kept users and items (rows follow the dataset's compact ids)."""

    titles: List[str]
    years: List[str]
    genres: np.ndarray          # [I, G] bool
    genre_names: List[str]
    ages: np.ndarray            # [U]
    genders: List[str]
    occupations: List[str]


def _indefinite_article(word: str) -> str:
    """'An' before a vowel sound ("an 18-24-year-old", "an over-55"), else 'A'."""
    return "An" if word[0] in "aeiou8" or word.startswith(("11", "18")) else "A"


def _age_band(age: int) -> str:
    return next(name for lo, hi, name in AGE_BANDS if lo <= age < hi)


def read_meta(folder: Path, user_ids: np.ndarray, item_ids: np.ndarray) -> MovieLensMeta:
    """u.item, u.genre and u.user for the given original (1-based) ids."""
    try:
        genre_names = [line.split("|")[0] for line in
                       (folder / "u.genre").read_text(encoding="latin-1").splitlines() if line]
        items = {}
        for line in (folder / "u.item").read_text(encoding="latin-1").splitlines():
            if line:
                fields = line.split("|")
                items[int(fields[0])] = fields
        users = {}
        for line in (folder / "u.user").read_text(encoding="latin-1").splitlines():
            if line:
                fields = line.split("|")
                users[int(fields[0])] = fields
    except OSError as error:
        raise DatasetError(f"{folder}: cannot read the MovieLens side files ({error})") from None
    titles, years, genres = [], [], []
    for item in item_ids:
        fields = items[int(item)]
        title = fields[1]
        # "Toy Story (1995)" -> title "Toy Story", year "1995"
        year = title[-5:-1] if title.endswith(")") and title[-5:-1].isdigit() else ""
        title = title[:-7].strip() if year else title.strip()
        for article in ("The", "A", "An", "Il", "La", "Le", "Les", "Das", "Der", "Die"):
            if title.endswith(f", {article}"):  # "Usual Suspects, The" -> "The Usual Suspects"
                title = f"{article} {title[: -len(article) - 2]}"
                break
        titles.append(title)
        years.append(year)
        genres.append([flag == "1" for flag in fields[5:5 + len(genre_names)]])
    return MovieLensMeta(
        titles=titles, years=years, genres=np.array(genres, dtype=bool), genre_names=genre_names,
        ages=np.array([int(users[int(u)][1]) for u in user_ids]),
        genders=["man" if users[int(u)][2] == "M" else "woman" for u in user_ids],
        occupations=[users[int(u)][3] for u in user_ids])


def low_ratings(folder: Path, user_ids: np.ndarray, item_ids: np.ndarray) -> sp.csr_matrix:
    """[U, I] binary matrix of ratings <= 2 among the kept users and items (in no split)."""
    raw = np.loadtxt(folder / "u.data", dtype=np.int64, ndmin=2)
    raw = raw[raw[:, 2] <= LOW_RATING]
    u = np.searchsorted(user_ids, raw[:, 0])
    i = np.searchsorted(item_ids, raw[:, 1])
    keep = (u < user_ids.size) & (i < item_ids.size)
    keep &= (user_ids[np.minimum(u, user_ids.size - 1)] == raw[:, 0])
    keep &= (item_ids[np.minimum(i, item_ids.size - 1)] == raw[:, 1])
    ones = np.ones(int(keep.sum()), dtype=np.float32)
    return sp.csr_matrix((ones, (u[keep], i[keep])), shape=(user_ids.size, item_ids.size))


def _group_name(group: str) -> str:
    if group.endswith("-year-old"):
        return group + "s"
    return GROUP_NAMES.get(group, group + "s")


def _occupation_phrase(occupation: str) -> str:
    return {"none": "no occupation", "other": "an occupation listed as other"}.get(
        occupation, f"occupation {occupation}")


def _without(words: Sequence[str], taken: Sequence[str]) -> List[str]:
    """words minus those already in taken: a genre or group is never both liked and disliked."""
    return [w for w in words if w not in taken]


def _join(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _over_represented(counts: np.ndarray, baseline: np.ndarray, names: Sequence[str],
                      top: int = 3, min_count: int = 2) -> List[str]:
    """Names whose share in `counts` most exceeds their share in `baseline` (lift > 1)."""
    total = counts.sum()
    if total == 0:
        return []
    lift = (counts / total) / np.maximum(baseline / max(baseline.sum(), 1e-12), 1e-12)
    order = np.argsort(-lift, kind="stable")
    return [names[k] for k in order if counts[k] >= min_count and lift[k] > 1.0][:top]


def texts_from_training(train: sp.csr_matrix, dislikes: sp.csr_matrix,
                        meta: MovieLensMeta) -> dict:
    """The four text lists, computed from the training positives and low ratings only."""
    train, dislikes = train.tocsr(), dislikes.tocsr()
    genre_names = meta.genre_names
    genres = meta.genres.astype(np.float64)
    item_genre_base = np.asarray(train.sum(0)).ravel() @ genres  # genre counts over all positives
    bands = [_age_band(a) for a in meta.ages]
    groups = sorted(set(bands)) + ["men", "women"] + sorted(set(meta.occupations))
    index = {g: k for k, g in enumerate(groups)}
    user_groups = np.zeros((train.shape[0], len(groups)))
    for u in range(train.shape[0]):
        user_groups[u, index[bands[u]]] = 1
        user_groups[u, index["men" if meta.genders[u] == "man" else "women"]] = 1
        user_groups[u, index[meta.occupations[u]]] = 1
    group_base = np.asarray(train.sum(1)).ravel() @ user_groups  # group counts over positives

    item_profiles = [
        f"{meta.titles[i]}{f' ({meta.years[i]})' if meta.years[i] else ''}. Genres: "
        f"{_join([genre_names[g] for g in np.flatnonzero(meta.genres[i])]) or 'unknown'}."
        for i in range(train.shape[1])]

    user_profiles, user_intents = [], []
    for u in range(train.shape[0]):
        liked = train.indices[train.indptr[u]:train.indptr[u + 1]]
        disliked = dislikes.indices[dislikes.indptr[u]:dislikes.indptr[u + 1]]
        liked_genres = genres[liked].sum(0)
        top_genres = [genre_names[g] for g in np.argsort(-liked_genres, kind="stable")[:3]
                      if liked_genres[g] > 0]
        titles = [meta.titles[i] for i in liked[:5]]
        user_profiles.append(
            f"{_indefinite_article(bands[u])} {bands[u]} {meta.genders[u]}, "
            f"{_occupation_phrase(meta.occupations[u])}. Enjoyed "
            f"{len(liked)} movies, mostly {_join(top_genres) or 'of no clear genre'}, such as "
            f"{_join(titles)}.")
        likes = _over_represented(liked_genres, item_genre_base, genre_names)
        dislike = _without(_over_represented(genres[disliked].sum(0), item_genre_base,
                                             genre_names), likes)
        user_intents.append(
            f"Likes {_join(likes) or 'a broad mix of movies'}; dislikes "
            f"{_join(dislike) or 'nothing in particular'}.")

    train_t, dislikes_t = train.T.tocsr(), dislikes.T.tocsr()
    item_intents = []
    for i in range(train.shape[1]):
        fans = train_t.indices[train_t.indptr[i]:train_t.indptr[i + 1]]
        critics = dislikes_t.indices[dislikes_t.indptr[i]:dislikes_t.indptr[i + 1]]
        attracts = _over_represented(user_groups[fans].sum(0), group_base, groups)
        repels = _without(_over_represented(user_groups[critics].sum(0), group_base, groups),
                          attracts)
        attracts, repels = [_group_name(g) for g in attracts], [_group_name(g) for g in repels]
        taste = _join([genre_names[g] for g in np.flatnonzero(meta.genres[i])]) or "unknown"
        item_intents.append(
            f"A movie of genre {taste} that attracts {_join(attracts) or 'a general audience'} "
            f"and puts off {_join(repels) or 'no group in particular'}.")
    return {"user_profiles": user_profiles, "item_profiles": item_profiles,
            "user_intents": user_intents, "item_intents": item_intents}


def _write_jsonl(path: Path, ids: np.ndarray, texts: Sequence[str]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row, (orig, line) in enumerate(zip(ids, texts)):
            f.write(json.dumps({"row": row, "id": int(orig), "text": line}) + "\n")
    os.replace(tmp, path)


def build_movielens(ml_dir, out_dir, *, seed: int = 2023, encoder=None, batch_size: int = 64,
                    max_users: Optional[int] = None, progress: bool = True) -> Path:
    """Writes an IRLLRec dataset folder for MovieLens-100K into out_dir and returns it.

    encoder: a `text.TextEncoder`, a model folder, or None for the packaged default.
    max_users: keep only the first that many users (original ids), for quick tests.
    """
    from .. import text as text_mod

    ml_dir, out_dir = Path(ml_dir), Path(out_dir)
    dataset = load_movielens(ml_dir, seed=seed, max_users=max_users)
    meta = read_meta(ml_dir, dataset.user_ids, dataset.item_ids)
    texts = texts_from_training(dataset.train, low_ratings(ml_dir, dataset.user_ids,
                                                           dataset.item_ids), meta)
    if not isinstance(encoder, text_mod.TextEncoder):
        encoder = text_mod.TextEncoder(encoder)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, mat in (("trn", dataset.train), ("val", dataset.valid), ("tst", dataset.test)):
        sp.save_npz(out_dir / f"{split}_mat.npz", mat.tocoo())
    for name in TEXT_FILES:
        ids = dataset.user_ids if name.startswith("user") else dataset.item_ids
        _write_jsonl(out_dir / f"{name}.jsonl", ids, texts[name])
    embed = {name: encoder.encode(texts[name], batch_size=batch_size, progress=progress)
             for name in TEXT_FILES}
    text_mod.write_embeddings(out_dir, "profile", embed["user_profiles"], embed["item_profiles"])
    text_mod.write_embeddings(out_dir, "intent", embed["user_intents"], embed["item_intents"])
    return out_dir
