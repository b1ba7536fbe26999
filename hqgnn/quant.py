"""b-bit codes of embedding tables (method.md §2) and the values the model's forward pass uses.

- 1 bit: ``q = sign(x)`` with ``sign(0) = +1``, per-node scale ``s = mean(|x|)`` (the scale that
  minimises ``||x - s q||²`` for sign codes). Codes in {-1, +1}.
- b ∈ {2, 4, 8} (our reading of "symmetric uniform with per-node scale and clipping"): per node,
  clip at ``c = min(max|x|, k_b · rms(x))`` with ``k_b`` the MSE-optimal clipping ratio of a
  Gaussian (ACIQ: 1.71, 2.55 and 4.0 standard deviations for 2, 4 and 8 bits), step
  ``s = c / 2^(b-1)``, codes ``clamp(round(x / s), -2^(b-1), 2^(b-1)-1)``. All ``2^b`` levels are
  used; inside ``[-2^(b-1) s, (2^(b-1)-1) s]`` the error is at most ``s / 2``.

The scale is a function of the data only (no learned parameters), so the codes of a checkpoint
are reproducible from its float embeddings: :func:`quantize` is exactly the model's forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hqgnn.bits import check_bits

CLIP_RATIO = {2: 1.71, 4: 2.55, 8: 4.0}  # clipping at k · rms: MSE-optimal for Gaussian data (ACIQ)
_EPS = 1e-12


@dataclass(frozen=True)
class QuantizedTable:
    """Codes of ``n`` embeddings: ``codes`` int8 ``[n, dim]`` (1 bit: {-1, +1}; b bits: in
    ``[-2^(b-1), 2^(b-1)-1]``), ``scale`` float32 ``[n]`` (> 0), ``bits``."""

    codes: Tensor
    scale: Tensor
    bits: int

    def dequantize(self) -> Tensor:
        """float32 ``[n, dim]``: ``codes * scale[:, None]``."""
        return self.codes.to(torch.float32) * self.scale[:, None]


def code_range(bits: int) -> tuple[int, int]:
    """Smallest and largest integer code of a bit width (1 bit: -1 and +1)."""
    _check_bits(bits)
    return (-1, 1) if bits == 1 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def quantize(x: Tensor, bits: int) -> QuantizedTable:
    """Codes and per-row scales of ``x`` ``[n, dim]`` (float), exactly as the model's forward."""
    codes, scale = _codes_and_scale(x.detach().float(), bits)
    return QuantizedTable(codes.to(torch.int8), scale.float(), bits)


def fake_quantize(x: Tensor, bits: int) -> Tensor:
    """``dequantize(quantize(x))`` ``[n, dim]`` in ``x``'s dtype, without building int8 codes
    (the forward value of the straight-through estimators; no gradient of its own)."""
    codes, scale = _codes_and_scale(x.detach(), bits)
    return codes * scale[:, None]


def sign_codes(x: Tensor) -> Tensor:
    """1-bit codes of ``x`` (any shape) in ``x``'s dtype: ``+1`` where ``x >= 0`` (so ``sign(0) = +1``), else ``-1``."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _codes_and_scale(x: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Float codes ``[n, dim]`` and scales ``[n]``."""
    _check_bits(bits)
    if x.dim() != 2:
        raise ValueError(f"expected a [n, dim] table, got shape {tuple(x.shape)}")
    if bits == 1:
        scale = x.abs().mean(dim=1).clamp_min(_EPS)
        return sign_codes(x), scale
    half = 2 ** (bits - 1)
    rms = x.pow(2).mean(dim=1).sqrt()
    clip = torch.minimum(x.abs().amax(dim=1), CLIP_RATIO[bits] * rms)
    scale = (clip / half).clamp_min(_EPS)
    codes = torch.clamp(torch.round(x / scale[:, None]), -half, half - 1)
    return codes, scale


def _check_bits(bits: int) -> None:
    check_bits(bits, allow_float=False)
