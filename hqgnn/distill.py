"""Ranking distillation from a float teacher into a quantized fine-tune (BiGeaR's idea; issue 19).

A warm run from a trained float model keeps that model's ranking as a teacher. Before the first
step the parent's propagated outputs rank every item for every user; each user's ``top`` highest
scored items not in train are the *teacher's positives* (``[U, top]``). Each step then adds, per
batch user, one teacher positive drawn with weight ``exp(-r / decay)`` over its teacher rank
``r``, ranked above the step's first negative with the same quantizer as the main term::

    loss = BPR(u, pos, neg) + weight * BPR(u, teacher item, neg) + l2 * reg   (no L2 on teacher rows)

With ``distill_order_weight`` the step also teaches the order *within* the teacher's list: the drawn
teacher item (rank ``r``) is ranked above a second teacher item of rank ``r'`` drawn uniformly from
the list's second half, on the rows where ``r < r'`` (:func:`order_loss`)::

    + order_weight * mean_rows [r < r'] · -log σ(<u, t_r> − <u, t_r'>)

The first term only says "the teacher's items beat a random item"; which of them reach a user's
top 20 is decided by their order, and only the second term speaks to it (BENCHMARKS.md, "The order
within the teacher's list": +0.0101 test Recall@20 for the 1-bit float-users code on Gowalla).

Written here rather than taken from a library: it is a sampler of one extra positive per row on
top of our BPR step; no maintained package ships it for a LightGCN trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import exclusion_mask


@torch.no_grad()
def teacher_positives(users: Tensor, items: Tensor, train: InteractionMatrix, top: int, batch: int = 2048) -> Tensor:
    """int64 ``[U, top]``: each user's ``top`` highest-scored items under ``users @ items.T``
    (float ``[U, d]``, ``[I, d]``), train items excluded, best first. ``top`` is capped at ``I``;
    a user with fewer unseen items than ``top`` gets masked items last (scored ``-inf``)."""
    top = min(top, items.shape[0])
    out = []
    for start in range(0, users.shape[0], batch):
        rows = torch.arange(start, min(start + batch, users.shape[0]))
        scores = users[rows.to(users.device)] @ items.T
        mask = exclusion_mask(rows, [train], scores.device)
        if mask is not None:
            scores.masked_fill_(mask, float("-inf"))
        out.append(torch.topk(scores, top, dim=1).indices)
    return torch.cat(out)


class TeacherRanking:
    """The teacher's positives ``[U, top]`` (int64) and the draw of one per batch user.

    ``decay``: teacher rank ``r`` is drawn with weight ``exp(-r / decay)``: most draws fall in the
    first few ``decay`` ranks.
    """

    def __init__(self, positives: Tensor, decay: float) -> None:
        if positives.dim() != 2 or positives.shape[1] == 0:
            raise ValueError(f"teacher positives must be [users, top] with top >= 1, got shape {tuple(positives.shape)}")
        self.positives = positives
        self.rank_weight = torch.exp(-torch.arange(positives.shape[1], dtype=torch.float32, device=positives.device) / decay)

    def draw_ranks(self, n: int, generator: torch.Generator) -> Tensor:
        """int64 ``[n]``: teacher ranks drawn with weight ``exp(-r / decay)``."""
        return torch.multinomial(self.rank_weight, n, replacement=True, generator=generator)

    def draw_lower_ranks(self, n: int, generator: torch.Generator) -> Tensor:
        """int64 ``[n]``: ranks drawn uniformly from the second half of the list, ``[top // 2, top)``."""
        top = self.positives.shape[1]
        return torch.randint(top // 2, top, (n,), generator=generator, device=self.positives.device)

    def draw(self, n: int, generator: torch.Generator, lower: bool) -> Tensor:
        """int64 ``[n]`` ranks (:meth:`draw_ranks`), or ``[2, n]`` with ``lower``: those ranks and,
        drawn after them from the same stream, the :meth:`draw_lower_ranks` they are ranked above."""
        ranks = self.draw_ranks(n, generator)
        return torch.stack([ranks, self.draw_lower_ranks(n, generator)]) if lower else ranks

    def items(self, users: Tensor, ranks: Tensor) -> Tensor:
        """int64 ``[B]`` (or ``[2, B]``): the teacher positive of rank ``ranks[..., j]`` of user
        ``users[j]`` (``users`` ``[B]``, ``ranks`` ``[B]`` or ``[2, B]``)."""
        return self.positives[users, ranks]


def order_loss(user: Tensor, higher: Tensor, lower: Tensor, keep: Tensor) -> Tensor:
    """``Σ_j keep_j · -log σ(<u_j, higher_j> − <u_j, lower_j>) / B``: the teacher's order between
    two of its items, over the rows ``keep`` (bool ``[B]``) marks; rows ``[B, d]``. Divided by all
    ``B`` rows (not the kept ones), so a batch split over processes sums to the same loss."""
    diff = (user * higher).sum(dim=1) - (user * lower).sum(dim=1)
    return (F.softplus(-diff) * keep.to(diff.dtype)).sum() / max(user.shape[0], 1)
