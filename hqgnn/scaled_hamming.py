"""Exact top-K by the 1-bit model score ``s_i (d − 2 H(q_u, q_i))`` without a score matrix.

Why by hand: FAISS ranks 1-bit codes by Hamming distance alone, which ignores the per-item
scale ``s_i`` and loses a quarter to a half of Recall@20 on real data (BENCHMARKS.md); scoring
every item exactly means materialising ``[B, num_items]`` distances, slower than float32 brute
force. This index keeps FAISS's heap search and still returns the *exact* score ranking:

1. Items are cut into ``buckets`` scale ranges ``[s_min_b, s_max_b]`` of equal width in
   ``log s`` (equal ratios ``s_max_b / s_min_b``: quantile buckets would leave the long tail of
   popular items' scales in one wide bucket and ruin its bound), one ``faiss.IndexBinaryFlat``
   per non-empty bucket.
2. Each bucket returns its ``R_b`` nearest codes by Hamming distance (``R_b`` = ``k`` times
   ``oversample``, plus the query's excluded items in that bucket); these candidates are
   scored exactly and the best ``k`` kept (ties: lower item index).
3. **Certificate.** An item a bucket did not return has ``H >= h_b`` (the bucket's largest
   returned distance), so its score is at most ``s_max_b (d − 2 h_b)`` (``s_min_b`` when that
   factor is negative). When the k-th kept score beats every bucket's bound strictly, no item
   outside the candidates can enter the top-K and the answer is exact. Where a bucket's bound
   is not beaten, that bucket alone is searched again for that query with 4x the candidates
   (up to ``rounds`` rounds); queries still uncertified (rare) are answered by brute force
   (``faiss.hammings`` over all items). Results always equal the full-score ranking.

Scores use float32 exactly as the brute-force path does (``float32(d − 2H) * s_i``); rounding
is monotone, so the float32 bound is a valid bound for float32 scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

NO_ITEM = -1


def hamming_matrix(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """int32 ``[nq, n]`` Hamming distances between packed codes (uint8 ``[nq|n, nbytes]``) via
    ``faiss.hammings`` (XOR + popcount; the numpy reference is :func:`hqgnn.codes.hamming`)."""
    q, x = np.ascontiguousarray(queries, dtype=np.uint8), np.ascontiguousarray(items, dtype=np.uint8)
    out = np.empty((q.shape[0], x.shape[0]), dtype=np.int32)
    faiss.hammings(  # type: ignore[attr-defined]  # SWIG export, no stub
        faiss.swig_ptr(q), faiss.swig_ptr(x), q.shape[0], x.shape[0], x.shape[1], faiss.swig_ptr(out)
    )
    return out


def one_bit_score(dist: np.ndarray, scale: np.ndarray, dim: int) -> np.ndarray:
    """float32 ``s_i (d − 2H)`` for distances ``dist`` and the matching item scales (broadcast);
    the one formula every 1-bit score path uses, so they agree to the last bit."""
    return (np.float32(dim) - np.float32(2) * dist.astype(np.float32)) * scale


class ScaledHammingIndex:
    """Top-K items by ``s_i (d − 2 H)`` over packed 1-bit item codes.

    Storage, 16 bytes per item at d = 64 (``code_bytes + 8``): the items sit in bucket order
    (bucket by bucket, original order inside each), each bucket a ``faiss.IndexBinaryFlat``
    that holds *the only copy* of its packed codes (exact re-scoring and brute force read them
    through a zero-copy numpy view of the index's storage); ``scale`` float32 ``[n]`` in the
    original order (the caller's array, not copied); ``order`` int32 ``[n]``: bucket position →
    original index. No per-item bucket number: an item's bucket follows from its scale (the
    same ``log s`` edges), and its position from a binary search of its bucket's slice of
    ``order`` (ascending inside a bucket). Returned items are original indices, and ties break
    by them, as :meth:`hqgnn.retrieval.Retriever.topk` does everywhere.

    Args:
        packed: uint8 ``[n, nbytes]`` item codes (:mod:`hqgnn.codes` layout); copied into the
            indexes, so the caller may drop its array afterwards.
        scale: float32 ``[n]`` item scales (> 0).
        dim: code width ``d`` in bits.
        buckets: scale ranges (more: tighter bounds, more FAISS calls).
        oversample: first-round candidates per bucket as a multiple of ``k``.
        rounds: search rounds (each widens, 4x, only the buckets whose bound failed) before the
            remaining queries go to brute force.
    """

    def __init__(self, packed: np.ndarray, scale: np.ndarray, dim: int, buckets: int = 16, oversample: float = 1.0, rounds: int = 3) -> None:
        packed = np.asarray(packed, dtype=np.uint8)
        self.scale = np.ascontiguousarray(scale, dtype=np.float32)
        self.dim, self.oversample, self.rounds = dim, oversample, rounds
        self.num_items, self.code_size = packed.shape
        log_s = _log_scale(self.scale)
        self.edges = np.linspace(log_s.min(), log_s.max(), max(1, buckets) + 1)[1:-1] if self.num_items else np.zeros(0)
        which = np.searchsorted(self.edges, log_s, side="right")
        del log_s
        self.order = np.argsort(which, kind="stable").astype(np.int32)  # bucket position -> original index
        counts = np.bincount(which, minlength=max(1, buckets))
        del which
        self._compact = np.cumsum(counts > 0) - 1  # bucket number -> index among the non-empty ones
        sizes = counts[counts > 0]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # [nb + 1] bucket ranges of `order`
        self.indexes: list[faiss.IndexBinaryFlat] = []
        self._codes: list[np.ndarray] = []  # zero-copy views [n_b, nbytes] of the indexes' storage
        for b in range(len(sizes)):
            index = faiss.IndexBinaryFlat(8 * self.code_size)
            index.add(np.ascontiguousarray(packed[self.order[self.starts[b] : self.starts[b + 1]]]))
            self.indexes.append(index)  # never added to again: the view below stays valid
            self._codes.append(storage_view(index))
        self.s_min = np.array([self.scale[self._members(b)].min() for b in range(len(sizes))], dtype=np.float32)
        self.s_max = np.array([self.scale[self._members(b)].max() for b in range(len(sizes))], dtype=np.float32)
        self.last_certified = 0.0  # share of queries of the last search answered without brute force

    def _members(self, b: int) -> np.ndarray:
        """int32 original indices of bucket ``b``, ascending (a view of ``order``)."""
        return self.order[self.starts[b] : self.starts[b + 1]]

    def bucket_of(self, items: np.ndarray) -> np.ndarray:
        """int64 bucket (among the non-empty ones) of original items ``items`` ``[m]``, from their scales."""
        items = np.asarray(items, dtype=np.int64)
        return self._compact[np.searchsorted(self.edges, _log_scale(self.scale[items]), side="right")].astype(np.int64)

    def packed_rows(self, items: np.ndarray) -> np.ndarray:
        """uint8 ``[m, nbytes]``: a copy of the packed codes of original items ``items`` ``[m]``."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        out = np.empty((len(items), self.code_size), dtype=np.uint8)
        which = self.bucket_of(items)
        for b in np.unique(which):
            sel = np.flatnonzero(which == b)
            members = self._members(int(b))
            pos = np.searchsorted(members, items[sel])
            if (pos >= len(members)).any() or (members[np.minimum(pos, len(members) - 1)] != items[sel]).any():
                raise IndexError(f"item index out of range 0..{self.num_items - 1}: {items[sel].tolist()[:5]}")
            out[sel] = self._codes[int(b)][pos]
        return out

    def hamming(self, queries: np.ndarray) -> np.ndarray:
        """int32 ``[nq, n]`` Hamming distances to every item, columns in original item order."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        out = np.empty((queries.shape[0], self.num_items), dtype=np.int32)
        for b, codes in enumerate(self._codes):
            out[:, self._members(b)] = hamming_matrix(queries, codes)
        return out

    @property
    def code_nbytes(self) -> int:
        """Bytes of packed codes the FAISS indexes hold (the only copy of them)."""
        return int(sum(ix.ntotal * ix.code_size for ix in self.indexes))

    @property
    def nbytes(self) -> int:
        """Bytes held for the items: FAISS's codes, ``order``, ``scale`` (shared with the caller)
        and the per-bucket arrays."""
        codes = self.code_nbytes
        small = self.edges.nbytes + self._compact.nbytes + self.starts.nbytes + self.s_min.nbytes + self.s_max.nbytes
        return int(codes + self.order.nbytes + self.scale.nbytes + small)

    def search(self, queries: np.ndarray, k: int, banned: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per query, best first.

        Args:
            queries: uint8 ``[B, nbytes]`` packed user codes.
            k: items per query (at most ``num_items``).
            banned: per query, int64 item indices never to return (e.g. train items).
        Returns:
            int64 items ``[B, k]`` and float32 scores ``[B, k]`` (``s_i (d − 2H)``); rows with
            fewer than ``k`` allowed items end with item ``-1`` and score ``-inf``.
        """
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        nq, k, nb = queries.shape[0], min(k, self.num_items), len(self.indexes)
        banned = list(banned) if banned is not None else [np.empty(0, np.int64)] * nq
        ban_keys = _ban_keys(banned, self.num_items)
        size = np.diff(self.starts)
        want = np.full((nq, nb), int(np.ceil(k * self.oversample)), dtype=np.int64)
        for r, ban in enumerate(banned):  # the query's banned items in a bucket come on top
            if len(ban):
                want[r] += np.bincount(self.bucket_of(ban), minlength=nb)
        want = np.minimum(want, size)
        found = [_Candidates(nq) for _ in range(nb)]
        todo = np.ones((nq, nb), dtype=bool)
        for _ in range(self.rounds):
            for b in np.flatnonzero(todo.any(axis=0)):
                rows = np.flatnonzero(todo[:, b])
                dist, local = self.indexes[b].search(queries[rows], int(want[rows, b].max()))
                items = self._members(int(b))[local].astype(np.int64)
                score = one_bit_score(dist, self.scale[items], self.dim)
                if ban_keys.size:
                    score[np.isin(rows[:, None] * self.num_items + items, ban_keys)] = -np.inf
                found[b].put(rows, items, score, dist[:, -1], exhaustive=dist.shape[1] >= size[b])
            top_items, top_scores = _best_k(
                np.concatenate([c.items for c in found], axis=1), np.concatenate([c.scores for c in found], axis=1), k
            )
            todo = np.stack([c.may_beat(top_scores[:, -1], self.dim, self.s_min[b], self.s_max[b]) for b, c in enumerate(found)], axis=1)
            if not todo.any():
                break
            want = np.where(todo, np.minimum(want * 4, size), want)  # widen where the bound failed
        failed = np.flatnonzero(todo.any(axis=1))
        self.last_certified = 1.0 - len(failed) / nq if nq else 1.0
        for row in failed:
            top_items[row], top_scores[row] = self._brute_force(queries[row : row + 1], k, banned[row])
        return top_items, top_scores

    def _brute_force(self, query: np.ndarray, k: int, banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` of one query over all items (``faiss.hammings`` per bucket)."""
        score = one_bit_score(self.hamming(query)[0], self.scale, self.dim)
        score[banned] = -np.inf
        items, scores = _best_k(np.arange(self.num_items)[None, :], score[None, :], k)
        return items[0], scores[0]


def _log_scale(scale: np.ndarray) -> np.ndarray:
    """``log s`` as the buckets cut it (float32, clamped above 0): the same value for an item
    whether computed over all scales or a few."""
    return np.log(np.maximum(np.asarray(scale, dtype=np.float32), np.finfo(np.float32).tiny))


def storage_view(index: faiss.IndexBinaryFlat) -> np.ndarray:
    """uint8 ``[ntotal, code_size]`` numpy view of an IndexBinaryFlat's codes, no copy; valid
    while ``index`` lives and is not added to."""
    n = index.ntotal * index.code_size
    if n == 0:
        return np.empty((0, index.code_size), dtype=np.uint8)
    return faiss.rev_swig_ptr(index.xb.data(), n).reshape(index.ntotal, index.code_size)  # type: ignore[attr-defined]  # SWIG, no stub


class _Candidates:
    """One bucket's candidates for every query: items/scores ``[B, width]`` (padding: item
    ``-1``, score ``-inf``), the largest returned distance and whether the bucket was exhausted."""

    def __init__(self, nq: int) -> None:
        self.items = np.full((nq, 0), NO_ITEM, dtype=np.int64)
        self.scores = np.full((nq, 0), -np.inf, dtype=np.float32)
        self.last = np.zeros(nq, dtype=np.int64)
        self.exhaustive = np.zeros(nq, dtype=bool)
        self.searched = np.zeros(nq, dtype=bool)

    def put(self, rows: np.ndarray, items: np.ndarray, scores: np.ndarray, last: np.ndarray, exhaustive: bool) -> None:
        """Replace the candidates of ``rows`` by a (wider) search's ``[len(rows), r]`` results."""
        width = items.shape[1]
        if width > self.items.shape[1]:
            pad = width - self.items.shape[1]
            self.items = np.pad(self.items, ((0, 0), (0, pad)), constant_values=NO_ITEM)
            self.scores = np.pad(self.scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        self.items[rows], self.scores[rows] = NO_ITEM, -np.inf
        self.items[rows, :width], self.scores[rows, :width] = items, scores
        self.last[rows], self.exhaustive[rows], self.searched[rows] = last, exhaustive, True

    def may_beat(self, kth: np.ndarray, dim: int, s_min: np.float32, s_max: np.float32) -> np.ndarray:
        """bool ``[B]``: an item this bucket did not return could score ``>= kth`` (float32
        bound ``s (d − 2 h)`` with ``s_max``, or ``s_min`` when ``d − 2h < 0``)."""
        factor = (dim - 2 * self.last).astype(np.float32)
        bound = np.where(factor >= 0, factor * s_max, factor * s_min)
        return self.searched & ~self.exhaustive & (bound >= kth)


def _ban_keys(banned: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    """Sorted int64 ``row * num_items + item`` keys of every banned pair."""
    keys = [r * num_items + np.asarray(b, dtype=np.int64) for r, b in enumerate(banned) if len(b)]
    return np.sort(np.concatenate(keys)) if keys else np.empty(0, np.int64)


def _best_k(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` entries with the largest score (ties: lower item), best first.

    ``items``/``scores``: ``[B, m]`` (``items`` may be ``[1, m]``, broadcast). Entries scored
    ``-inf`` come back as item ``-1``.
    """
    items = np.broadcast_to(items, scores.shape)
    by_item = np.argsort(items, axis=1, kind="stable")
    items, scores = np.take_along_axis(items, by_item, 1), np.take_along_axis(scores, by_item, 1)
    if k < scores.shape[1]:  # shortlist: everything >= the k-th score (ties kept), then order
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        keep = scores >= kth
        width = int(keep.sum(axis=1).max())
        pick = np.argsort(~keep, axis=1, kind="stable")[:, :width]
        items, scores = np.take_along_axis(items, pick, 1), np.take_along_axis(scores, pick, 1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    items, scores = np.take_along_axis(items, order, 1).copy(), np.take_along_axis(scores, order, 1).copy()
    items[~np.isfinite(scores)] = NO_ITEM
    return items, scores
