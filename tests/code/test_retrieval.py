"""Retrieval from codes (hqgnn.retrieval): scores against dequantized embeddings, masking,
deterministic ties, FAISS Hamming top-K against a naive sort, HashGNN-style re-rank, scores that
do not depend on the batch a user is ranked in (the exact grid of float users)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
import torch

from hqgnn.codes import CodeTable
from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import exclusion_mask, masked_topk
from hqgnn.quant import quantize
from hqgnn.retrieval import (
    MIN_BLOCK,
    MIN_GRID_BITS,
    Retriever,
    exact_grid_bits,
    grid_slices,
    on_exact_grid,
    rerank_scores,
)


def tables(bits: int, n_users: int = 12, n_items: int = 90, dim: int = 64, seed: int = 0) -> tuple[CodeTable, CodeTable]:
    g = torch.Generator().manual_seed(seed)
    u, i = torch.randn(n_users, dim, generator=g), torch.randn(n_items, dim, generator=g)
    if bits == 32:
        return CodeTable.from_float(u.numpy()), CodeTable.from_float(i.numpy())
    qu, qi = quantize(u, bits), quantize(i, bits)
    return (CodeTable.from_values(qu.codes.numpy(), qu.scale.numpy(), bits),
            CodeTable.from_values(qi.codes.numpy(), qi.scale.numpy(), bits))


def naive_topk(scores: np.ndarray, k: int, banned: set[int] = frozenset(), larger_better: bool = True) -> list[int]:
    """Sort by (score, index) in plain Python."""
    key = (lambda j: (-scores[j], j)) if larger_better else (lambda j: (scores[j], j))
    return sorted((j for j in range(len(scores)) if j not in banned), key=key)[:k]


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 32])
def test_scores_equal_dequantized_inner_product_over_user_scale(bits: int) -> None:
    users, items = tables(bits)
    got = Retriever(users, items).scores(np.arange(len(users))).numpy()
    expected = (users.dequantize().astype(np.float64) @ items.dequantize().T.astype(np.float64)) / users.scale[:, None]
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_one_bit_scores_are_scaled_hamming_similarities() -> None:
    users, items = tables(1)
    r = Retriever(users, items, "score")
    h = Retriever(users, items, "hamming")
    ham = (users.values[:, None, :] != items.values[None, :, :]).sum(-1)
    assert np.array_equal(h.scores(np.arange(len(users))).numpy(), 64 - ham)
    assert np.allclose(r.scores(np.arange(len(users))).numpy(), (64 - 2 * ham) * items.scale[None, :], rtol=1e-6)


@pytest.mark.parametrize(("bits", "rank_by"), [(1, "score"), (1, "hamming"), (4, "score"), (32, "score")])
def test_topk_masks_seen_items_and_matches_naive_sort(bits: int, rank_by: str) -> None:
    users, items = tables(bits, seed=bits)
    n_u, n_i = len(users), len(items)
    rng = np.random.default_rng(3)
    pairs = [(u, i) for u in range(n_u) for i in rng.choice(n_i, size=7, replace=False)]
    train = InteractionMatrix.from_pairs(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), n_u, n_i)
    r = Retriever(users, items, rank_by)
    got, _ = r.topk(np.arange(n_u), 10, [train], batch_size=5)
    scores = r.scores(np.arange(n_u)).numpy()
    for u in range(n_u):
        banned = {p[1] for p in pairs if p[0] == u}
        assert not banned & set(got[u].tolist()), "a train item was recommended"
        assert got[u].tolist() == naive_topk(scores[u], 10, banned)


def test_ties_break_by_lower_item_index() -> None:
    # items 0..29 are three distinct codes repeated: every score ties ten times over
    rng = np.random.default_rng(4)
    base = rng.choice([-1, 1], size=(3, 64))
    items = CodeTable.from_values(np.repeat(base, 10, axis=0), np.ones(30), 1)
    users = CodeTable.from_values(base[:1], np.ones(1), 1)
    for rank_by in ("score", "hamming"):
        got, _ = Retriever(users, items, rank_by).topk(np.array([0]), 15)
        order = sorted(range(30), key=lambda j: (j // 10 != 0, np.sum(base[j // 10] != base[0]), j))
        assert got[0].tolist() == order[:15], rank_by


def test_float_topk_ties_are_exact_at_the_boundary() -> None:
    scores = torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.5, 2.0]])
    assert masked_topk(scores, None, 4).tolist() == [[1, 3, 2, 4]]
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[0, 2] = True
    assert masked_topk(scores, mask, 4).tolist() == [[1, 3, 4, 5]]


def test_hamming_needs_one_bit_codes() -> None:
    users, items = tables(4)
    with pytest.raises(ValueError, match="1-bit"):
        Retriever(users, items, "hamming")


def test_rerank_reorders_the_code_candidates_by_float_scores() -> None:
    g = torch.Generator().manual_seed(5)
    u, i = torch.randn(6, 64, generator=g), torch.randn(80, 64, generator=g)
    qu, qi = quantize(u, 1), quantize(i, 1)
    users = CodeTable.from_values(qu.codes.numpy(), qu.scale.numpy(), 1)
    items = CodeTable.from_values(qi.codes.numpy(), qi.scale.numpy(), 1)
    codes = Retriever(users, items)
    fn = rerank_scores(codes, u, i, r=20)
    out = fn(torch.arange(6))
    cand = masked_topk(codes.scores(np.arange(6)), None, 20)
    for row in range(6):
        finite = torch.nonzero(torch.isfinite(out[row])).flatten()
        assert sorted(finite.tolist()) == sorted(cand[row].tolist())
        assert torch.allclose(out[row, finite], u[row] @ i[finite].T)


def test_hnsw_hamming_index_finds_the_exact_neighbours_on_a_small_catalog() -> None:
    users, items = tables(1, n_users=8, n_items=400, seed=11)
    rng = np.random.default_rng(12)
    pairs = [(u, i) for u in range(8) for i in rng.choice(400, size=5, replace=False)]
    train = InteractionMatrix.from_pairs(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), 8, 400)
    exact, exact_d = Retriever(users, items, "hamming").topk(np.arange(8), 10, [train])
    hnsw, hnsw_d = Retriever(users, items, "hamming", hamming_index="hnsw", hnsw_ef_search=400).topk(np.arange(8), 10, [train])
    # with a search breadth of the whole catalog HNSW must find distances as good as brute force
    assert (hnsw_d == exact_d).all()
    for u in range(8):
        assert not {p[1] for p in pairs if p[0] == u} & set(hnsw[u].tolist())


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_the_hamming_index_holds_the_only_copy_of_the_codes(index: str) -> None:
    users, items = tables(1, n_items=500, seed=5)
    caller = CodeTable.from_packed(items.packed.copy(), items.scale.copy(), 1, items.dim)
    r = Retriever(users, caller, "hamming", hamming_index=index, hnsw_ef_search=500)
    before = r.scores(np.arange(4))
    top_before = r.topk(np.arange(4), 10)
    caller.packed[:] = 0  # the retriever must not read the caller's array any more
    assert torch.equal(r.scores(np.arange(4)), before)
    assert all(np.array_equal(a, b) for a, b in zip(r.topk(np.arange(4), 10), top_before, strict=True))
    assert np.array_equal(r.item_rows(np.array([499, 3])).packed, items.packed[[499, 3]]) and np.array_equal(r.items.packed, items.packed)
    assert r.item_nbytes() == {"faiss_codes": items.packed.nbytes, "scale": items.scale.nbytes}  # the codes counted once


def test_hnsw_needs_the_hamming_ranking() -> None:
    users, items = tables(1)
    with pytest.raises(ValueError, match="hnsw"):
        Retriever(users, items, "score", hamming_index="hnsw")


@pytest.mark.parametrize(("bits", "min_items"), [(1, 100_000), (1, 0), (4, 100_000)])
def test_users_with_fewer_allowed_items_than_k_get_minus_one(bits: int, min_items: int) -> None:
    users, items = tables(bits, n_users=2, n_items=30)
    train = InteractionMatrix.from_pairs(np.zeros(26, np.int64), np.arange(26), 2, 30)  # user 0: 4 items left
    got, scores = Retriever(users, items, scaled_index_min_items=min_items).topk(np.arange(2), 10, [train])
    assert sorted(got[0, :4].tolist()) == [26, 27, 28, 29]
    assert (got[0, 4:] == -1).all() and np.isneginf(scores[0, 4:]).all()
    assert (got[1] >= 0).all()


@pytest.mark.parametrize(("bits", "min_items"), [(1, 100_000), (1, 10), (4, 100_000), (32, 100_000)])
def test_with_queries_shares_the_item_index_and_ranks_like_a_fresh_retriever(bits: int, min_items: int) -> None:
    users, items = tables(bits)
    r = Retriever(users, items, scaled_index_min_items=min_items)
    one = r.with_queries(users.subset(np.array([3])))
    assert one._items is r._items and one._scaled is r._scaled and r.users is users  # nothing rebuilt, r unchanged
    seen = InteractionMatrix.from_pairs(np.zeros(4, np.int64), np.array([0, 5, 7, 40]), 1, len(items))
    got, scores = r.recommend(3, 10, seen)
    fresh = Retriever(users.subset(np.array([3])), items, scaled_index_min_items=min_items).topk(np.array([0]), 10, [seen])
    assert got.tolist() == fresh[0][0].tolist() and not {0, 5, 7, 40} & set(got.tolist())
    assert np.allclose(scores, fresh[1][0] * users.scale[3])
    with pytest.raises(ValueError, match="query codes"):
        r.with_queries(tables(2 if bits != 2 else 4)[0])


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 32])
def test_a_packed_only_table_ranks_like_the_unpacked_one(bits: int) -> None:
    users, items = tables(bits, n_items=300)
    lean_u, lean_i = users.packed_only(), items.packed_only()
    assert lean_i.unpacked is None or bits == 32
    assert lean_i.nbytes == items.packed.nbytes + items.scale.nbytes  # no unpacked copy counted
    train = InteractionMatrix.from_pairs(np.repeat(np.arange(12), 3), np.arange(36) % 300, 12, 300)
    for min_items in (100_000, 0):
        want = Retriever(users, items, scaled_index_min_items=min_items).topk(np.arange(12), 15, [train])
        got = Retriever(lean_u, lean_i, scaled_index_min_items=min_items).topk(np.arange(12), 15, [train])
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert np.array_equal(Retriever(lean_u, lean_i).scores(np.arange(12)), Retriever(users, items).scores(np.arange(12)))


def test_the_bucketed_index_holds_the_only_copy_of_the_codes_16_bytes_per_item() -> None:
    users, items = tables(1, n_items=3000)
    r = Retriever(users, items.packed_only(), scaled_index_min_items=0)
    held = r.item_nbytes()
    assert r._items is None and set(held) == {"faiss_codes", "scale", "order", "buckets"}
    assert held["faiss_codes"] == 8 * 3000 and held["buckets"] < 1024, held  # buckets: a few arrays of 16 entries
    assert sum(held.values()) - held["buckets"] == 16 * 3000  # code 8 + scale 4 + order 4
    # the codes read back through the index's storage, in item order, equal the table's
    rows = np.array([2999, 0, 17, 17, 1500])
    assert np.array_equal(r.item_rows(rows).packed, items.packed[rows])
    assert np.array_equal(r.items.packed, items.packed) and np.array_equal(r.items.scale, items.scale)
    with pytest.raises(IndexError):
        r.item_rows(np.array([3000]))
    plain = Retriever(users, items.packed_only())
    assert sum(plain.item_nbytes().values()) == 12 * 3000  # one scan: packed code + scale


@pytest.mark.parametrize(("bits", "float_users"), [(2, False), (4, False), (8, False), (4, True), (8, True), (32, False)])
def test_b_bit_and_float_items_are_held_once(bits: int, float_users: bool) -> None:
    """One copy of the item codes: 2/4-bit items keep only the int8 values the GEMM blocks read
    (packed rows are made on demand), 8-bit and float32 items read their code bytes in place."""
    users, items = tables(bits, n_items=300)
    if float_users:
        users = tables(32)[0]
    caller = CodeTable.from_packed(items.packed.copy(), items.scale.copy(), bits, items.dim)  # as read_code_version gives them
    r = Retriever(users, caller, item_block=128)
    width = 4 if bits == 32 else 1
    assert sum(r.item_nbytes().values()) == (width * items.dim + 4) * 300, r.item_nbytes()
    if bits in (2, 4):  # nothing left that reads the caller's packed bytes
        caller.packed[:] = 0
    want = users.values.astype(np.float32) @ items.values.astype(np.float32).T * items.scale
    got = r.scores(np.arange(len(users))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    if not float_users and bits != 32:  # integer inner products: exact
        assert np.array_equal(got, want)
    rows = np.array([299, 0, 17, 17])
    assert np.array_equal(r.item_rows(rows).packed, items.packed[rows]) and np.array_equal(r.item_rows(rows).scale, items.scale[rows])
    assert np.array_equal(r.items.packed, items.packed) and np.array_equal(r.items.values, items.values)


@pytest.mark.parametrize("float_users", [False, True])
def test_a_large_batch_ranks_in_smaller_blocks_with_the_same_answer(float_users: bool) -> None:
    """Top-K of a batch of 256 scores blocks of MIN_BLOCK items (the score tile stays in cache),
    a lone user blocks of item_block: both give what one full score row gives."""
    users, items = tables(4, n_users=256, n_items=9_000, seed=3)
    if float_users:
        users = tables(32, n_users=256, seed=3)[0]
    r = Retriever(users, items)
    assert r.block_rows(1) == r.block_rows(16) == r.item_block == 1 << 16 and r.block_rows(64) == 1 << 14
    assert r.block_rows(256) == MIN_BLOCK < 9_000
    train = InteractionMatrix.from_pairs(np.repeat(np.arange(256), 4), np.arange(1024) * 7 % 9_000, 256, 9_000)
    got, top = r.topk(np.arange(256), 25, [train])
    want = masked_topk(r.scores(np.arange(256)), exclusion_mask(torch.arange(256), [train]), 25)
    assert np.array_equal(got, want.numpy())
    alone = Retriever(users.subset(np.array([200])), items).topk(np.array([0]), 25, [InteractionMatrix.from_pairs(
        np.zeros(4, np.int64), np.arange(800, 804) * 7 % 9_000, 1, 9_000)])
    assert np.array_equal(alone[0][0], got[200]) and np.array_equal(alone[1][0], top[200])


def test_bucketed_and_plain_paths_rank_alike_with_ties_by_item_index() -> None:
    """Many exact ties across scale buckets (a few distinct codes, scales from a short list):
    the bucketed index, which stores items in bucket order, still breaks ties by item index."""
    rng = np.random.default_rng(11)
    base = rng.choice([-1, 1], size=(4, 64))
    items = CodeTable.from_values(base[rng.integers(0, 4, 2000)], rng.choice([0.5, 1.0, 2.0, 4.0], 2000), 1)
    users = CodeTable.from_values(base[[0, 1, 2, 3, 0]], np.ones(5), 1)
    train = InteractionMatrix.from_pairs(np.array([0, 0, 4]), np.array([3, 1999, 8]), 5, 2000)
    bucketed, plain = Retriever(users, items, scaled_index_min_items=0), Retriever(users, items)
    assert bucketed._scaled is not None and plain._scaled is None
    got, want = bucketed.topk(np.arange(5), 50, [train]), plain.topk(np.arange(5), 50, [train])
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    full = plain.scores(np.arange(5)).numpy()
    assert np.array_equal(bucketed.scores(np.arange(5)).numpy(), full)
    for u in range(5):
        assert got[0][u].tolist() == [j for j in np.lexsort((np.arange(2000), -full[u])) if j not in train.indices[train.indptr[u]:train.indptr[u + 1]].tolist()][:50]


def float_users_tables(item_bits: int, dim: int = 64, n_users: int = 40, n_items: int = 700, seed: int = 3) -> tuple[CodeTable, CodeTable]:
    """Float32 users with a wide dynamic range (entries over ~6 binades) against b-bit item codes."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n_users, dim, generator=g) * torch.exp2(torch.randint(-3, 3, (n_users, dim), generator=g).float())
    q = quantize(torch.randn(n_items, dim, generator=g), item_bits)
    return CodeTable.from_float(u.numpy()), CodeTable.from_values(q.codes.numpy(), q.scale.numpy(), item_bits)


@pytest.mark.parametrize(("dim", "item_bits"), [(64, 1), (64, 2), (64, 4), (128, 4), (70, 1), (256, 2)])
def test_the_exact_grid_makes_every_partial_sum_exact(dim: int, item_bits: int) -> None:
    """On the grid a row is integers below ``2^bits`` times one power of two, and its inner product
    with b-bit codes summed in float32 (any order) equals the float64 sum: nothing was rounded."""
    users, items = float_users_tables(item_bits, dim)
    bits = exact_grid_bits(dim, item_bits)
    assert bits == 24 - int(np.ceil(np.log2(dim))) - (item_bits - 1)
    q = torch.from_numpy(users.values)
    grid = on_exact_grid(q, bits)
    row_max = q.abs().amax(1, keepdim=True)
    assert ((grid - q).abs() <= row_max * 2.0**-bits * (1 + 1e-6)).all()  # half a step: step <= 2^(1-bits) x max
    step = torch.exp2(torch.ceil(torch.log2(row_max)) - bits)
    mantissa = grid / step
    assert torch.equal(mantissa, mantissa.round()) and mantissa.abs().max() <= 2**bits
    codes = torch.from_numpy(items.values.astype(np.float32))
    exact = (grid.double() @ codes.double().T).float()
    for order in (range(dim), reversed(range(dim)), torch.randperm(dim, generator=torch.Generator().manual_seed(1)).tolist()):
        assert torch.equal(float32_sum(grid, codes, order), exact)  # any summation order: the same bits
    orders = (float32_sum(q, codes, range(dim)), float32_sum(q, codes, reversed(range(dim))))
    assert not torch.equal(*orders)  # plain floats: the order changes the last bits


@pytest.mark.parametrize(("dim", "item_bits"), [(64, 4), (64, 8), (300, 1), (256, 8)])
def test_grid_slices_add_up_to_the_query_and_each_scores_exactly(dim: int, item_bits: int) -> None:
    """Where one grid keeps too few bits, the query is split into slices: together they keep
    ``count x bits`` significant bits of each row, and each slice's inner products are exact."""
    users, items = float_users_tables(item_bits, dim)
    bits = exact_grid_bits(dim, item_bits)
    count = -(-MIN_GRID_BITS // bits)
    assert bits < MIN_GRID_BITS and count >= 2
    q = torch.from_numpy(users.values)
    slices = grid_slices(q, bits, count)
    assert slices.shape == (count, *q.shape)
    row_max = q.abs().amax(1, keepdim=True)
    assert ((slices.sum(0) - q).abs() <= row_max * 2.0 ** -(count * bits) * (1 + 1e-6)).all()
    assert ((slices[0] - q).abs() > row_max * 2.0 ** -(count * bits)).any()  # one slice alone is coarser
    codes = torch.from_numpy(items.values.astype(np.float32))
    for part in slices:
        exact = (part.double() @ codes.double().T).float()
        assert torch.equal(float32_sum(part, codes, reversed(range(dim))), exact)
        assert torch.equal(float32_sum(part, codes, range(dim)), exact)


def float32_sum(q: torch.Tensor, codes: torch.Tensor, order: Iterable[int]) -> torch.Tensor:
    """``q @ codes.T`` ``[users, items]`` summed term by term in float32, dimensions in ``order``."""
    acc = torch.zeros(q.shape[0], codes.shape[0])
    for j in order:
        acc = acc + q[:, j, None] * codes[None, :, j]
    return acc


@pytest.mark.parametrize(("item_bits", "dim"), [(1, 64), (2, 64), (1, 256), (4, 64), (8, 64), (1, 300)])
def test_float_users_rank_the_same_alone_and_in_any_batch(item_bits: int, dim: int) -> None:
    users, items = float_users_tables(item_bits, dim)
    seen = InteractionMatrix.from_pairs(np.repeat(np.arange(40), 3), np.arange(120) % 700, 40, 700)
    r = Retriever(users, items, item_block=256)  # several blocks, the last one partial
    assert r.batch_invariant
    full = r.scores(np.arange(40))
    got, top = r.topk(np.arange(40), 25, [seen])
    for u in range(40):
        assert torch.equal(r.scores(np.array([u])), full[u : u + 1])  # bit for bit
        one_seen = InteractionMatrix.from_pairs(np.zeros(3, np.int64), np.arange(3 * u, 3 * u + 3) % 700, 1, 700)
        ids, scores = r.recommend(u, 25, one_seen)
        assert ids.tolist() == got[u].tolist() and np.array_equal(scores, top[u] * users.scale[u])
    # the grid (in S slices) moves each score by at most 2^-(S x bits) x max|e_u| x sum|q_i| x s_i (plus float32 noise)
    q, codes = torch.from_numpy(users.values).double(), torch.from_numpy(items.values).double()
    scale = torch.from_numpy(items.scale).double()
    want = (q @ codes.T) * scale
    bits = exact_grid_bits(dim, item_bits)
    kept = -(-MIN_GRID_BITS // bits) * bits
    assert kept >= MIN_GRID_BITS
    bound = 2.0 ** -kept * q.abs().amax(1, keepdim=True) * codes.abs().sum(1) * scale
    assert ((full.double() - want).abs() <= bound + 1e-6 * want.abs()).all()


@pytest.mark.parametrize(("user_bits", "item_bits", "dim", "invariant"), [
    (1, 1, 64, True), (2, 2, 64, True), (8, 8, 1024, True), (8, 8, 1025, False), (32, 32, 64, False),
    (32, 1, 64, True), (32, 1, 256, True), (32, 1, 257, True), (32, 2, 128, True), (32, 4, 64, True), (32, 8, 64, True),
    (32, 8, 1024, True),
])
def test_which_retrievers_are_batch_invariant(user_bits: int, item_bits: int, dim: int, invariant: bool) -> None:
    """Integer inner products while they stay within float32's exact range; float users on the
    exact grid, in as many slices as keep MIN_GRID_BITS significant bits; never float32 x float32."""
    users, items = tables(user_bits, n_users=2, n_items=3, dim=dim) if user_bits == item_bits else float_users_tables(item_bits, dim, 2, 3)
    r = Retriever(users, items)
    assert r.batch_invariant is invariant
    if r.mixed:
        one_grid = exact_grid_bits(dim, item_bits) >= MIN_GRID_BITS
        assert (r._grid_slices == 1) is one_grid and r._grid_slices * exact_grid_bits(dim, item_bits) >= MIN_GRID_BITS
