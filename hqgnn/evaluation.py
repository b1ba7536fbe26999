"""Offline evaluation of a run: float embeddings and codes through ONE code path.

Every variant is a score function handed to :func:`hqgnn.metrics.evaluate_ranking` (full
ranking over all items, train items masked; on test, valid items masked too):

| variant | scores |
|---|---|
| ``float`` | float32 ``e_u · e_i`` (the encoder output at the best epoch) |
| ``codes`` | the model's code score ``s_i <q_u, q_i>`` (1 bit: ``s_i (d − 2H)`` by popcount; float users: ``s_i <e_u, q_i>``) |
| ``codes_hamming`` | 1 bit only: pure Hamming distance (ignores ``s_i``; the SQL query's ranking) |
| ``rerank`` | optional, HashGNN-style: top-R by ``codes``, re-ranked with float embeddings |

Latency per query is the wall time of :meth:`Retriever.topk` (top-``max(ks)``, masked) over a
sample of users, divided by their number, median of a few repeats. Memory per item is the bytes
the retriever holds per item (``search_bytes_per_item``) and the bytes of the exported code plus
its scale (``bytes_per_item``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hqgnn.bits import is_float
from hqgnn.codes import CodeTable
from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import evaluate_ranking
from hqgnn.quant import QuantizedTable
from hqgnn.retrieval import Retriever, rerank_scores

Progress = Callable[[str], None]


def code_tables(
    user_emb: Tensor, item_emb: Tensor, bits: int,
    user_q: QuantizedTable | None = None, item_q: QuantizedTable | None = None,
) -> tuple[CodeTable, CodeTable]:
    """User and item :class:`CodeTable`s of a run: its quantized tables, float32 for 32 bits; a side
    without its quantized table (``user_q`` None: a ``float_users`` run) ships its float32 rows."""
    if is_float(bits) or item_q is None:
        return CodeTable.from_float(user_emb.cpu().numpy()), CodeTable.from_float(item_emb.cpu().numpy())
    items = CodeTable.from_values(item_q.codes.cpu().numpy(), item_q.scale.cpu().numpy(), bits)
    if user_q is None:
        return CodeTable.from_float(user_emb.cpu().numpy()), items
    return CodeTable.from_values(user_q.codes.cpu().numpy(), user_q.scale.cpu().numpy(), bits), items


@dataclass(frozen=True)
class Variant:
    """One way of scoring: name, its retriever (latency, memory) and its score function."""

    name: str
    bits: int
    rank_by: str
    retriever: Retriever
    score_fn: Callable[[Tensor], Tensor]
    search_bytes_per_item: int
    bytes_per_item: int
    extra: dict[str, Any] = field(default_factory=dict)


def build_variants(
    user_emb: Tensor,
    item_emb: Tensor,
    users: CodeTable,
    items: CodeTable,
    rerank_r: int | None = None,
    rerank_exclude: Sequence[InteractionMatrix] = (),
) -> list[Variant]:
    """The variants of a run (``float`` always; ``codes``, ``codes_hamming`` (1 bit) and
    ``rerank`` (when ``rerank_r``) for quantized runs)."""
    dim = users.dim
    fu, fi = CodeTable.from_float(user_emb.cpu().numpy()), CodeTable.from_float(item_emb.cpu().numpy())
    fr = Retriever(fu, fi)
    out = [Variant("float", 32, "score", fr, fr.scores, 4 * dim, 4 * dim)]
    if is_float(items.bits):
        return out
    cr = Retriever(users, items, "score")
    packed = items.bytes_per_row
    searched = packed if items.bits == 1 else dim  # b-bit codes are scored as int8 values (1 bit: packed, or unpacked per block for float users)
    out.append(Variant("codes", items.bits, "score", cr, cr.scores, searched + 4, packed + 4))
    if users.bits == 1:
        hr = Retriever(users, items, "hamming")
        out.append(Variant("codes_hamming", 1, "hamming", hr, hr.scores, packed, packed))
    if rerank_r:
        fn = rerank_scores(cr, user_emb.cpu(), item_emb.cpu(), rerank_r, rerank_exclude)
        out.append(Variant("rerank", items.bits, f"codes top-{rerank_r} + float", cr, fn, searched + 4 + 4 * dim, packed + 4 + 4 * dim, {"rerank_r": rerank_r}))
    return out


def measure_latency(
    variant: Variant, users: np.ndarray, k: int, exclude: Sequence[InteractionMatrix], repeats: int = 3
) -> float:
    """Median milliseconds per query of a masked top-``k`` over all items for ``users``."""
    if len(users) == 0:
        return float("nan")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if variant.name == "rerank":  # score function already masks and re-ranks
            from hqgnn.metrics import masked_topk

            masked_topk(variant.score_fn(torch.from_numpy(users)), None, k)
        else:
            variant.retriever.topk(users, k, exclude)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / len(users)


def evaluate_run(
    user_emb: Tensor,
    item_emb: Tensor,
    users: CodeTable,
    items: CodeTable,
    train: InteractionMatrix,
    valid: InteractionMatrix,
    test: InteractionMatrix,
    ks: Sequence[int] = (20, 50),
    batch_size: int = 1024,
    rerank_r: int | None = None,
    latency_users: int = 256,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Metrics of every variant on valid (train masked) and test (train and valid masked).

    Returns one row per (variant, split): ``variant, bits, rank_by, split, users,
    recall@K, ndcg@K, precision@K, hit_rate@K, latency_ms_per_query, search_bytes_per_item,
    bytes_per_item``.
    """
    say = progress or (lambda _msg: None)
    rows: list[dict[str, Any]] = []
    excludes = {"valid": (train,), "test": (train, valid)}
    for split_name, truth in (("valid", valid), ("test", test)):
        variants = build_variants(user_emb, item_emb, users, items, rerank_r, excludes[split_name])
        eligible = torch.nonzero(truth.row_lengths() > 0).flatten().numpy()
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(eligible, size=min(latency_users, len(eligible)), replace=False)) if len(eligible) else eligible
        for v in variants:
            say(f"{v.name} on {split_name}")
            metrics = evaluate_ranking(v.score_fn, truth, excludes[split_name], ks, batch_size)
            latency = measure_latency(v, sample, max(ks), excludes[split_name])
            rows.append({
                "variant": v.name, "bits": v.bits, "rank_by": v.rank_by, "split": split_name,
                "users": int(metrics.pop("users")), **metrics,
                "latency_ms_per_query": latency, "latency_users": len(sample),
                "search_bytes_per_item": v.search_bytes_per_item, "bytes_per_item": v.bytes_per_item,
            })
    return rows
