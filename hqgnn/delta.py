"""GSTE's δ per quantized table (users, items), from Hutchinson traces of the BPR Hessian.

For each of a few sampled mini-batches, the quantized embeddings of the rows the batch touches
are made leaves, the BPR loss is evaluated on them, and Hutchinson's method estimates the trace
of the Hessian block of each table. ``N`` is the number of quantized elements in those rows and
``std(g)`` the spread of the loss gradient over them (our reading: the rows a batch does not
touch have zero gradient and zero curvature, and counting them would shrink δ by the share of
untouched rows, which depends only on the dataset size). Per table
``δ = scale · max(0, (Tr(H)/N) / (3·std(g)))``, averaged over the batches. Both the
Hessian and the gradient scale with ``1/B``, so δ does not depend on the batch size.

With ``granularity="dimension"`` (method.md §7's open question) the same Hessian-vector
products also give the Hessian diagonal, and each embedding dimension ``j`` of a table gets
``δ_j = scale · max(0, mean_i H_ij / (3·std_i(g_ij)))``; ``user``/``item`` then hold the
mean of those δ_j for logs and history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from hqgnn.hessian import gste_delta, gste_delta_per_dimension, hutchinson
from hqgnn.loss import bpr_loss
from hqgnn.quant import fake_quantize
from hqgnn.sampler import BPRSampler

Granularity = Literal["table", "dimension"]


@dataclass(frozen=True)
class DeltaState:
    """Current δ per table and the traces it came from (NaN: never estimated). With a δ per
    dimension, ``user_dims``/``item_dims`` hold it (length d) and ``user``/``item`` their means."""

    user: float = 0.0
    item: float = 0.0
    trace_user: float = float("nan")
    trace_item: float = float("nan")
    hutchinson_samples: int = 0
    user_dims: tuple[float, ...] = ()
    item_dims: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeltaState:
        d = dict(d)
        for key in ("user_dims", "item_dims"):
            d[key] = tuple(d.get(key, ()))  # older checkpoints have no per-dimension δ
        return cls(**d)

    def for_estimator(self, device: torch.device) -> tuple[float | Tensor, float | Tensor]:
        """What :func:`hqgnn.estimators.straight_through` takes for users and items: the table's
        δ, or a ``[d]`` float32 tensor on ``device`` when δ is per dimension (checked >= 0 here,
        on the host, so the training step need not check it on the device)."""
        if self.user_dims:
            if min(self.user_dims + self.item_dims) < 0:
                raise ValueError(f"delta must be >= 0, got a minimum of {min(self.user_dims + self.item_dims)}")
            return (torch.tensor(self.user_dims, dtype=torch.float32, device=device),
                    torch.tensor(self.item_dims, dtype=torch.float32, device=device))
        return self.user, self.item


def estimate_delta(
    user_out: Tensor,
    item_out: Tensor,
    sampler: BPRSampler,
    *,
    bits: int,
    batch_size: int,
    batches: int = 4,
    samples: int = 16,
    rtol: float = 0.05,
    granularity: Granularity = "table",
    scale: float = 1.0,
    seed: int = 0,
    quantize_users: bool = True,
) -> DeltaState:
    """δ for the user and item tables from float encoder outputs ``[num_users, d]``, ``[num_items, d]``.

    Args:
        sampler: draws the triples (:meth:`BPRSampler.sample`): uniform negatives also when
            training picks hard ones, for the curvature at typical triples.
        bits: the quantizer's width (the tables are fake-quantized to it before the loss).
        batch_size: triples per batch; batches: batches averaged (default 4).
        samples: at most this many Hutchinson vectors per batch (default 16); rtol: stop sampling
            earlier once the trace's standard error is below this share (default 0.05).
        granularity: ``"table"`` (one δ per table, default) or ``"dimension"`` (one per
            embedding dimension, from the Hessian diagonal).
        scale: multiplier on the formula's δ (default 1.0).
        seed: seeds the generator for triples and vectors (a resumed run re-estimates alike).
        quantize_users: False for ``float_users`` runs: the loss sees the float user rows (their δ
            is still computed, and unused).
    """
    if granularity not in ("table", "dimension"):
        raise ValueError(f"granularity must be 'table' or 'dimension', got {granularity!r}")
    if batches < 1 or samples < 1 or batch_size < 1:
        raise ValueError(f"batches, samples and batch_size must be >= 1, got {batches}, {samples}, {batch_size}")
    gen = torch.Generator(device=user_out.device)
    gen.manual_seed(seed)
    per_dim = granularity == "dimension"
    deltas_u: list[Tensor] = []
    deltas_i: list[Tensor] = []
    traces_u, traces_i, used = [], [], 0
    for _ in range(batches):
        users, pos, neg = sampler.sample(batch_size, generator=gen)
        rows_u, inv_u = torch.unique(users, return_inverse=True)
        rows_i, inv_i = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        # float32 leaves, autocast off: the Hessian-vector products stay float32 also when a caller
        # runs under AMP (in float16 the trace's sums of v·Hv lose most of their digits)
        xu = user_out[rows_u].detach().float()
        xu = (fake_quantize(xu, bits) if quantize_users else xu).requires_grad_(True)
        xi = fake_quantize(item_out[rows_i].detach().float(), bits).requires_grad_(True)
        with torch.enable_grad(), torch.autocast(user_out.device.type, enabled=False):
            p, n = xi[inv_i].split(users.numel())
            loss = bpr_loss(xu[inv_u], p, n)
            est = hutchinson(loss, [xu, xi], max_samples=samples, rtol=rtol,
                             generator=gen, diagonal=per_dim)
        (tr_u, tr_i), (g_u, g_i) = est.traces, est.grads
        if est.diagonals is not None:
            deltas_u.append(gste_delta_per_dimension(est.diagonals[0], g_u).double().cpu())
            deltas_i.append(gste_delta_per_dimension(est.diagonals[1], g_i).double().cpu())
        else:  # float64 scalars: the table δ is exactly what it was before per-dimension δ existed
            deltas_u.append(torch.tensor(gste_delta(tr_u, xu.numel(), g_u), dtype=torch.float64))
            deltas_i.append(torch.tensor(gste_delta(tr_i, xi.numel(), g_i), dtype=torch.float64))
        traces_u.append(tr_u)
        traces_i.append(tr_i)
        used += est.samples
    delta_u = scale * torch.stack(deltas_u).mean(dim=0)
    delta_i = scale * torch.stack(deltas_i).mean(dim=0)
    return DeltaState(
        user=float(delta_u.mean()), item=float(delta_i.mean()),
        trace_user=sum(traces_u) / len(traces_u), trace_item=sum(traces_i) / len(traces_i), hutchinson_samples=used,
        user_dims=tuple(delta_u.tolist()) if per_dim else (), item_dims=tuple(delta_i.tolist()) if per_dim else (),
    )
