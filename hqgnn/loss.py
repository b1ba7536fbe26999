"""Ranking losses (BPR, sampled softmax) and LightGCN's L2 penalty on the layer-0 embeddings of a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(user: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Mean ``-log σ(<u, p> − <u, n>)`` over a batch of ``[B, d]`` user/positive rows and
    ``[B, d]`` negatives, or ``[B, k, d]`` (k negatives per positive, averaged)."""
    pos_score = (user * pos).sum(dim=1)
    if neg.dim() == 3:
        return F.softplus(torch.einsum("bd,bkd->bk", user, neg) - pos_score.unsqueeze(1)).mean()
    neg_score = (user * neg).sum(dim=1)
    return F.softplus(neg_score - pos_score).mean()


def sampled_softmax_loss(user: Tensor, pos: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """Mean cross-entropy of each positive against negatives shared by the batch, on cosine scores.

    ``user``, ``pos``: ``[B, d]``; ``negatives``: ``[M, d]``. Row ``b``'s logits are
    ``cos(u_b, p_b) / τ`` and ``cos(u_b, n_m) / τ`` for every ``m``; the loss is
    ``-log softmax(logits)[positive]``. Scores are cosines, so a model trained with it ranks with
    normalised rows (:meth:`hqgnn.trainer.Trainer.embeddings`). One ``[B, M]`` product per step:
    every row is contrasted with ``M`` items for the price of one propagation.
    """
    u, p, n = F.normalize(user, dim=1), F.normalize(pos, dim=1), F.normalize(negatives, dim=1)
    pos_logit = (u * p).sum(dim=1, keepdim=True)  # [B, 1]
    logits = torch.cat([pos_logit, u @ n.T], dim=1) / temperature  # [B, 1 + M]
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def l2_penalty(embedding: Tensor, rows: Tensor, weight: Tensor) -> Tensor:
    """``½ Σ_r weight_r ||embedding[rows_r]||²``: LightGCN's regulariser over the layer-0 rows of a batch.

    ``embedding`` ``[N, d]``; ``rows`` int64 ``[R]`` (a row may repeat); ``weight`` ``[R]``. When a
    batch holds at least as many rows as the table (``R ≥ N``: Gowalla's batches of 32,768 triples
    hold 98 k rows, 196 k with 4 negatives per positive, of a 71 k-row table), the weights are summed
    per node and the penalty is taken over the whole table: the same value and gradient without
    gathering ``R`` rows and scattering their gradient back. Smaller batches gather their rows.
    """
    if rows.numel() >= embedding.shape[0]:
        node_weight = torch.zeros(embedding.shape[0], dtype=embedding.dtype, device=embedding.device).index_add_(0, rows, weight)
        return 0.5 * (node_weight * embedding.pow(2).sum(dim=1)).sum()
    return 0.5 * (weight * embedding[rows].pow(2).sum(dim=1)).sum()
