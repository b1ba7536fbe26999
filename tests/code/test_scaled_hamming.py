"""The certified 1-bit score index (hqgnn.scaled_hamming): equal to the brute-force score
ranking item for item, with banned items, short catalogs and failed certificates."""

from __future__ import annotations

import numpy as np
import pytest

from hqgnn.codes import CodeTable, hamming
from hqgnn.retrieval import Retriever
from hqgnn.scaled_hamming import ScaledHammingIndex


def codes(n: int, dim: int, seed: int, spread: float = 1.0) -> CodeTable:
    """``n`` random sign codes with log-normal scales (``spread``: std of the log)."""
    rng = np.random.default_rng(seed)
    values = rng.choice([-1, 1], size=(n, dim))
    return CodeTable.from_values(values, np.exp(rng.normal(0.0, spread, n)).astype(np.float32), 1)


def brute_force(users: CodeTable, items: CodeTable, k: int, banned: list[np.ndarray]) -> list[list[int]]:
    """Sort every item by (−score, index) in numpy, scores as float32 ``(d − 2H) * s_i``."""
    ham = hamming(users.packed, items.packed)
    out = []
    for r in range(len(users)):
        score = (np.float32(users.dim) - np.float32(2) * ham[r].astype(np.float32)) * items.scale
        score[banned[r]] = -np.inf
        order = np.lexsort((np.arange(len(items)), -score))
        out.append([int(j) for j in order[:k] if np.isfinite(score[j])])
    return out


@pytest.mark.parametrize(("buckets", "oversample", "spread"), [(16, 2.0, 1.0), (4, 1.0, 0.3), (1, 1.0, 2.0), (64, 1.5, 0.05)])
def test_search_equals_the_brute_force_score_ranking(buckets: int, oversample: float, spread: float) -> None:
    users, items = codes(40, 64, seed=1), codes(3000, 64, seed=2, spread=spread)
    rng = np.random.default_rng(3)
    banned = [rng.choice(len(items), size=rng.integers(0, 200), replace=False) for _ in range(len(users))]
    index = ScaledHammingIndex(items.packed, items.scale, 64, buckets=buckets, oversample=oversample)
    got, scores = index.search(users.packed, 20, banned)
    assert got.tolist() == brute_force(users, items, 20, banned)
    assert np.all(np.diff(scores, axis=1) <= 0), "scores must come best first"
    for r in range(len(users)):
        assert not set(got[r].tolist()) & set(banned[r].tolist())


def test_one_round_certifies_most_queries_with_log_scale_buckets() -> None:
    users, items = codes(64, 64, seed=4), codes(20000, 64, seed=5, spread=0.5)
    index = ScaledHammingIndex(items.packed, items.scale, 64, buckets=16, oversample=1.0, rounds=1)
    got, _ = index.search(users.packed, 50)
    assert index.last_certified >= 0.9, index.last_certified
    assert got.tolist() == brute_force(users, items, 50, [np.empty(0, np.int64)] * len(users))


def far_item_with_huge_scale() -> tuple[CodeTable, CodeTable]:
    """A user and 500 items where item 499 is 20 bits away (never among the Hamming nearest)
    but has 100x the scale of every other item: the true best by score."""
    items = codes(500, 64, seed=6, spread=0.01)
    user = items.values[:1].copy()
    values = items.values.copy()
    values[499] = user[0]
    values[499, :20] *= -1
    scale = items.scale.copy()
    scale[499] = 100.0
    return CodeTable.from_values(user, np.ones(1, np.float32), 1), CodeTable.from_values(values, scale, 1)


def test_an_item_outside_the_candidates_breaks_the_certificate_and_brute_force_finds_it() -> None:
    users, items = far_item_with_huge_scale()
    index = ScaledHammingIndex(items.packed, items.scale, 64, buckets=1, oversample=1.0, rounds=1)
    got, _ = index.search(users.packed, 5)
    assert index.last_certified == 0.0
    assert got[0, 0] == 499
    assert got.tolist() == brute_force(users, items, 5, [np.empty(0, np.int64)])


def test_wider_rounds_find_the_far_item_without_brute_force() -> None:
    users, items = far_item_with_huge_scale()
    index = ScaledHammingIndex(items.packed, items.scale, 64, buckets=1, oversample=1.0, rounds=6)
    got, _ = index.search(users.packed, 5)
    assert index.last_certified == 1.0
    assert got.tolist() == brute_force(users, items, 5, [np.empty(0, np.int64)])


def test_fewer_allowed_items_than_k_pad_with_minus_one() -> None:
    users, items = codes(3, 64, seed=7), codes(30, 64, seed=8)
    banned = [np.arange(25), np.arange(30), np.empty(0, np.int64)]
    got, scores = ScaledHammingIndex(items.packed, items.scale, 64, buckets=4).search(users.packed, 10, banned)
    assert (got[0, 5:] == -1).all() and sorted(got[0, :5].tolist()) == list(range(25, 30))
    assert (got[1] == -1).all() and np.isneginf(scores[1]).all()
    assert (got[2] >= 0).all()


@pytest.mark.parametrize("bits", [1, 4, 32])
def test_retriever_topk_equals_the_full_score_matrix_ranking(bits: int) -> None:
    """Through the paths of large catalogs (item blocks, the 1-bit bucketed index)."""
    rng = np.random.default_rng(9)
    dim = 32
    if bits == 32:
        users = CodeTable.from_float(rng.normal(size=(10, dim)))
        items = CodeTable.from_float(rng.normal(size=(5000, dim)))
    else:
        lim = 1 if bits == 1 else 7
        pick = (lambda n: rng.choice([-1, 1], size=(n, dim))) if bits == 1 else (lambda n: rng.integers(-lim - 1, lim + 1, size=(n, dim)))
        users = CodeTable.from_values(pick(10), np.ones(10), bits)
        items = CodeTable.from_values(pick(5000), rng.uniform(0.5, 2.0, 5000), bits)
    r = Retriever(users, items, item_block=700, scaled_index_min_items=0)  # 1 bit: the bucketed index
    got, _ = r.topk(np.arange(10), 25, batch_size=4)
    full = r.scores(np.arange(10)).numpy()
    for u in range(10):
        assert got[u].tolist() == np.lexsort((np.arange(5000), -full[u]))[:25].tolist()
