"""An orthogonal rotation that makes sign codes lose less (ITQ, Gong & Lazebnik, CVPR 2011).

LightGCN is linear in its layer-0 table ``E0``: rotating ``E0`` by an orthogonal ``R`` ``[d, d]``
rotates every output row by ``R`` and leaves every float score ``<x_u, x_i>`` unchanged. The
sign codes of the rotated outputs differ, though: iterative quantization picks the ``R`` that
minimises ``||sign(XR) − XR||²`` over the rows of ``X``, which spreads variance evenly over the
dimensions, so each bit carries information. Fitted once, at the end of a float warm-up, just
before quantization-aware training starts (:class:`hqgnn.trainer.Trainer`), and applied to the
table and its optimizer state by :func:`rotate_parameter`.

Why hand-written: the fit is 10 lines of alternating Procrustes steps (torch SVD); FAISS's
``ITQTransform`` also centres and may reduce dimensions (it is an affine map, not a rotation,
so float scores would change) and would add a host round trip on CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hqgnn.quant import sign_codes


def itq_rotation(x: Tensor, iterations: int = 50, seed: int = 0) -> Tensor:
    """Orthogonal ``R`` ``[d, d]`` (``x``'s dtype and device) minimising ``||sign(x R) − x R||²``.

    ``x``: rows to quantize ``[n, d]`` (users and items together). Starts from a seeded random
    rotation; each iteration fixes the codes ``B = sign(x R)`` and solves the orthogonal
    Procrustes problem ``R = argmin ||B − x R||`` by one SVD of ``xᵀB`` ``[d, d]``.

    Example:
        >>> import torch
        >>> r = itq_rotation(torch.randn(100, 8), iterations=5)
        >>> bool(torch.allclose(r @ r.T, torch.eye(8), atol=1e-5))
        True
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty [n, d] table, got shape {tuple(x.shape)}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    v = x.detach().double()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    r, _ = torch.linalg.qr(torch.randn(v.shape[1], v.shape[1], generator=gen, dtype=torch.float64))
    r = r.to(v.device)
    for _ in range(iterations):
        left, _, right_t = torch.linalg.svd(v.T @ sign_codes(v @ r))
        r = left @ right_t
    return r.to(x.dtype)


def quantization_loss(x: Tensor) -> float:
    """``||sign(x) − x||²`` summed over ``x`` ``[n, d]`` (what :func:`itq_rotation` lowers)."""
    return float((sign_codes(x) - x).pow(2).sum())


@torch.no_grad()
def rotate_parameter(param: Tensor, rot: Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Rotate a table ``param`` ``[n, d]`` in place by an orthogonal ``rot`` ``[d, d]`` (``param @ rot``).

    With ``optimizer`` (Adam), its moments of ``param`` follow, if it has taken a step: the first
    exactly (``exp_avg @ rot``), the second approximately (``exp_avg_sq @ rot²``, elementwise
    square: the variance of a rotated coordinate if the gradient's coordinates were uncorrelated;
    it stays ≥ 0).

    Example:
        >>> import torch
        >>> e = torch.nn.Parameter(torch.randn(6, 4))
        >>> before = e @ e.T
        >>> rotate_parameter(e, itq_rotation(e, iterations=3))
        >>> bool(torch.allclose(e @ e.T, before, atol=1e-5))
        True
    """
    if rot.shape != (param.shape[-1], param.shape[-1]):
        raise ValueError(f"rot must be [d, d] with d = {param.shape[-1]} (param's last dim), got shape {tuple(rot.shape)}")
    param.copy_(param @ rot)
    state = optimizer.state.get(param, {}) if optimizer is not None else {}
    if "exp_avg" in state:
        state["exp_avg"].copy_(state["exp_avg"] @ rot)
        state["exp_avg_sq"].copy_(state["exp_avg_sq"] @ rot.square())
