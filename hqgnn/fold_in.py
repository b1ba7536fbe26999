"""Fold-in: a code for a user the model never trained on, from the items they interacted with.

LightGCN's math with the published item side held fixed: a user's first propagation layer is
``e_u = sum_{i in N(u)} e_i / sqrt(|N(u)| |N(i)|)`` (the symmetric normalisation of ``Â``),
here over the items' published (dequantized) embeddings. The user's ranking only depends on the
direction of ``e_u`` (every item score is multiplied by the same positive user scale), so no
retraining and no user-side parameters are needed; the vector is then quantized with the model's
own quantizer (:func:`hqgnn.quant.quantize`), so a folded-in user is scored exactly like a
trained one: ``s_u s_i <q_u, q_i>`` (a ``float_users`` model keeps the float vector, 32 bits).

Used by ``hqgnn foldin`` (new users of the warehouse), ``hqgnn recommend --items`` and the HTTP
service (an anonymous list of items): :func:`fold_in` for one list, :func:`fold_in_users` for a
batch, :func:`fold_in_codes` for a batch's codes (with optional
user-code refinement, what ``hqgnn foldin`` runs), :func:`recommend_for_items` for the whole answer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hqgnn.bits import is_float
from hqgnn.code_refinement import refine_round
from hqgnn.codes import CodeTable
from hqgnn.interactions import InteractionMatrix
from hqgnn.quant import quantize
from hqgnn.retrieval import RankBy, Retriever


def fold_in(item_rows: Tensor, item_table: Tensor, item_degree: Tensor | None = None) -> Tensor:
    """float32 ``[d]``: the folded-in user vector of one list of items.

    Args:
        item_rows: int64 ``[n]`` rows of ``item_table`` (the user's items; duplicates count once).
        item_table: float ``[num_items, d]`` item embeddings (published codes dequantized).
        item_degree: ``[num_items]`` train interactions per item (``N(i)``; None: all 1).
    Example:
        >>> fold_in(torch.tensor([0, 2]), torch.eye(3), torch.tensor([1.0, 4.0, 4.0]))
        tensor([0.7071, 0.0000, 0.3536])
    """
    rows = _unique_rows(item_rows, item_table.shape[0])
    weights = _weights(rows, item_degree, item_table.shape[0]) / rows.numel() ** 0.5
    return (weights[:, None] * item_table[rows].float()).sum(0)


def fold_in_users(interactions: InteractionMatrix, item_table: Tensor, item_degree: Tensor | None = None) -> Tensor:
    """float32 ``[n_users, d]``: :func:`fold_in` of every row of ``interactions`` ``[n_users, num_items]``
    at once (one weighted scatter-add over the stored entries); rows without items are zero."""
    if interactions.num_items != item_table.shape[0]:
        raise ValueError(f"interactions have {interactions.num_items} items, item_table {item_table.shape[0]} rows")
    lengths = interactions.row_lengths()
    w = _weights(interactions.indices, item_degree, interactions.num_items)
    w = w / lengths.float().clamp_min(1).sqrt().repeat_interleave(lengths)
    out = torch.zeros(interactions.num_users, item_table.shape[1])
    return out.index_add_(0, interactions.rows(), w[:, None] * item_table.float()[interactions.indices])


def code_rows(vectors: Tensor, bits: int) -> CodeTable:
    """The codes of folded-in vectors ``[n, d]`` with the model's quantizer (float32 for 32 bits)."""
    if is_float(bits):
        return CodeTable.from_float(vectors.detach().cpu().numpy())
    q = quantize(vectors, bits)
    return CodeTable.from_values(q.codes.numpy(), q.scale.numpy(), bits)


def fold_in_codes(
    interactions: InteractionMatrix,
    item_table: Tensor,
    bits: int,
    item_degree: Tensor | None = None,
    refine_rounds: int = 0,
    temperature: float = 2.0,
    top_m: int = 1024,
) -> CodeTable:
    """Codes ``[n_users, ...]`` of every row of ``interactions`` ``[n_users, num_items]``, folded in.

    :func:`fold_in_users` over ``item_table`` ``[num_items, d]`` (``hqgnn foldin``: the published
    item codes dequantized; on Gowalla they beat the run's float item outputs, BENCHMARKS.md issue
    16), then, for 1 bit, up to ``refine_rounds`` rounds of :func:`hqgnn.code_refinement.refine_round` (the user's
    signs placed against the item codes on its own items, the objective training's refinement
    uses; stops early after a round without flips), then the model's quantizer
    (:func:`code_rows`). Rows without items get the code of a zero vector.
    """
    vectors = fold_in_users(interactions, item_table, item_degree)
    if bits == 1:
        for _ in range(refine_rounds):
            vectors, flips = refine_round(vectors, item_table.float(), interactions, temperature, top_m)
            if flips == 0:
                break
    return code_rows(vectors, bits)


def recommend_for_items(
    item_rows: Tensor,
    items: CodeTable | Retriever,
    k: int = 20,
    item_degree: Tensor | None = None,
    rank_by: RankBy = "score",
    user_bits: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item rows (int64 ``[<=k]``) and scores for an anonymous list of items: fold in,
    quantize like a user, rank every item but the given ones (what ``hqgnn recommend --items`` and
    ``POST /recommend`` answer).

    ``items``: the item codes, or a :class:`Retriever` already built over them (a service's: its
    index is reused and only the given items' codes are read; ``rank_by`` is then the
    retriever's). Only the given rows are dequantized, with the same arithmetic as
    :func:`fold_in` over the whole table, so both give the same code. ``user_bits``: the width of
    the folded-in user (default: the retriever's user width, or the items' width; 32 for a
    ``float_users`` model, whose users are float vectors).
    """
    num_items = items.num_items if isinstance(items, Retriever) else len(items)
    rows = _unique_rows(item_rows, num_items)
    degree_all = None if item_degree is None else torch.as_tensor(item_degree, dtype=torch.float32)
    if degree_all is not None and degree_all.numel() != num_items:
        raise ValueError(f"item_degree has {degree_all.numel()} entries, expected {num_items}")
    picked = items.item_rows(rows.numpy()) if isinstance(items, Retriever) else items.subset(rows.numpy())
    degree = None if degree_all is None else degree_all[rows]
    vector = fold_in(torch.arange(rows.numel()), torch.from_numpy(picked.dequantize()), degree)
    if user_bits is None:
        user_bits = items.user_bits if isinstance(items, Retriever) else picked.bits
    user = code_rows(vector[None], user_bits)
    seen = InteractionMatrix.from_pairs(np.zeros(rows.numel(), np.int64), rows.numpy(), 1, num_items)
    retriever = items.with_queries(user) if isinstance(items, Retriever) else Retriever(user, items, rank_by)
    return retriever.recommend(0, k, seen)


def _unique_rows(item_rows: Tensor, num_items: int) -> Tensor:
    """int64 ``[n]``: the distinct ``item_rows``, checked non-empty and within ``[0, num_items)``."""
    rows = torch.unique(torch.as_tensor(item_rows, dtype=torch.int64))
    if rows.numel() == 0:
        raise ValueError("fold_in needs at least one item row, got none")
    if int(rows.min()) < 0 or int(rows.max()) >= num_items:
        raise ValueError(f"item_rows out of range [0, {num_items}): min {int(rows.min())}, max {int(rows.max())}")
    return rows


def _weights(rows: Tensor, item_degree: Tensor | None, num_items: int) -> Tensor:
    """float32 ``1 / sqrt(N(i))`` of each row (1 without degrees; degree 0 counts as 1)."""
    if item_degree is None:
        return torch.ones(rows.numel())
    degree = torch.as_tensor(item_degree, dtype=torch.float32)
    if degree.numel() != num_items:
        raise ValueError(f"item_degree has {degree.numel()} entries, expected {num_items}")
    return degree[rows].clamp_min(1).rsqrt()
