"""Ranking metrics: hand-computed cases, a naive per-user loop, masking and tie-breaking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import evaluate_ranking, masked_topk, ranking_metrics


def test_hand_computed_case() -> None:
    # One user, truth {1, 4, 7}; ranked list [4, 0, 1, 9, 7]: hits at ranks 1, 3, 5.
    truth = torch.zeros(1, 10, dtype=torch.bool)
    truth[0, [1, 4, 7]] = True
    topk = torch.tensor([[4, 0, 1, 9, 7]])
    m = ranking_metrics(topk, truth, ks=(2, 5))
    assert m["recall@2"].item() == pytest.approx(1 / 3)
    assert m["recall@5"].item() == pytest.approx(1.0)
    assert m["precision@5"].item() == pytest.approx(3 / 5)
    assert m["hit_rate@2"].item() == 1.0
    # NDCG@2: DCG = 1/log2(2); IDCG uses min(3, 2) = 2 hits.
    assert m["ndcg@2"].item() == pytest.approx(1.0 / (1.0 + 1 / math.log2(3)))
    dcg5 = 1 + 1 / math.log2(4) + 1 / math.log2(6)
    idcg5 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@5"].item() == pytest.approx(dcg5 / idcg5)


def test_no_hit_gives_zero() -> None:
    truth = torch.zeros(1, 6, dtype=torch.bool)
    truth[0, 5] = True
    m = ranking_metrics(torch.tensor([[0, 1, 2]]), truth, ks=(3,))
    assert m["recall@3"].item() == 0.0 and m["ndcg@3"].item() == 0.0 and m["hit_rate@3"].item() == 0.0


def _naive(scores: np.ndarray, truth: list[set[int]], exclude: list[set[int]], k: int) -> dict[str, float]:
    rec, ndcg, n = 0.0, 0.0, 0
    for u, t in enumerate(truth):
        if not t:
            continue
        n += 1
        ranked = [i for i in sorted(range(scores.shape[1]), key=lambda i: (-scores[u, i], i)) if i not in exclude[u]][:k]
        hits = [1.0 if i in t else 0.0 for i in ranked]
        rec += sum(hits) / len(t)
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(t), k)))
        ndcg += dcg / idcg
    return {"recall": rec / n, "ndcg": ndcg / n}


@pytest.mark.parametrize("integer_scores", [False, True])
def test_evaluate_ranking_matches_naive_loop(integer_scores: bool) -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, k = 23, 40, 5
    scores = rng.integers(0, 6, (n_users, n_items)) if integer_scores else rng.normal(size=(n_users, n_items))
    train_pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.2]
    test_pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.1 and (u, i) not in set(train_pairs)]
    tr = InteractionMatrix.from_pairs(*map(np.array, zip(*train_pairs, strict=True)), n_users, n_items)
    te = InteractionMatrix.from_pairs(*map(np.array, zip(*test_pairs, strict=True)), n_users, n_items)
    st = torch.as_tensor(scores)
    got = evaluate_ranking(lambda users: st[users], te, exclude=[tr], ks=(k,), batch_size=7)
    truth = [{i for (uu, i) in test_pairs if uu == u} for u in range(n_users)]
    excl = [{i for (uu, i) in train_pairs if uu == u} for u in range(n_users)]
    want = _naive(scores, truth, excl, k)
    assert got["recall@5"] == pytest.approx(want["recall"])
    assert got["ndcg@5"] == pytest.approx(want["ndcg"])
    assert got["users"] == sum(1 for t in truth if t)


def test_masked_items_never_returned() -> None:
    scores = torch.arange(10, dtype=torch.float32).repeat(3, 1)  # item 9 best
    exclude = torch.zeros(3, 10, dtype=torch.bool)
    exclude[:, 9] = True
    exclude[1, 8] = True
    top = masked_topk(scores, exclude, 3)
    assert top[0].tolist() == [8, 7, 6]
    assert top[1].tolist() == [7, 6, 5]


def test_integer_ties_broken_by_lower_index() -> None:
    scores = torch.tensor([[3, 5, 5, 1, 5, 3]])
    assert masked_topk(scores, None, 4).tolist() == [[1, 2, 4, 0]]


def test_interaction_matrix_dense_rows_and_dedup() -> None:
    m = InteractionMatrix.from_pairs(np.array([0, 0, 2, 0]), np.array([3, 1, 0, 3]), 3, 4)
    assert m.nnz == 3
    assert m.row_lengths().tolist() == [2, 0, 1]
    assert m.dense_rows(torch.tensor([2, 0])).int().tolist() == [[1, 0, 0, 0], [0, 1, 0, 1]]
    with pytest.raises(ValueError, match="item index out of range"):
        InteractionMatrix.from_pairs(np.array([0]), np.array([4]), 3, 4)
