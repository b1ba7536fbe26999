"""Hutchinson estimates of Hessian traces (and diagonals) and GSTE's δ (method.md §3).

``Tr(H) ≈ mean_k vₖᵀ H vₖ`` with Rademacher ``vₖ``; ``H vₖ`` comes from a double backward, so
the Hessian is never formed. The same products give the diagonal, ``diag(H) ≈ mean_k vₖ ⊙ H vₖ``
(Bekas et al., 2007), for a δ per embedding dimension (method.md §7's open question).

With several input tables, each diagonal block ``H_tt`` gets its own product ``H_tt v_t`` (the
gradient w.r.t. table t, differentiated along ``v_t`` w.r.t. table t only). One joint product
would also be unbiased (cross terms ``v_tᵀ H_ts v_s`` have zero mean), but for BPR the cross
block user–item holds the first-order ``σ·I`` terms of the bilinear score, which are far larger
than the curvature: with 16 vectors the joint estimate came out negative on a tiny planted
dataset, although every diagonal block here is positive semi-definite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class HutchinsonEstimate:
    """Per input: ``traces`` (floats), ``grads`` (detached ``∂loss/∂input``), and with
    ``diagonal=True`` the Hessian diagonals (each shaped like its input); ``samples`` vectors used."""

    traces: list[float]
    grads: list[Tensor]
    samples: int
    diagonals: list[Tensor] | None = None


def hutchinson(
    loss: Tensor,
    inputs: Sequence[Tensor],
    max_samples: int = 16,
    min_samples: int = 4,
    rtol: float = 0.05,
    generator: torch.Generator | None = None,
    diagonal: bool = False,
) -> HutchinsonEstimate:
    """Hessian trace (and, with ``diagonal``, the diagonal ``mean_k vₖ ⊙ H vₖ``) of ``loss`` w.r.t.
    each tensor in ``inputs`` (each requires grad): one diagonal block per input.

    Stops after ``max_samples`` vectors, or earlier (after ``min_samples``) once the standard
    error of every running trace mean is below ``rtol`` times its magnitude. The estimate also
    carries the first-order gradients ``∂loss/∂input`` (detached, shaped like ``inputs``).

    Example:
        >>> import torch
        >>> x = torch.ones(3, requires_grad=True)
        >>> est = hutchinson((x**2).sum(), [x])  # H = 2 I
        >>> round(est.traces[0], 6)
        6.0
    """
    grads = torch.autograd.grad(loss, list(inputs), create_graph=True)
    samples: list[list[float]] = [[] for _ in inputs]
    diag_sums = [torch.zeros_like(x) for x in inputs] if diagonal else None
    n = 0
    for n in range(1, max_samples + 1):
        sums = []
        for t, (x, g) in enumerate(zip(inputs, grads, strict=True)):
            v = _rademacher(x, generator)
            (hv,) = torch.autograd.grad(g, x, grad_outputs=v, retain_graph=True)
            vhv = v * hv
            sums.append(vhv.sum().double())
            if diag_sums is not None:
                diag_sums[t] += vhv.detach()
        for s, value in zip(samples, torch.stack(sums).tolist(), strict=True):  # one host round trip per vector
            s.append(value)
        if n >= min_samples and all(_converged(s, rtol) for s in samples):
            break
    return HutchinsonEstimate(
        traces=[sum(s) / len(s) for s in samples],
        grads=[g.detach() for g in grads],
        samples=n,
        diagonals=None if diag_sums is None else [d / n for d in diag_sums],
    )


def gste_delta(trace: float, numel: int, grad: Tensor) -> float:
    """δ = max(0, (Tr(H)/N) / (3·std(g))) for ``N = numel`` quantized elements with gradient ``grad``."""
    std = float(grad.float().std()) if grad.numel() > 1 else 0.0
    if std <= 0.0 or numel <= 0:
        return 0.0
    return max(0.0, (trace / numel) / (3.0 * std))


def gste_delta_per_dimension(diagonal: Tensor, grad: Tensor) -> Tensor:
    """δ per embedding dimension ``[d]`` from a Hessian diagonal and a gradient, both ``[n, d]``:
    ``δ_j = max(0, mean_i H_ij / (3·std_i(g_ij)))``, :func:`gste_delta` applied column by column
    (a column without gradient spread gets 0)."""
    if diagonal.shape != grad.shape or diagonal.dim() != 2:
        raise ValueError(f"expected a diagonal and a gradient of the same [n, d] shape, got {tuple(diagonal.shape)} and {tuple(grad.shape)}")
    if grad.shape[0] < 2:
        return torch.zeros(grad.shape[1], dtype=torch.float32, device=grad.device)
    std = grad.float().std(dim=0)
    curvature = diagonal.float().mean(dim=0)
    delta = torch.where(std > 0, curvature / (3.0 * std.clamp_min(torch.finfo(torch.float32).tiny)), torch.zeros_like(std))
    return delta.clamp_min(0.0)


def _rademacher(like: Tensor, generator: torch.Generator | None) -> Tensor:
    bits = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
    return bits.to(like.dtype) * 2 - 1


def _converged(values: list[float], rtol: float) -> bool:
    t = torch.tensor(values, dtype=torch.float64)
    mean = float(t.mean())
    sem = float(t.std() / len(values) ** 0.5)
    return sem <= rtol * abs(mean)
