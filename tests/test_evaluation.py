"""Full-ranking Recall/NDCG@K on a case computed by hand (IRLLREC_SPEC.md section 5)."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from irllrec_fast.evaluation import evaluate, format_table


class FixedScores(torch.nn.Module):
    """A 'model' whose scores are a fixed matrix."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.nn.Parameter(torch.tensor(scores, dtype=torch.float32))
        self.calls = 0

    @property
    def device(self):
        return self.scores.device

    def full_sort_predict(self, users):
        self.calls += 1
        return self.scores[users].detach().clone()


def matrix(rows, num_users=4, num_items=5):
    users = [u for u, items in rows.items() for _ in items]
    items = [i for its in rows.values() for i in its]
    return sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(num_users, num_items))


SCORES = [[0.9, 0.8, 0.7, 0.6, 0.5],   # user 0: train {0}, test {2, 4}
          [0.5, 0.4, 0.3, 0.2, 0.1],   # user 1: no test items -> not evaluated
          [0.1, 0.2, 0.3, 0.4, 0.5],   # user 2: train {4} (the top score), test {3}
          [0.5, 0.1, 0.4, 0.3, 0.2]]   # user 3: no train, test {0, 1, 2, 3}
TRAIN = matrix({0: [0], 1: [1], 2: [4]})
TEST = matrix({0: [2, 4], 2: [3], 3: [0, 1, 2, 3]})


def by_hand():
    g = 1 / math.log2(3)  # gain of rank 2; rank 1 gains 1, rank 3 gains 1/2
    # user 0 ranks 1, 2, 3 (0 masked): hits 0, 1, 0 of 2 test items
    # user 2 ranks 3, 2, 1 (4 masked): hits 1, 0, 0 of 1
    # user 3 ranks 0, 2, 3: hits 1, 1, 1 of 4 (recall is not capped by K)
    recall = {1: (0 + 1 + 1 / 4) / 3, 2: (1 / 2 + 1 + 2 / 4) / 3, 3: (1 / 2 + 1 + 3 / 4) / 3}
    ndcg = {1: (0 + 1 + 1) / 3,
            2: (g / (1 + g) + 1 + 1) / 3,
            3: (g / (1 + g) + 1 + (1 + g + 0.5) / (1 + g + 0.5)) / 3}
    return recall, ndcg


@pytest.mark.parametrize("batch_size", [1, 2, 1024])
def test_hand_computed_metrics(batch_size):
    model = FixedScores(SCORES)
    result = evaluate(model, TEST, TRAIN, ks=(1, 2, 3), batch_size=batch_size)
    recall, ndcg = by_hand()
    assert result["users"] == 3
    for k in (1, 2, 3):
        assert result[f"recall@{k}"] == pytest.approx(recall[k], abs=1e-12)
        assert result[f"ndcg@{k}"] == pytest.approx(ndcg[k], abs=1e-12)
    assert model.calls == -(-3 // batch_size)


def test_k_larger_than_the_item_count():
    result = evaluate(FixedScores(SCORES), TEST, TRAIN, ks=(5, 10, 20))
    # every test item is ranked within 5 (masked items come last), so recall is 1 and
    # NDCG@10 == NDCG@20 == NDCG@5
    for k in (5, 10, 20):
        assert result[f"recall@{k}"] == pytest.approx(1.0)
    assert result["ndcg@10"] == pytest.approx(result["ndcg@5"])
    assert result["ndcg@20"] == pytest.approx(result["ndcg@5"])
    assert "recall" in format_table(result)


def test_training_items_are_never_recommended():
    scores = np.random.default_rng(0).random((50, 40))
    train = sp.random(50, 40, density=0.3, random_state=0, format="csr")
    train.data[:] = 1
    scores[train.nonzero()] += 10  # training items have the highest raw scores
    test = sp.csr_matrix(((train.toarray() == 0) & (np.random.default_rng(1).random((50, 40)) < 0.1))
                         .astype(float))
    result = evaluate(FixedScores(scores), test, train, ks=(5,))
    # were training items ranked, hits would be 0; without them the test items compete only
    # among non-training items, so some are found
    assert result["recall@5"] > 0.05


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="same shape"):
        evaluate(FixedScores(SCORES), TEST[:, :4], TRAIN)


def test_stored_zeros_are_not_interactions_and_counts_are_binary():
    """A stored 0 is no interaction, a rating of 5 or a duplicate entry is one (spec section 5)."""
    coo = TEST.tocoo()
    # ratings of 5, and a stored 0 for user 1, who still has nothing to evaluate
    test = sp.csr_matrix((np.append(5 * coo.data, 0), (np.append(coo.row, 1),
                                                      np.append(coo.col, 0))), shape=TEST.shape)
    assert test.nnz == TEST.nnz + 1
    train = sp.csr_matrix((np.ones(4), ([0, 0, 1, 2], [0, 0, 1, 4])), shape=TRAIN.shape)
    train.has_canonical_format = False  # (0, 0) twice, not summed
    result = evaluate(FixedScores(SCORES), test, train, ks=(1, 2, 3))
    recall, ndcg = by_hand()
    assert result["users"] == 3
    for k in (1, 2, 3):
        assert result[f"recall@{k}"] == pytest.approx(recall[k], abs=1e-12)
        assert result[f"ndcg@{k}"] == pytest.approx(ndcg[k], abs=1e-12)


def test_ks_must_be_positive():
    """K = 0 would divide by an IDCG read from the wrong end of the table; it is refused."""
    with pytest.raises(ValueError, match="ks must be positive"):
        evaluate(FixedScores(SCORES), TEST, TRAIN, ks=(0, 5))


class TrainingModeScores(FixedScores):
    """Scores that depend on the mode, as with dropout: only eval-mode scores are the real ones."""

    def full_sort_predict(self, users):
        scores = super().full_sort_predict(users)
        return -scores if self.training else scores


def test_the_model_is_ranked_in_eval_mode():
    model = TrainingModeScores(SCORES)
    model.train()
    result = evaluate(model, TEST, TRAIN, ks=(1, 2, 3))
    recall, ndcg = by_hand()
    assert not model.training
    for k in (1, 2, 3):
        assert result[f"recall@{k}"] == pytest.approx(recall[k], abs=1e-12)
        assert result[f"ndcg@{k}"] == pytest.approx(ndcg[k], abs=1e-12)
