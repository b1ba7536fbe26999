"""Straight-through estimators of the quantizer (method.md §3): STE and Hessian-aware GSTE.

Forward: ``x̂ = Q(x)`` (:func:`hqgnn.quant.fake_quantize`). Backward, with ``g = ∂L/∂x̂``:

- STE:  ``∂L/∂x = g``;
- GSTE: ``∂L/∂x = g ⊙ (1 + δ · sign(g) ⊙ (x − x̂))``; ``δ = 0`` is exactly the STE.

Why hand-written: the GSTE gradient is not the derivative of any forward expression (it is a
first-order Taylor correction ``∇x ≈ ∇x̂ + H (x − x̂)`` with ``H`` replaced by a scalar), so it
has to be a custom ``autograd.Function``. The scale is treated as a constant in the backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hqgnn.quant import fake_quantize


class _GeneralizedSTE(torch.autograd.Function):
    """``x̂ = Q_bits(x)``; backward ``g ⊙ (1 + δ sign(g) ⊙ (x − x̂))`` (δ = 0: plain STE).
    ``delta`` is a float (one δ for the table) or ``None`` with a ``[d]`` tensor ``delta_dims``."""

    @staticmethod
    def forward(ctx, x: Tensor, bits: int, delta: float, delta_dims: Tensor | None) -> Tensor:
        x_hat = fake_quantize(x, bits)
        ctx.delta = float(delta)
        ctx.per_dim = delta_dims is not None
        if ctx.per_dim:
            ctx.save_for_backward(x - x_hat, delta_dims)
        elif ctx.delta != 0.0:
            ctx.save_for_backward(x - x_hat)
        return x_hat

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None, None]:
        if ctx.per_dim:
            err, delta_dims = ctx.saved_tensors
            return g * (1.0 + delta_dims * torch.sign(g) * err), None, None, None
        if ctx.delta == 0.0:
            return g, None, None, None
        (err,) = ctx.saved_tensors
        return g * (1.0 + ctx.delta * torch.sign(g) * err), None, None, None


def straight_through(x: Tensor, bits: int, delta: float | Tensor = 0.0, check: bool = True) -> Tensor:
    """Quantize ``x`` ``[n, dim]`` to ``bits`` in the forward; pass gradients straight through.

    ``delta`` > 0 applies the GSTE correction; ``delta = 0`` is the plain STE. A ``[dim]`` tensor
    gives each embedding dimension its own δ (``delta_granularity: dimension``). ``check=False``
    skips the test that a ``[dim]`` δ is >= 0, a host round trip on CUDA at every call, for callers
    that tested it once (the trainer: :meth:`hqgnn.delta.DeltaState.for_estimator`).

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.5, -1.5]], requires_grad=True)
        >>> y = straight_through(x, bits=1, delta=0.5)  # sign(x) * mean|x| = [[1, -1]]
        >>> y.backward(torch.tensor([[1.0, 1.0]]))
        >>> x.grad  # 1 + 0.5 * sign(1) * (x - y) = [[0.75, 0.75]]
        tensor([[0.7500, 0.7500]])
    """
    if isinstance(delta, Tensor):
        if delta.shape != x.shape[-1:]:
            raise ValueError(f"a per-dimension delta must have shape [{x.shape[-1]}], got {tuple(delta.shape)}")
        if check and bool((delta < 0).any()):
            raise ValueError(f"delta must be >= 0, got a minimum of {float(delta.min())}")
        return _GeneralizedSTE.apply(x, bits, 0.0, delta.to(x.dtype))
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    return _GeneralizedSTE.apply(x, bits, delta, None)
