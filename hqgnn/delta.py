"""GSTE's δ per quantized table (users, items), from Hutchinson traces of the BPR Hessian.

For each of a few sampled mini-batches, the quantized embeddings of the rows the batch touches
are made leaves, the BPR loss is evaluated on them, and Hutchinson's method estimates the trace
of the Hessian block of each table. ``N`` is the number of quantized elements in those rows and
``std(g)`` the spread of the loss gradient over them (our reading: the rows a batch does not
touch have zero gradient and zero curvature, and counting them would shrink δ by the share of
untouched rows, which depends only on the dataset size). Per table
``δ = delta_scale · max(0, (Tr(H)/N) / (3·std(g)))``, averaged over the batches. Both the
Hessian and the gradient scale with ``1/B``, so δ does not depend on the batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from hqgnn.config import TrainConfig
from hqgnn.hessian import gste_delta, hutchinson_trace
from hqgnn.loss import bpr_loss
from hqgnn.quant import fake_quantize
from hqgnn.sampler import BPRSampler


@dataclass(frozen=True)
class DeltaState:
    """Current δ per table and the traces it came from (NaN: never estimated)."""

    user: float = 0.0
    item: float = 0.0
    trace_user: float = float("nan")
    trace_item: float = float("nan")
    hutchinson_samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeltaState:
        return cls(**d)


def estimate_delta(user_out: Tensor, item_out: Tensor, sampler: BPRSampler, cfg: TrainConfig, seed: int) -> DeltaState:
    """δ for the user and item tables from float encoder outputs ``[num_users, d]``, ``[num_items, d]``.

    Uses ``cfg.hutchinson_batches`` batches of ``cfg.batch_size`` triples drawn from a generator
    seeded with ``seed`` (so resumed runs re-estimate identically).
    """
    gen = torch.Generator(device=user_out.device)
    gen.manual_seed(seed)
    deltas_u, deltas_i, traces_u, traces_i, used = [], [], [], [], 0
    for _ in range(cfg.hutchinson_batches):
        users, pos, neg = sampler.sample(cfg.batch_size, generator=gen)
        rows_u, inv_u = torch.unique(users, return_inverse=True)
        rows_i, inv_i = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        xu = fake_quantize(user_out[rows_u].detach(), cfg.bits).requires_grad_(True)
        xi = fake_quantize(item_out[rows_i].detach(), cfg.bits).requires_grad_(True)
        with torch.enable_grad():
            p, n = xi[inv_i].split(users.numel())
            loss = bpr_loss(xu[inv_u], p, n)
            (tr_u, tr_i), (g_u, g_i), k = hutchinson_trace(
                loss, [xu, xi], max_samples=cfg.hutchinson_samples, rtol=cfg.hutchinson_rtol, generator=gen
            )
        deltas_u.append(gste_delta(tr_u, xu.numel(), g_u))
        deltas_i.append(gste_delta(tr_i, xi.numel(), g_i))
        traces_u.append(tr_u)
        traces_i.append(tr_i)
        used += k
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return DeltaState(
        user=cfg.delta_scale * mean(deltas_u), item=cfg.delta_scale * mean(deltas_i),
        trace_user=mean(traces_u), trace_item=mean(traces_i), hutchinson_samples=used,
    )
