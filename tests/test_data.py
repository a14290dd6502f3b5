"""Readers, the allow-list unpickler, the synthetic dataset and the BPR sampler."""
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from irllrec_fast import testing
from irllrec_fast.data import (BPRSampler, Dataset, DatasetError, detect_format, load_folder,
                               load_irllrec, load_lightgcn, load_movielens, make_synthetic,
                               per_user_split, safe_pickle)
from irllrec_fast.data.dataset import TextEmbeddings, interaction_matrix


# ---------------------------------------------------------------------- pickles
class _RunsCode:
    """A pickle of this calls os.system when loaded by the standard unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "trn_mat.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"refusing to load (posix|nt|os)\.system"):
        safe_pickle.load(path)
    assert not marker.exists()
    # through a dataset folder it is a DatasetError naming the file
    with pytest.raises(DatasetError, match="trn_mat.pkl.*refusing"):
        load_irllrec(tmp_path)
    assert not marker.exists()


def test_pickle_of_other_objects_is_refused(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(safe_pickle.UnsafePickleError, match="expected a numpy array"):
        safe_pickle.load(path)
    path.write_bytes(pickle.dumps(np.array([object()], dtype=object)))
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.load(path)


def test_pickled_arrays_and_sparse_matrices_load(tmp_path):
    array = np.random.default_rng(0).standard_normal((4, 3))
    coo = sp.random(5, 6, density=0.4, random_state=0, format="coo")
    for obj in (array, coo, coo.tocsr()):
        path = tmp_path / "obj.pkl"
        path.write_bytes(pickle.dumps(obj))
        loaded = safe_pickle.load(path)
        if sp.issparse(obj):
            assert (loaded != obj).nnz == 0
        else:
            np.testing.assert_array_equal(loaded, obj)


def test_real_pickle_equals_npz():
    pkl = testing.real_interactions_path("amazon").with_suffix(".pkl")
    if not pkl.is_file():
        pytest.skip(f"real data absent: {pkl}")
    loaded = safe_pickle.load(pkl)
    reference = sp.load_npz(pkl.with_suffix(".npz"))
    assert loaded.shape == reference.shape and (loaded.tocsr() != reference.tocsr()).nnz == 0


# ---------------------------------------------------------------------- IRLLRec folders
def write_irllrec(folder, U=6, I=5, text=True, width=(4, 3)):
    folder.mkdir(exist_ok=True)
    train = sp.coo_matrix(([1.0] * 6, ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 0])), shape=(U, I))
    valid = sp.coo_matrix(([1.0] * 2, ([0, 1], [1, 2])), shape=(U, I))
    test = sp.coo_matrix(([1.0] * 2, ([2, 3], [3, 4])), shape=(U, I))
    for stem, mat in (("trn_mat", train), ("val_mat", valid), ("tst_mat", test)):
        sp.save_npz(folder / f"{stem}.npz", mat)
    if text:
        rng = np.random.default_rng(0)
        np.save(folder / "usr_emb_np.npy", rng.standard_normal((U, width[0])))
        np.save(folder / "itm_emb_np.npy", rng.standard_normal((I, width[0])))
        np.save(folder / "user_intent_emb_3.npy", rng.standard_normal((U, width[1])))
        (folder / "item_intent_emb_3.pkl").write_bytes(
            pickle.dumps(rng.standard_normal((I, width[1]))))
    return folder


def test_irllrec_folder_with_text(tmp_path):
    data = load_folder(write_irllrec(tmp_path / "toy"))
    assert data.name == "toy" and (data.num_users, data.num_items) == (6, 5)
    assert (data.train.nnz, data.valid.nnz, data.test.nnz) == (6, 2, 2)
    assert data.text.profile_user.shape == (6, 4) and data.text.intent_item.shape == (5, 3)
    assert detect_format(tmp_path / "toy") == "irllrec"


def test_irllrec_folder_problems(tmp_path):
    folder = write_irllrec(tmp_path / "a", text=False)
    assert load_irllrec(folder).text is None
    np.save(folder / "usr_emb_np.npy", np.zeros((6, 4)))
    with pytest.raises(DatasetError, match="incomplete text embeddings, missing itm_emb_np"):
        load_irllrec(folder)
    folder = write_irllrec(tmp_path / "b")
    np.save(folder / "itm_emb_np.npy", np.zeros((4, 4)))
    with pytest.raises(DatasetError,
                       match=r"profile_item \(itm_emb_np\) has 4 rows but the dataset has 5 items"):
        load_irllrec(folder)
    folder = write_irllrec(tmp_path / "c", text=False)
    sp.save_npz(folder / "val_mat.npz", sp.coo_matrix(([1.0], ([0], [0])), shape=(6, 5)))
    with pytest.raises(DatasetError, match="train and valid splits share 1 interactions"):
        load_irllrec(folder)
    sp.save_npz(folder / "val_mat.npz", sp.coo_matrix((6, 4)))
    with pytest.raises(DatasetError, match=r"valid split has shape \(6, 4\)"):
        load_irllrec(folder)
    (folder / "tst_mat.npz").unlink()
    with pytest.raises(DatasetError, match="missing tst_mat.npz"):
        load_irllrec(folder)
    (folder / "val_mat.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"val_mat.npz: not a .npz file"):
        load_irllrec(folder)


def test_real_irllrec_folder():
    folder = testing.real_interactions_path("movie").parent
    if not folder.is_dir():
        pytest.skip(f"real data absent: {folder}")
    data = load_folder(folder)
    assert (data.num_users, data.num_items) == (16994, 9370)
    assert (data.train.nnz, data.valid.nnz, data.test.nnz) == (134649, 16799, 16795)


# ---------------------------------------------------------------------- LightGCN folders
def _toy_lightgcn(folder):
    rng = np.random.default_rng(0)
    lines_train, lines_test = [], []
    for u in range(30):
        items = rng.choice(20, size=8, replace=False)
        lines_train.append(" ".join(map(str, [u, *items[:6]])))
        lines_test.append(" ".join(map(str, [u, *items[6:]])))
    (folder / "train.txt").write_text("\n".join(lines_train) + "\n")
    (folder / "test.txt").write_text("\n".join(lines_test) + "\n")
    return folder


def test_lightgcn_folder(tmp_path):
    _toy_lightgcn(tmp_path)  # 30 users, 6 training and 2 test items each out of 20
    assert detect_format(tmp_path) == "lightgcn"
    data = load_lightgcn(tmp_path, seed=1)
    assert (data.num_users, data.num_items) == (30, 20)
    assert data.train.nnz + data.valid.nnz == 180 and data.test.nnz == 60
    assert data.valid.nnz > 0 and (np.diff(data.train.indptr) > 0).all()
    again = load_lightgcn(tmp_path, seed=1)
    assert (again.valid != data.valid).nnz == 0  # seeded
    (tmp_path / "test.txt").write_text("0 1 x\n")
    with pytest.raises(DatasetError, match=r"test.txt:1: expected integer ids"):
        load_lightgcn(tmp_path)


# ---------------------------------------------------------------------- MovieLens
def test_movielens_toy(tmp_path):
    rows = [(u, i, 5 if (u + i) % 3 else 2, 0) for u in range(1, 21) for i in range(1, 16)]
    (tmp_path / "u.data").write_text("\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    data = load_movielens(tmp_path, seed=0)
    positives = sum(1 for r in rows if r[2] >= 4)
    assert data.train.nnz + data.valid.nnz + data.test.nnz == positives
    assert (np.diff(data.train.indptr) > 0).all() and (data.train.getnnz(0) > 0).all()
    assert data.item_ids.tolist() == list(range(1, 16))


def test_real_movielens_split():
    folder = testing.shared_dir() / "data" / "ml-100k"
    if not (folder / "u.data").is_file():
        pytest.skip(f"real data absent: {folder}")
    data = load_folder(folder)
    raw = np.loadtxt(folder / "u.data", dtype=np.int64)
    positives = raw[raw[:, 2] >= 4]
    total = data.train.nnz + data.valid.nnz + data.test.nnz
    assert total == len(positives)
    assert data.num_users == len(np.unique(positives[:, 0]))
    assert data.num_items == len(np.unique(positives[:, 1]))
    # every user and every item keeps a training interaction; the split is about 3:1:1
    assert (data.train.getnnz(1) > 0).all() and (data.train.getnnz(0) > 0).all()
    assert 0.58 < data.train.nnz / total < 0.62
    assert abs(data.valid.nnz - data.test.nnz) < 0.02 * total
    again = load_folder(folder)
    assert (again.test != data.test).nnz == 0


def test_per_user_split_keeps_everyone_in_training():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 200, 3000)
    items = rng.integers(0, 300, 3000)
    key = np.unique(users * 300 + items)
    users, items = key // 300, key % 300
    assign = per_user_split(users, items, 200, 300, (3, 1, 1), seed=3)
    train = assign == 0
    assert set(users[train]) == set(users) and set(items[train]) == set(items)
    assert 0.55 < train.mean() < 0.7
    np.testing.assert_array_equal(assign, per_user_split(users, items, 200, 300, (3, 1, 1), 3))


def test_detect_format_says_what_it_expected(tmp_path):
    with pytest.raises(DatasetError, match="trn_mat.npz .* train.txt .* u.data"):
        detect_format(tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        load_folder(tmp_path / "nothing")


# ---------------------------------------------------------------------- synthetic
@pytest.mark.parametrize("argument, value, message", [
    ("num_users", 0, "num_users must be >= 1, got 0"),
    ("num_items", 11, "num_items must be >= 12, got 11"),
    ("num_intents", 0, "num_intents must be >= 1, got 0"),
    ("noise", 1.5, r"noise must lie in \[0, 1\], got 1.5"),
    ("intents_per_user", 0, "intents_per_user must be > 0, got 0"),
])
def test_synthetic_arguments_are_checked_by_name(argument, value, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic(**{argument: value})


def test_synthetic_dataset_properties():
    data = make_synthetic(num_users=400, num_items=300, num_intents=8, seed=5)
    again = make_synthetic(num_users=400, num_items=300, num_intents=8, seed=5)
    assert (data.train != again.train).nnz == 0
    np.testing.assert_array_equal(data.text.profile_item, again.text.profile_item)
    assert (data.train.getnnz(1) > 0).all() and (data.train.getnnz(0) > 0).all()
    # power-law popularity: the top 10% of items hold far more than 10% of the interactions
    full = data.train + data.valid + data.test
    popularity = np.sort(full.getnnz(0))[::-1]
    assert popularity[: len(popularity) // 10].sum() > 0.3 * popularity.sum()
    # the text carries the interactions' structure: items a user interacted with are closer to
    # the user's profile than random items are
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit(data.text.profile_user) @ unit(data.text.profile_item).T
    coo = full.tocoo()
    assert sim[coo.row, coo.col].mean() > sim.mean() + 0.2



def test_synthetic_interactions_per_user_follow_mean_interactions():
    """A power law from 3 up (so 3 is the commonest count) with a mean near `mean_interactions`
    (dropping duplicate draws and the cap at a quarter of the items lose a little)."""
    for mean in (12.0, 20.0):
        data = make_synthetic(num_users=400, num_items=300, num_intents=8, seed=5,
                              mean_interactions=mean)
        counts = (data.train + data.valid + data.test).getnnz(1)
        assert np.bincount(counts).argmax() == 3 and (counts < 3).mean() < 0.01
        assert 0.8 * mean < counts.mean() < 1.05 * mean


def test_synthetic_text_without_noise_is_the_planted_structure():
    """text_noise = 0: an item's profile and intent texts both name its intent; a user's profile
    is its mixture of intents, its intent text the same mixture minus 0.3 of the intent it likes
    least ("dislikes")."""
    C = 8
    data = make_synthetic(num_users=400, num_items=300, num_intents=C, text_noise=0.0, seed=5)
    text = data.text
    profile_dirs, by_profile = np.unique(text.profile_item, axis=0, return_inverse=True)
    intent_dirs, by_intent = np.unique(text.intent_item, axis=0, return_inverse=True)
    assert len(profile_dirs) == len(intent_dirs) == C
    # the same partition of the items, whatever order np.unique gave each
    pairs = set(zip(by_profile.ravel().tolist(), by_intent.ravel().tolist()))
    assert len(pairs) == C
    to_intent = dict(pairs)
    intent_dirs = intent_dirs[[to_intent[c] for c in range(C)]]
    mixture = text.profile_user @ np.linalg.pinv(profile_dirs)
    np.testing.assert_allclose(mixture.sum(1), 1.0, atol=1e-4)
    assert mixture.min() > -1e-4
    shift = text.intent_user @ np.linalg.pinv(intent_dirs) - mixture
    disliked = shift.argmin(1)
    np.testing.assert_allclose(shift[np.arange(len(shift)), disliked], -0.3, atol=1e-4)
    shift[np.arange(len(shift)), disliked] = 0
    np.testing.assert_allclose(shift, 0.0, atol=1e-4)
    least = mixture[np.arange(len(mixture)), disliked]
    assert (least <= mixture.min(1) + 2e-3).all()


# ---------------------------------------------------------------------- sampler
def test_sampler_never_returns_a_training_item_and_covers_every_interaction():
    data = make_synthetic(num_users=300, num_items=200, num_intents=6, seed=1)
    sampler = BPRSampler(data.train, batch_size=500, seed=0)
    batches = list(sampler.epoch())
    assert len(batches) == len(sampler) == -(-data.train.nnz // 500)
    users = np.concatenate([b.users.numpy() for b in batches])
    pos = np.concatenate([b.pos.numpy() for b in batches])
    neg = np.concatenate([b.neg.numpy() for b in batches])
    assert data.train[users, pos].min() == 1  # positives are training interactions ...
    assert np.asarray(data.train[users, neg]).max() == 0  # ... negatives never are
    seen = sp.csr_matrix((np.ones(users.size), (users, pos)), shape=data.train.shape)
    assert (seen != data.train).nnz == 0 and seen.max() == 1  # each interaction exactly once


def test_sampler_is_uniform_over_the_complement():
    # user 0 has items {1, 3}; its negatives must be uniform over {0, 2, 4, 5}
    train = sp.csr_matrix(([1.0] * 2 + [1.0] * 5, ([0, 0] + [1] * 5, [1, 3, 0, 1, 2, 3, 4])),
                          shape=(2, 6))
    sampler = BPRSampler(train, seed=0)
    counts = np.zeros((2, 6))
    for _ in range(4000):
        neg = sampler.sample_negatives()
        np.add.at(counts, (sampler.users, neg), 1)
    np.testing.assert_array_equal(counts[0, [1, 3]], 0)
    np.testing.assert_allclose(counts[0, [0, 2, 4, 5]] / counts[0].sum(), 0.25, atol=0.02)
    assert counts[1, :5].sum() == 0 and counts[1, 5] == 5 * 4000  # its only free item


def test_sampler_state_round_trip_and_seed():
    data = make_synthetic(num_users=100, num_items=80, num_intents=4, seed=2)
    a, b = BPRSampler(data.train, 64, seed=9), BPRSampler(data.train, 64, seed=9)
    state = a.state_dict()
    first = [x.neg for x in a.epoch()]
    b.load_state_dict(state)
    assert all((x.neg == y).all() for x, y in zip(b.epoch(), first))


def test_sampler_rejects_a_user_with_every_item():
    train = sp.csr_matrix(np.ones((2, 3)))
    with pytest.raises(DatasetError, match="interacted with every item"):
        BPRSampler(train)


def test_sampler_seed_draws_and_state_resumes_the_stream():
    data = make_synthetic(num_users=100, num_items=80, num_intents=4, seed=2)
    a, b, c = (BPRSampler(data.train, 64, seed=s) for s in (9, 9, 10))
    neg_a, neg_b, neg_c = (np.concatenate([x.neg.numpy() for x in s.epoch()]) for s in (a, b, c))
    np.testing.assert_array_equal(neg_a, neg_b)  # one seed, one stream
    assert (neg_a != neg_c).mean() > 0.5  # another seed, other draws
    state = a.state_dict()
    following = [x.neg.numpy() for x in a.epoch()]
    resumed = BPRSampler(data.train, 64, seed=123)  # the seed is overridden by the state
    resumed.load_state_dict(state)
    for x, y in zip(resumed.epoch(), following):
        np.testing.assert_array_equal(x.neg.numpy(), y)


def test_sampler_shuffles_the_triples_of_each_epoch():
    data = make_synthetic(num_users=100, num_items=80, num_intents=4, seed=2)
    sampler = BPRSampler(data.train, 10**6, seed=0)
    first, second = next(sampler.epoch()), next(sampler.epoch())
    users = first.users.numpy()
    assert (np.diff(users) < 0).any()  # not the CSR (user-sorted) order
    assert not np.array_equal(users, second.users.numpy())  # a new order each epoch


def test_sampler_reads_stored_zeros_and_duplicates_like_the_dataset():
    # user 0: item 1 stored twice, item 3, and a stored 0 at item 2 (no interaction);
    # user 1: items 0..4. P = 2 + 5 = 7 interactions.
    train = sp.csr_matrix((np.array([1.0, 1.0, 0.0, 1.0, 1, 1, 1, 1, 1]),
                           np.array([1, 1, 2, 3, 0, 1, 2, 3, 4]), np.array([0, 4, 9])),
                          shape=(2, 6))
    train.has_canonical_format = False
    sampler = BPRSampler(train, batch_size=3, seed=0)  # 7 = 2 * 3 + 1: a last batch of one
    assert sampler.num_interactions == 7 and len(sampler) == 3
    batches = list(sampler.epoch())
    assert [b.users.numel() for b in batches] == [3, 3, 1]
    pairs = sorted(zip(np.concatenate([b.users.numpy() for b in batches]).tolist(),
                       np.concatenate([b.pos.numpy() for b in batches]).tolist()))
    assert pairs == [(0, 1), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4)]
    counts = np.zeros((2, 6))
    for _ in range(3000):
        np.add.at(counts, (sampler.users, sampler.sample_negatives()), 1)
    np.testing.assert_array_equal(counts[0, [1, 3]], 0)
    # item 2 (stored zero) is a negative like 0, 4 and 5
    np.testing.assert_allclose(counts[0, [0, 2, 4, 5]] / counts[0].sum(), 0.25, atol=0.02)
    assert counts[1, :5].sum() == 0


def test_sampler_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        BPRSampler(sp.csr_matrix(np.eye(2, 3)), batch_size=0)


def test_per_user_split_counts_are_the_rounded_shares():
    """Per user: round(n * r_valid) valid and round(n * r_test) test items (half up), at least one
    kept in training. Users 100 + i hold item i alone (always training), so no item needs to be
    moved back and the counts are exact."""
    ns = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 7, 6: 8, 7: 10}
    users = [u for u, n in ns.items() for _ in range(n)] + [100 + i for i in range(10)]
    items = [i for n in ns.values() for i in range(n)] + list(range(10))
    users, items = np.array(users), np.array(items)
    expected_311 = {1: (1, 0, 0), 2: (2, 0, 0), 3: (1, 1, 1), 4: (2, 1, 1), 5: (3, 1, 1),
                    7: (5, 1, 1), 8: (4, 2, 2), 10: (6, 2, 2)}
    # ratios 1:1:1: two items would both be held out; one goes back to training
    expected_111 = {1: (1, 0, 0), 2: (1, 0, 1), 3: (1, 1, 1), 4: (2, 1, 1), 5: (1, 2, 2),
                    7: (3, 2, 2), 8: (2, 3, 3), 10: (4, 3, 3)}
    for ratios, expected in (((3, 1, 1), expected_311), ((1, 1, 1), expected_111)):
        for seed in (0, 1):
            assign = per_user_split(users, items, 110, 10, ratios, seed)
            for u, n in ns.items():
                got = tuple(int((assign[users == u] == s).sum()) for s in range(3))
                assert got == expected[n], (ratios, seed, u)
            assert (assign[users >= 100] == 0).all()


def test_split_seed_changes_the_split():
    rng = np.random.default_rng(0)
    key = np.unique(rng.integers(0, 200, 3000) * 300 + rng.integers(0, 300, 3000))
    users, items = key // 300, key % 300
    a = per_user_split(users, items, 200, 300, (3, 1, 1), seed=3)
    b = per_user_split(users, items, 200, 300, (3, 1, 1), seed=4)
    assert (a != b).mean() > 0.2


def _toy_movielens(folder):
    rows = [(u, i, 5 if (u + i) % 3 else 2, 0) for u in range(1, 21) for i in range(1, 16)]
    (folder / "u.data").write_text("\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    return folder


@pytest.mark.parametrize("make", [_toy_movielens, _toy_lightgcn])
def test_readers_split_with_the_given_seed(tmp_path, make):
    folder = make(tmp_path)
    split = "valid" if make is _toy_lightgcn else "test"
    a, b, a2 = (load_folder(folder, seed=s) for s in (0, 1, 0))
    assert (getattr(a, split) != getattr(a2, split)).nnz == 0
    assert (getattr(a, split) != getattr(b, split)).nnz > 0


def test_max_users_keeps_the_smallest_user_ids(tmp_path):
    data = load_movielens(_toy_movielens(tmp_path), max_users=5)
    assert data.num_users == 5 and data.user_ids.tolist() == [1, 2, 3, 4, 5]


def test_lightgcn_ids_seen_only_in_test_are_counted(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1\n1 1 2\n")
    (tmp_path / "valid.txt").write_text("0 2\n")
    (tmp_path / "test.txt").write_text("1 3\n2 4\n")  # user 2 and items 3, 4 only in test
    data = load_lightgcn(tmp_path)
    assert (data.num_users, data.num_items) == (3, 5)
    assert sorted(zip(*data.test.nonzero())) == [(1, 3), (2, 4)]


def test_lightgcn_holds_out_valid_fraction_of_each_user(tmp_path):
    # every user has the same 6 items: round(0.1 * 6) = 1 validation item each, 5 in training
    (tmp_path / "train.txt").write_text("".join(f"{u} 0 1 2 3 4 5\n" for u in range(30)))
    (tmp_path / "test.txt").write_text("".join(f"{u} 6\n" for u in range(30)))
    data = load_lightgcn(tmp_path, seed=1)
    assert (data.valid.getnnz(1) == 1).all() and (data.train.getnnz(1) == 5).all()


def test_npz_is_preferred_to_a_pickle_of_the_same_name(tmp_path):
    folder = write_irllrec(tmp_path / "toy", text=False)
    marker = tmp_path / "pwned"
    (folder / "trn_mat.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    data = load_irllrec(folder)
    assert data.train.nnz == 6 and not marker.exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_npy_and_npz_never_unpickle(tmp_path, suffix):
    folder = write_irllrec(tmp_path / "toy")
    marker = tmp_path / "pwned"
    payload = np.array([_RunsCode(marker)], dtype=object)
    (folder / "usr_emb_np.npy").unlink()
    if suffix == ".npy":
        np.save(folder / "usr_emb_np.npy", payload, allow_pickle=True)
    else:
        np.savez(folder / "usr_emb_np.npz", payload)
    with pytest.raises(DatasetError, match="usr_emb_np"):
        load_irllrec(folder)
    assert not marker.exists()


def test_text_dir_supplies_the_embeddings(tmp_path):
    folder = write_irllrec(tmp_path / "toy", text=False)
    text_dir = write_irllrec(tmp_path / "text", text=True)
    data = load_folder(folder, text_dir=text_dir)
    assert data.text is not None and data.text.intent_item.shape == (5, 3)


def _mat(pairs, shape=(3, 4)):
    rows, cols = zip(*pairs) if pairs else ((), ())
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def _text(U=3, I=4, **change):
    rng = np.random.default_rng(0)
    arrays = dict(profile_user=rng.standard_normal((U, 4)), profile_item=rng.standard_normal((I, 4)),
                  intent_user=rng.standard_normal((U, 3)), intent_item=rng.standard_normal((I, 3)))
    arrays.update(change)
    return TextEmbeddings(**arrays)


def test_dataset_rejects_overlaps_an_empty_train_and_bad_text():
    train, valid, test = _mat([(0, 0), (1, 1)]), _mat([(0, 1)]), _mat([(2, 2)])
    Dataset("ok", train, valid, test, text=_text())
    with pytest.raises(DatasetError, match="valid and test splits share 1"):
        Dataset("x", train, valid, _mat([(0, 1)]))
    with pytest.raises(DatasetError, match="training split is empty"):
        Dataset("x", _mat([]), valid, test)
    nan = _text().profile_item.copy()
    nan[1, 2] = np.nan
    bad = {"NaN": dict(profile_item=nan),
           "differ in width": dict(intent_item=np.zeros((4, 5))),
           "must hold floats": dict(intent_user=np.zeros((3, 3), dtype=np.int64)),
           "has 2 rows": dict(profile_user=np.zeros((2, 4)))}
    for message, change in bad.items():
        with pytest.raises(DatasetError, match=message):
            Dataset("x", train, valid, test, text=_text(**change))


def test_dataset_splits_are_binary():
    """Any nonzero is one interaction (a rating 5 becomes 1); a stored 0 is none."""
    train = sp.csr_matrix((np.array([5.0, 0.0, 3.0]), ([0, 0, 1], [0, 1, 1])), shape=(3, 4))
    data = Dataset("x", train, _mat([]), _mat([(0, 1)]))  # (0, 1) is no training interaction
    assert data.train.nnz == 2 and data.train.data.tolist() == [1.0, 1.0]
    assert data.train.dtype == np.float32


def test_interaction_ids_are_checked_against_the_shape():
    with pytest.raises(DatasetError, match=r"item ids must lie in \[0, 5\)"):
        interaction_matrix([0], [5], 2, 5)
    with pytest.raises(DatasetError, match=r"user ids must lie in \[0, 2\)"):
        interaction_matrix([-1], [0], 2, 5)


def test_pickled_object_arrays_are_refused_even_of_plain_values(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object)))
    with pytest.raises(safe_pickle.UnsafePickleError, match="object arrays"):
        safe_pickle.load(path)


class _CallsNumpy:
    """Pickles as a call of numpy.zeros: a numpy callable that is not on the allow-list."""

    def __reduce__(self):
        return np.zeros, (3,)


def test_only_the_listed_numpy_names_are_resolved(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(_CallsNumpy()))
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"refusing to load numpy.*\.zeros"):
        safe_pickle.load(path)


def test_synthetic_split_is_3_1_1():
    data = make_synthetic(num_users=400, num_items=300, num_intents=8, seed=5)
    total = data.train.nnz + data.valid.nnz + data.test.nnz
    assert 0.55 < data.train.nnz / total < 0.65
    assert 0.15 < data.valid.nnz / total < 0.25 and 0.15 < data.test.nnz / total < 0.25
