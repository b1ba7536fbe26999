"""Top-K retrieval over all items from exported codes, in user batches (memory ``batch x items``).

Scores, by code width (``s`` = per-node scale, ``q`` = integer codes, ``d`` = dim):

- **32 bits**: float32 matmul ``e_u · e_i``.
- **b ∈ {2, 4, 8}**: integer inner product ``<q_u, q_i>`` (int8 codes, multiplied in float32
  GEMM blocks, exact because ``|<q_u, q_i>| < 2^24``), times ``s_i``.
- **float users × b-bit items** (``float_users`` runs; users 32 bits, items 1, 2, 4 or 8):
  ``s_i <e_u, q_i>``, float32 GEMM of the user vectors against the item codes unpacked one block
  at a time (1-bit items stay packed, 8 B per item at d = 64; b-bit items keep their int8 values).
  The user vectors are first rounded onto a fixed-point grid (:func:`on_exact_grid`: 18
  significant bits at d = 64 with 1-bit items, a relative change below 4e-6) on which every
  partial sum is an exact float32, so the score does not depend on the GEMM's summation order:
  a user ranks the same alone or in any batch (a service can micro-batch requests; plain float
  vectors round differently in a batch than alone, in most scores' last bit). Where one grid
  would keep fewer than ``MIN_GRID_BITS`` bits (4- and 8-bit items, wide 1/2-bit codes: the
  codes' own magnitude uses up float32's exact range), the vector is split into slices, each on
  its own grid (:func:`grid_slices`: two at d = 64 with 4 or 8-bit items, 30 and 22 bits), whose
  exact scores are added in slice order: the same bits in any batch.
- **1 bit**, two rankings (``rank_by``):
  - ``"score"`` (default; evaluation's ``codes`` row and ``hqgnn recommend``): the model's
    score ``s_u s_i (d − 2 H(q_u, q_i))`` with ``H`` from XOR + popcount. Top-K goes through
    :class:`hqgnn.scaled_hamming.ScaledHammingIndex` from ``scaled_index_min_items`` items on
    (FAISS heap search per scale bucket, exact by a certificate), below through full score rows
    in chunks; full score matrices (evaluation) through ``faiss.hammings``.
  - ``"hamming"``: pure Hamming distance, ascending, through FAISS ``IndexBinaryFlat`` (heap
    top-K, no score matrix): what ``sql/queries/user_topk_hamming.sql`` computes. It ignores the
    item scale ``s_i``, so it can differ from the model's ranking; evaluation reports both.

Top-K for float and b-bit codes scores one item block at a time (the block's codes converted to
float32) and merges the block winners, so no ``[batch, num_items]`` matrix is built. A block
holds ``item_block`` items, fewer for a large batch
(:meth:`Retriever.block_rows`: the ``[batch, block]`` score tile stays within ``SCORE_TILE``
floats, so the scale, the mask and the block's top-K read it from cache).

Item memory: one copy of the codes. 1-bit items stay packed (or in a FAISS index); 2- and 4-bit
items keep only their int8 values (``dim`` + 4 B of scale per item; packed rows are made on
demand by :meth:`Retriever.item_rows`); 8-bit and float32 items read their code bytes in place.

The user's scale never changes a user's ranking, so score matrices leave it out: they are
``s_i * <q_u, q_i>`` (that is, the model's score divided by ``s_u > 0``).

Ties are broken by the lower item index everywhere (FAISS's heaps do the same), so this
module, ``hqgnn.metrics.masked_topk`` and the SQL queries agree item for item.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Literal, cast

import faiss
import numpy as np
import torch
from torch import Tensor

from hqgnn.bits import is_float
from hqgnn.codes import CodeTable
from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import exclusion_mask, masked_topk
from hqgnn.scaled_hamming import (
    NO_ITEM,
    ScaledHammingIndex,
    hamming_matrix,
    one_bit_score,
    storage_view,
)

# byte -> its 8 sign values (+1/-1) as float32, bit j of the byte = dimension 8 * byte + j (hqgnn.codes' 1-bit layout)
_SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.float32) * 2 - 1

# float queries keep at least this many significant bits on the exact grid (an entry moves by at most
# 2^-16 = 1.5e-5 of its row's largest entry): one grid for float users against 1-bit items up to d = 256 and
# 2-bit up to 128; wider codes split each query into grid_slices(), as many as reach this many bits together
MIN_GRID_BITS = 16

# top-K scores a [batch, block] tile per item block: at most this many float32 (4 MB), down to MIN_BLOCK items a
# block; so up to 16 users keep item_block's 65,536 items, a batch of 256 gets 4,096 (BENCHMARKS.md, session 15)
SCORE_TILE = 1 << 20
MIN_BLOCK = 1 << 12

RankBy = Literal["score", "hamming"]
RANK_BY: tuple[str, ...] = ("score", "hamming")
HammingIndex = Literal["flat", "hnsw"]


def exact_grid_bits(dim: int, item_bits: int) -> int:
    """Significant bits a float query keeps on :func:`on_exact_grid` against ``item_bits``-bit item
    codes (``|code| <= 2^(b-1)``, 1 for sign codes): ``24 - ceil(log2(dim)) - (b - 1)``, so that
    ``dim`` terms of at most ``2^bits_kept * |code|`` sum to at most ``2^24``, float32's exact range."""
    return 24 - max(dim - 1, 1).bit_length() - max(item_bits - 1, 0)


def on_exact_grid(q: Tensor, bits: int) -> Tensor:
    """``q`` (float32 ``[B, dim]``) rounded per row to multiples of ``2^(e - bits)``, ``2^e`` the
    row's largest magnitude rounded up to a power of two: a row is then integers times one power
    of two, each at most ``2^bits`` in magnitude (each entry moves by at most ``2^-bits`` of the row's
    largest). With ``bits = exact_grid_bits(dim, b)`` every partial sum of its inner product
    with b-bit integer codes is exact in float32, whatever the order (batch-invariant scores)."""
    _, exponent = torch.frexp(q.abs().amax(dim=1, keepdim=True))  # max|q| <= 2^exponent (exponent 0 for a zero row)
    step = torch.ldexp(torch.ones_like(q[:, :1]), exponent - bits)
    return torch.round(q / step) * step


def grid_slices(q: Tensor, bits: int, count: int) -> Tensor:
    """``q`` (float32 ``[B, dim]``) as ``count`` slices ``[count, B, dim]``: the first is
    :func:`on_exact_grid` of ``q``, each next one that of what the slices before it left (the
    remainders are exact in float32, ``bits <= 23``), so together they keep about ``count * bits``
    significant bits of each row. Each slice's inner product with the codes is exact; their sum,
    added in slice order, is then one rounding that no batch shape changes."""
    out = torch.empty((count, *q.shape), dtype=q.dtype)
    rest = q
    for j in range(count):
        out[j] = on_exact_grid(rest, bits)
        rest = rest - out[j]
    return out


class Retriever:
    """Ranks every item for batches of users from a user and an item :class:`CodeTable`.

    Args:
        users, items: code tables of the same ``dim`` and ``bits``, or float32 users (32 bits)
            against b-bit items (asymmetric scoring, ``float_users`` runs).
        rank_by: ``"score"`` (model score) or ``"hamming"`` (1 bit only, FAISS IndexBinaryFlat;
            the index then holds the only copy of the item codes, read in place by :attr:`items`).
        item_block: items per scoring block at most (bounds the float32 buffer of b-bit and 1-bit
            codes); top-K of a batch uses :meth:`block_rows`.
        hamming_index: for ``rank_by="hamming"``: ``"flat"`` (exact brute force) or ``"hnsw"``
            (FAISS ``IndexBinaryHNSW``: approximate, sub-linear per query, a graph build first;
            ties are not ordered by item index).
        hnsw_m, hnsw_ef_search: HNSW graph degree and search breadth (raised to ``k`` if lower).
        scaled_index_min_items: 1-bit score top-K goes through the bucketed FAISS index from this
            catalog size on; below it one brute-force pass (``faiss.hammings``) is cheaper (its 16
            FAISS calls per batch cost more than they save: 0.82x vs 1.13x fp32 at 41 k items,
            7-9x vs 0.5x at 1 M; BENCHMARKS.md). That index then holds the only copy of the
            item codes (16 B per item at d = 64, :class:`hqgnn.scaled_hamming.ScaledHammingIndex`):
            the retriever keeps no reference to ``items.packed`` (drop yours to free it), reads
            rows through :meth:`item_rows`, and :attr:`items` gathers the whole table on demand.

    Example:
        >>> r = Retriever(user_codes, item_codes)
        >>> items, scores = r.topk(np.array([0, 1]), k=20, exclude=[split.train])
    """

    def __init__(
        self,
        users: CodeTable,
        items: CodeTable,
        rank_by: RankBy = "score",
        item_block: int = 1 << 16,
        hamming_index: HammingIndex = "flat",
        hnsw_m: int = 32,
        hnsw_ef_search: int = 128,
        scaled_index_min_items: int = 100_000,
    ) -> None:
        if users.dim != items.dim or (users.bits != items.bits and not is_float(users.bits)):
            raise ValueError(
                f"user codes ({users.bits} bits, dim {users.dim}) and item codes ({items.bits} bits, dim {items.dim}) "
                "differ (the same width, or float32 users against item codes)"
            )
        if rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
        if rank_by == "hamming" and (users.bits != 1 or items.bits != 1):
            raise ValueError(f"rank_by='hamming' needs 1-bit codes on both sides, got {users.bits}-bit users and {items.bits}-bit items")
        if hamming_index not in ("flat", "hnsw") or (hamming_index == "hnsw" and rank_by != "hamming"):
            raise ValueError(f"hamming_index must be 'flat' or 'hnsw' ('hnsw' with rank_by='hamming' only), got {hamming_index!r}")
        self.users, self.rank_by = users, rank_by
        self._items: CodeTable | None = items  # None: the bucketed 1-bit index holds the codes, or 2/4-bit int8 values only
        self.bits, self.user_bits, self.dim, self.num_items = items.bits, users.bits, users.dim, len(items)
        self.mixed = users.bits != items.bits  # float32 user vectors against b-bit item codes
        grid = exact_grid_bits(self.dim, self.bits) if self.mixed else 0
        self._grid_bits: int | None = grid if grid >= 1 else None  # float queries rounded onto the exact grid ...
        self._grid_slices = -(-MIN_GRID_BITS // grid) if grid >= 1 else 1  # ... in this many slices (grid_slices)
        self.item_block = item_block
        self._item_scale = items.scale  # float32 [num_items]
        self._scale = torch.from_numpy(items.scale)
        self._index: faiss.IndexBinary | None = None
        self._scaled: ScaledHammingIndex | None = None
        self.hnsw_ef_search = hnsw_ef_search
        if self.bits == 1 and rank_by == "hamming":
            self._index = (faiss.IndexBinaryHNSW(8 * items.bytes_per_row, hnsw_m) if hamming_index == "hnsw"
                           else faiss.IndexBinaryFlat(8 * items.bytes_per_row))
            self._index.add(items.packed)
            # the index holds the only copy of the codes: the table reads them in place (no reference to items.packed)
            self._items = CodeTable.from_packed(_index_codes(self._index), items.scale, self.bits, self.dim)
        elif self.mixed and self.bits == 1:  # float queries × sign codes: packed kept, unpacked per block
            self._items = items.packed_only()
        elif self.bits == 1 and self.num_items >= scaled_index_min_items:
            self._scaled = ScaledHammingIndex(items.packed, items.scale, self.dim)
            self._item_scale = self._scaled.scale  # the same array
            self._items = None  # the index holds the only copy of the packed codes
        elif self.bits == 8 or is_float(self.bits):  # the code bytes are the values (int8 / little-endian float32): one copy
            self._items = items.packed_only()
            self._values = torch.from_numpy(self._items.packed.view(np.int8) if self.bits == 8 else self._items.values)
        elif self.bits != 1:  # 2 and 4 bits: only the int8 values the GEMM blocks read; packed rows made on demand (item_rows)
            self._values = torch.from_numpy(items.values)  # int8 [n, d]
            self._items = None

    @property
    def items(self) -> CodeTable:
        """The item codes, by item index. With the bucketed 1-bit index (which holds the only
        copy of the packed codes) a packed-only table gathered now, ``[num_items]`` rows, and for
        2- and 4-bit items (which keep only their int8 values) a table packed now: use
        :meth:`item_rows` for a few."""
        if self._items is not None:
            return self._items
        return self.item_rows(np.arange(self.num_items))

    def item_rows(self, rows: np.ndarray) -> CodeTable:
        """The codes of items ``rows`` (int ``[m]``) as a table of ``m`` rows (e.g. queries for
        item-to-item similarity, or fold-in's item vectors)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self._scaled is not None:
            return CodeTable.from_packed(self._scaled.packed_rows(rows), self._item_scale[rows], self.bits, self.dim)
        if self._items is None:  # 2 / 4 bits: the rows' int8 values, packed now
            return CodeTable.from_values(self._values.numpy()[rows], self._item_scale[rows], self.bits)
        return self._items.subset(rows)

    def item_nbytes(self) -> dict[str, int]:
        """Bytes the ranking holds for the items, by part (everything reachable from this
        retriever that grows with the catalogue; arrays shared between parts counted once)."""
        if self._scaled is not None:
            s = self._scaled
            codes = s.code_nbytes
            return {"faiss_codes": codes, "scale": s.scale.nbytes, "order": s.order.nbytes,
                    "buckets": s.nbytes - codes - s.scale.nbytes - s.order.nbytes}
        if self._items is None:  # 2 / 4 bits: the int8 values the GEMM blocks read, no packed copy
            return {"packed": 0, "scale": self._item_scale.nbytes, "unpacked": self._values.numpy().nbytes}
        if self._index is not None:  # the table's packed codes are a view of the index's storage
            return {"faiss_codes": self._items.packed.nbytes, "scale": self._items.scale.nbytes}
        out = {"packed": self._items.packed.nbytes, "scale": self._items.scale.nbytes,
               "unpacked": self._items.nbytes - self._items.packed.nbytes - self._items.scale.nbytes}
        if self.bits != 1:  # the int8/float32 codes the GEMM blocks read: the table's, or unpacked here
            values = self._values.numpy()
            if not any(np.may_share_memory(values, a) for a in (self._items.unpacked, self._items.packed) if a is not None):
                out["unpacked"] += values.nbytes
        return out

    def block_rows(self, batch: int) -> int:
        """Items per block when ranking ``batch`` users at once: ``item_block``, or fewer so that
        the ``[batch, block]`` score tile stays within ``SCORE_TILE`` floats (not under ``MIN_BLOCK``)."""
        return min(self.item_block, max(MIN_BLOCK, SCORE_TILE // max(batch, 1)))

    def _block_buffer(self, rows: int) -> np.ndarray | None:
        """Scratch for :meth:`_block` of a mixed 1-bit retriever (float32 ``[rows, code bytes, 8]``
        for blocks of ``rows`` items), one per scoring call, so the blocks reuse memory instead of
        faulting in a new one each; None for other retrievers (a reused buffer for the b-bit
        conversion measured slower than a fresh tensor: BENCHMARKS.md, session 15)."""
        if self.bits != 1:
            return None
        assert self._items is not None
        return np.empty((min(rows, self.num_items), self._items.bytes_per_row, 8), np.float32)

    def _block(self, start: int, rows: int, buf: np.ndarray | None = None) -> Tensor:
        """float32 ``[<= rows, dim]``: the item codes of the block of ``rows`` items from ``start`` on,
        1-bit items of a mixed retriever unpacked here into ``buf`` from :meth:`_block_buffer`
        (one lookup per code byte, valid until the next call), so only a block is ever unpacked;
        b-bit int8 values converted to a new tensor; float32 items returned in place."""
        stop = min(start + rows, self.num_items)
        if self.bits == 1:
            assert self._items is not None and buf is not None
            packed = self._items.packed[start:stop]
            out = buf[: stop - start]
            np.take(_SIGNS, packed, axis=0, out=out, mode="clip")  # uint8 indices are in range; "clip" avoids a buffered copy
            block = torch.from_numpy(out.reshape(stop - start, -1))
            return block if block.shape[1] == self.dim else block[:, : self.dim].contiguous()  # drop the padding bits
        return self._values[start:stop].to(torch.float32)

    @property
    def certified_share(self) -> float:
        """1-bit score ranking: share of the last batch's queries answered exactly without brute
        force (:class:`hqgnn.scaled_hamming.ScaledHammingIndex`); NaN for other paths."""
        return self._scaled.last_certified if self._scaled is not None else float("nan")

    @property
    def batch_invariant(self) -> bool:
        """Whether every score, hence every user's top-K, is the same bit for bit whatever batch
        the user is ranked in: integer inner products (1-bit and b-bit codes, exact in float32 up
        to ``dim * 2^(2b-2) <= 2^24``) and float users on the exact grid (in slices where one grid
        would be too coarse); not float32 × float32 (a GEMM's summation order, so its rounding,
        depends on the batch shape)."""
        if is_float(self.bits):
            return False
        if self.mixed:
            return self._grid_bits is not None
        return self.bits == 1 or self.dim * 4 ** (self.bits - 1) <= 1 << 24

    # ------------------------------------------------------------------ scores

    def _queries(self, users: np.ndarray) -> Tensor:
        """float32 ``[S, B, dim]``: the query rows of ``users`` (int codes, ``S = 1``), or float
        users on the exact grid in ``S`` = ``_grid_slices`` slices (:func:`grid_slices`)."""
        q = torch.from_numpy(self.users.value_rows(users)).to(torch.float32)
        if self._grid_bits is None:
            return q[None]
        return grid_slices(q, self._grid_bits, self._grid_slices)

    @staticmethod
    def _score_block(q: Tensor, block: Tensor, out: Tensor | None = None) -> Tensor:
        """``[B, n]`` float32 ``<q_u, q_i>`` of :meth:`_queries` ``q`` (``[S, B, dim]``) and an item
        ``block`` (``[n, dim]``): one GEMM over the stacked slices, then the slices' exact scores
        added in slice order."""
        slices, users = q.shape[0], q.shape[1]
        if slices == 1:
            return torch.matmul(q[0], block.T, out=out)
        parts = (q.reshape(slices * users, -1) @ block.T).view(slices, users, block.shape[0])
        total = parts[0] if out is None else out.copy_(parts[0])
        for part in parts[1:]:
            total += part
        return total

    def scores(self, users: Tensor | np.ndarray) -> Tensor:
        """Scores of every item for ``users`` (int64 ``[B]``): ``[B, num_items]``, larger is better.

        float32 ``s_i <q_u, q_i>`` (``rank_by="score"``), or int32 ``d − H`` (``"hamming"``:
        integer, so :func:`hqgnn.metrics.masked_topk` breaks its ties exactly).
        """
        u = _as_numpy(users)
        if self.bits == 1 and not self.mixed:
            if self._scaled is not None:
                ham = self._scaled.hamming(self.users.packed[u])
            else:
                assert self._items is not None
                ham = hamming_matrix(self.users.packed[u], self._items.packed)
            if self.rank_by == "hamming":
                return torch.from_numpy(self.dim - ham)
            return torch.from_numpy(one_bit_score(ham, self._item_scale, self.dim))
        q = self._queries(u)
        out = torch.empty(len(u), self.num_items, dtype=torch.float32)
        buf = self._block_buffer(self.item_block)
        for start in range(0, self.num_items, self.item_block):
            block = self._block(start, self.item_block, buf)
            self._score_block(q, block, out=out[:, start : start + block.shape[0]])
        if not is_float(self.bits):
            out *= self._scale
        return out

    def with_queries(self, users: CodeTable) -> Retriever:
        """This retriever with other query rows ``users`` (the same width and ``dim`` as its users), sharing the item
        side (codes, FAISS indexes): no index is rebuilt, so a one-user retriever is cheap at any
        catalog size (a service answers each request this way). E.g. item-to-item similarity:
        ``r.with_queries(r.items)`` (a float-users retriever takes item codes as queries too: they
        are dequantized, which scales each query's scores by its own positive scale only)."""
        if self.mixed and users.bits == self.bits and users.dim == self.dim:
            users = CodeTable.from_float(users.dequantize())
        if users.bits != self.user_bits or users.dim != self.dim:
            raise ValueError(f"query codes ({users.bits} bits, dim {users.dim}) differ from the user codes this "
                             f"retriever ranks for ({self.user_bits} bits, dim {self.dim})")
        one = copy.copy(self)
        one.users = users
        return one

    # ------------------------------------------------------------------ top-K

    def recommend(self, user: int, k: int, seen: InteractionMatrix) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items of one user, best first, the user's ``seen`` items (a ``[1, num_items]``
        matrix: row 0 is this user) skipped: int64 item indices ``[<=k]`` and the model's scores
        ``s_u s_i <q_u, q_i>`` (float32; int32 Hamming distances for ``rank_by="hamming"``).
        The ranking is :meth:`topk`'s, ties by lower item index."""
        one = self.with_queries(self.users.subset(np.array([user])))
        got, scores = one.topk(np.array([0]), k, [seen])
        keep = got[0] >= 0
        if self.rank_by == "hamming":
            return got[0][keep], scores[0][keep]
        return got[0][keep], scores[0][keep] * self.users.scale[user]

    def topk(
        self,
        users: Tensor | np.ndarray,
        k: int,
        exclude: Sequence[InteractionMatrix] = (),
        batch_size: int = 256,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per user, best first, items of ``exclude`` (e.g. train) skipped.

        Returns int64 item indices ``[B, k]`` and their scores ``[B, k]`` (float32 model score
        over ``s_u``; Hamming distances for ``rank_by="hamming"``). Ties: lower item index first.
        A user with fewer than ``k`` allowed items gets item ``-1`` in the remaining slots.
        """
        u_all = _as_numpy(users)
        k = min(k, self.num_items)
        items_out = np.empty((len(u_all), k), dtype=np.int64)
        scores_out = np.empty((len(u_all), k), dtype=np.int32 if self.rank_by == "hamming" else np.float32)
        for start in range(0, len(u_all), batch_size):
            u = u_all[start : start + batch_size]
            sl = slice(start, start + len(u))
            if self._index is not None:
                items_out[sl], scores_out[sl] = self._faiss_topk(u, k, exclude)
            elif self._scaled is not None:
                banned = [np.concatenate(rows) for rows in zip(*(_row_items(m, u) for m in exclude), strict=True)] if exclude else None
                items_out[sl], scores_out[sl] = self._scaled.search(self.users.packed[u], k, banned)
            elif self.bits == 1 and not self.mixed:
                items_out[sl], scores_out[sl] = self._brute_force_1bit(u, k, exclude)
            else:
                items_out[sl], scores_out[sl] = self._blocked_topk(u, k, exclude)
        return items_out, scores_out

    def _brute_force_1bit(self, users: np.ndarray, k: int, exclude: Sequence[InteractionMatrix], chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """1-bit model-score top-``k`` of small catalogs: full score rows, ``chunk`` users at a
        time (a ``[32, items]`` block stays in cache; 256 rows at once ran 2x slower at 41 k items)."""
        items_out = np.empty((len(users), k), dtype=np.int64)
        scores_out = np.empty((len(users), k), dtype=np.float32)
        for start in range(0, len(users), chunk):
            u = users[start : start + chunk]
            idx, top = _best_of(self.scores(u), exclusion_mask(torch.from_numpy(u), exclude), k)
            items_out[start : start + len(u)] = np.where(torch.isfinite(top).numpy(), idx.numpy(), NO_ITEM)
            scores_out[start : start + len(u)] = top.numpy()
        return items_out, scores_out

    def _blocked_topk(self, users: np.ndarray, k: int, exclude: Sequence[InteractionMatrix]) -> tuple[np.ndarray, np.ndarray]:
        """Float and b-bit top-``k``: per item block, scores → mask → exact top-``k``; then merge.

        The union of the blocks' top-``k`` under (score desc, index asc) holds the global top-``k``
        under the same total order, so the merge is exact, ties included."""
        q = self._queries(users)
        mask = exclusion_mask(torch.from_numpy(users), exclude)
        cand_idx, cand_scores = [], []
        rows = self.block_rows(len(users))
        buf = self._block_buffer(rows)
        for start in range(0, self.num_items, rows):
            block = self._block(start, rows, buf)
            scores = self._score_block(q, block)
            if not is_float(self.bits):
                scores *= self._scale[start : start + block.shape[0]]
            idx, block_top = _best_of(scores, mask[:, start : start + block.shape[0]] if mask is not None else None, k)
            cand_idx.append(idx + start)
            cand_scores.append(block_top)
        idx, scores = torch.cat(cand_idx, 1), torch.cat(cand_scores, 1)
        by_item = torch.argsort(idx, dim=1, stable=True)  # column order = item order: ties → lower item
        idx, scores = idx.gather(1, by_item), scores.gather(1, by_item)
        best = masked_topk(scores, None, k)
        items, top = idx.gather(1, best).numpy(), scores.gather(1, best).numpy()
        items[~np.isfinite(top)] = NO_ITEM  # fewer than k allowed items
        return items, top

    def _faiss_topk(self, users: np.ndarray, k: int, exclude: Sequence[InteractionMatrix]) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search for ``k + (most excluded items of a user)``, then drop excluded.

        IndexBinaryFlat returns (distance asc, id asc), so the first ``k`` survivors are exact;
        IndexBinaryHNSW is approximate (and may return fewer: id ``-1``).
        """
        assert self._index is not None
        queries = np.ascontiguousarray(self.users.packed[users])
        seen = [_row_items(m, users) for m in exclude]
        extra = max((sum(len(s[r]) for s in seen) for r in range(len(users))), default=0)
        kk = min(self.num_items, k + extra)
        if isinstance(self._index, faiss.IndexBinaryHNSW):
            self._index.hnsw.efSearch = max(self.hnsw_ef_search, kk)
        dist, ids = self._index.search(queries, kk)
        if not exclude:
            return ids.astype(np.int64), dist.astype(np.int32)
        out_i = np.empty((len(users), k), dtype=np.int64)
        out_d = np.empty((len(users), k), dtype=np.int32)
        for r in range(len(users)):
            banned = np.concatenate([s[r] for s in seen]) if seen else np.empty(0, np.int64)
            keep = (ids[r] >= 0) & ~np.isin(ids[r], banned)
            keep_ids, keep_d = ids[r][keep][:k], dist[r][keep][:k]
            out_i[r, : len(keep_ids)], out_d[r, : len(keep_ids)] = keep_ids, keep_d
            if len(keep_ids) < k:  # fewer unseen items than k
                out_i[r, len(keep_ids) :], out_d[r, len(keep_ids) :] = -1, np.iinfo(np.int32).max
        return out_i, out_d


def rerank_scores(
    codes: Retriever,
    user_emb: Tensor,
    item_emb: Tensor,
    r: int,
    exclude: Sequence[InteractionMatrix] = (),
) -> Callable[[Tensor], Tensor]:
    """HashGNN-style score function: top-``r`` items by codes (``exclude`` masked), re-scored with
    float embeddings (``user_emb`` ``[num_users, d]``, ``item_emb`` ``[num_items, d]``); every
    other item scores ``-inf``. For :func:`hqgnn.metrics.evaluate_ranking`."""

    def score_fn(users: Tensor) -> Tensor:
        u = _as_numpy(users)
        cand = masked_topk(codes.scores(u), exclusion_mask(torch.from_numpy(u), exclude), r)
        fine = torch.einsum("bd,brd->br", user_emb[users.cpu()], item_emb[cand])
        out = torch.full((len(u), codes.num_items), float("-inf"))
        out.scatter_(1, cand, fine)
        return out

    return score_fn


def _best_of(scores: Tensor, mask: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
    """Column indices ``[B, k]`` and scores of the ``k`` best of ``scores`` ``[B, n]`` (float,
    modified in place: masked entries become ``-inf``), ties to the lower column."""
    if mask is not None:
        scores.masked_fill_(mask, float("-inf"))
    idx = masked_topk(scores, None, k)
    return idx, scores.gather(1, idx)


def _index_codes(index: faiss.IndexBinary) -> np.ndarray:
    """uint8 ``[ntotal, code_size]`` view of the codes a flat or HNSW binary index stores, in
    insertion (item) order, no copy; valid while ``index`` lives and is not added to."""
    flat = faiss.downcast_IndexBinary(index.storage) if isinstance(index, faiss.IndexBinaryHNSW) else index
    return storage_view(cast(faiss.IndexBinaryFlat, flat))


def _as_numpy(users: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(users, Tensor):
        return users.detach().cpu().numpy().astype(np.int64)
    return np.asarray(users, dtype=np.int64)


def _row_items(m: InteractionMatrix, users: np.ndarray) -> list[np.ndarray]:
    indptr, indices = m.indptr.numpy(), m.indices.numpy()
    return [indices[indptr[u] : indptr[u + 1]] for u in users]
