"""Full-ranking top-K metrics: Recall, NDCG, Precision, HitRate (the LightGCN protocol).

One code path for every kind of score (float embeddings, dequantized codes, Hamming
similarities): callers hand in a ``score_fn`` over a batch of users; known items are masked
before the top-K. NDCG's ideal DCG counts ``min(|truth|, K)`` hits (the LightGCN convention).
Users without ground-truth items are skipped (they carry no signal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from hqgnn.interactions import InteractionMatrix

METRIC_NAMES = ("recall", "ndcg", "precision", "hit_rate")


def ranking_metrics(topk: Tensor, truth: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Per-user metrics from ranked lists.

    Args:
        topk: int64 ``[B, K]`` item indices, best first (``K >= max(ks)``).
        truth: bool ``[B, num_items]`` ground-truth items of each user.
        ks: cut-offs.
    Returns:
        ``{"recall@20": Tensor[B], "ndcg@20": ..., "precision@20": ..., "hit_rate@20": ...}``.
    """
    kmax = max(ks)
    if topk.shape[1] < kmax:
        raise ValueError(f"topk has {topk.shape[1]} columns, fewer than the largest cut-off {kmax}")
    hits = truth.gather(1, topk[:, :kmax]).float()  # [B, kmax]
    n_truth = truth.sum(1).float()  # [B]
    discounts = 1.0 / torch.log2(torch.arange(2, kmax + 2, device=topk.device, dtype=torch.float32))
    ideal = torch.cumsum(discounts, 0)  # ideal[j] = IDCG with j+1 hits
    out: dict[str, Tensor] = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(1)
        idcg = ideal[(n_truth.clamp(min=1, max=k) - 1).long()]
        out[f"recall@{k}"] = n_hit / n_truth.clamp(min=1)
        out[f"ndcg@{k}"] = (h * discounts[:k]).sum(1) / idcg
        out[f"precision@{k}"] = n_hit / k
        out[f"hit_rate@{k}"] = (n_hit > 0).float()
    return out


def masked_topk(scores: Tensor, exclude: Tensor | None, k: int) -> Tensor:
    """int64 ``[B, k]``: the ``k`` best items per row of ``scores`` ``[B, num_items]``, best first.

    Items where ``exclude`` (bool, same shape) is true rank last. Ties are broken exactly by the
    lower item index, so results never depend on the kernel (and SQL top-K can match them).
    ``torch.topk`` alone promises no order among ties and a full stable sort costs ~40x more:

    - integer scores (Hamming similarities, integer inner products) tie constantly: one
      ``topk`` over the composite key ``score * n + (n - 1 - index)`` is exact;
    - float scores: ``topk`` of ``k + 1``; only rows whose k-th and (k+1)-th values are equal
      (a tie straddles the cut-off) take every item above the k-th value plus the
      lowest-indexed items equal to it; finally order the k by (score, index).
    """
    n = scores.shape[1]
    k = min(k, n)
    if not torch.is_floating_point(scores):
        key = scores.to(torch.int64) * n + (n - 1 - torch.arange(n, device=scores.device))
        if exclude is not None:
            key = key.masked_fill(exclude, torch.iinfo(torch.int64).min)
        return torch.topk(key, k, dim=1).indices
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    vals, idx = torch.topk(scores, min(k + 1, n), dim=1)
    idx = idx[:, :k]
    if k < n:  # a tie straddles the cut-off only where the k-th and (k+1)-th values are equal
        tied = torch.nonzero(vals[:, k - 1] == vals[:, k]).flatten()
        if tied.numel():
            idx = idx.clone()
            idx[tied] = _lowest_index_ties(scores[tied], vals[tied, k - 1 : k], k)
    idx = torch.sort(idx, dim=1).values
    order = torch.sort(scores.gather(1, idx), dim=1, descending=True, stable=True).indices
    return idx.gather(1, order)


def _lowest_index_ties(scores: Tensor, kth: Tensor, k: int) -> Tensor:
    """int64 ``[B, k]`` (any order): every item above ``kth`` ``[B, 1]`` plus the lowest-indexed
    items equal to it."""
    above, equal = scores > kth, scores == kth
    need = k - above.sum(1, keepdim=True)
    chosen = above | (equal & (torch.cumsum(equal, 1, dtype=torch.int32) <= need))
    return torch.nonzero(chosen)[:, 1].view(-1, k)  # row-major: ascending index per row


def exclusion_mask(users: Tensor, exclude: Sequence[InteractionMatrix], device: torch.device | str = "cpu") -> Tensor | None:
    """bool ``[len(users), num_items]``: items of ``users`` in any of ``exclude`` (None if empty)."""
    mask = None
    for m in exclude:
        rows = m.dense_rows(users, device)
        mask = rows if mask is None else mask | rows
    return mask


def per_user_batches(
    score_fn: Callable[[Tensor], Tensor],
    truth: InteractionMatrix,
    exclude: Sequence[InteractionMatrix] = (),
    ks: Sequence[int] = (20, 50),
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> Iterator[dict[str, Tensor]]:
    """Per-user metrics (``{"recall@20": [B], ...}`` on ``device``), one batch of the users with at
    least one ground-truth item at a time, in user order. Arguments as :func:`evaluate_ranking`."""
    users = torch.nonzero(truth.row_lengths() > 0).flatten()
    kmax = max(ks)
    for start in range(0, users.numel(), batch_size):
        batch = users[start : start + batch_size]
        scores = score_fn(batch.to(device))
        topk = masked_topk(scores, exclusion_mask(batch, exclude, device), kmax)
        yield ranking_metrics(topk, truth.dense_rows(batch, device), ks)


def evaluate_ranking(
    score_fn: Callable[[Tensor], Tensor],
    truth: InteractionMatrix,
    exclude: Sequence[InteractionMatrix] = (),
    ks: Sequence[int] = (20, 50),
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Mean metrics over users with at least one ground-truth item.

    Args:
        score_fn: maps int64 user indices ``[B]`` (on ``device``) to scores ``[B, num_items]``.
        truth: the split evaluated (valid or test).
        exclude: splits whose items are masked (train; and valid when evaluating test).
        ks: cut-offs; batch_size: users per batch (bounds memory at ``B x num_items``).
    Returns:
        ``{"recall@20": ..., ..., "users": n}``.
    """
    sums: dict[str, Tensor] = {}  # float64 on `device`: read back once, not per batch and metric
    n = 0  # users with ground truth: the batches' sizes
    for per_user in per_user_batches(score_fn, truth, exclude, ks, batch_size, device):
        n += len(next(iter(per_user.values())))
        for name, values in per_user.items():
            total = values.sum().double()
            sums[name] = sums[name] + total if name in sums else total
    totals = torch.stack(list(sums.values())).tolist() if sums else []
    result = {name: total / max(n, 1) for name, total in zip(sums, totals, strict=True)}
    result["users"] = float(n)
    return result
