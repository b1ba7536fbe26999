"""BPR loss and LightGCN's L2 penalty on the layer-0 embeddings of a batch."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def bpr_loss(user: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Mean ``-log σ(<u, p> − <u, n>)`` over a batch of ``[B, d]`` user/positive/negative rows."""
    pos_score = (user * pos).sum(dim=1)
    neg_score = (user * neg).sum(dim=1)
    return F.softplus(neg_score - pos_score).mean()


def l2_penalty(rows: Tensor, batch_size: int) -> Tensor:
    """``½ ||rows||² / B``: LightGCN's regulariser over the layer-0 rows ``[3B, d]`` of a batch of
    ``B`` triples (user, positive and negative rows together)."""
    return 0.5 * rows.pow(2).sum() / batch_size
