"""Code widths and estimators: the one place that says which widths exist and what 32 means.

``bits`` is the width of one code coordinate: 1, 2, 4 or 8 bits are quantized codes; 32 is the
float32 sentinel (no quantizer, no codes: the float embeddings are shipped as they are).
Quantized widths train with a straight-through estimator (``ste``) or HQ-GNN's Hessian-aware
one (``gste``, the default); float32 trains with ``none``.
"""

from __future__ import annotations

from typing import Literal, get_args

Bits = Literal[1, 2, 4, 8, 32]
Estimator = Literal["none", "ste", "gste"]

FLOAT_BITS = 32
ALL_BITS: tuple[int, ...] = get_args(Bits)  # (1, 2, 4, 8, 32)
CODE_BITS: tuple[int, ...] = tuple(b for b in ALL_BITS if b != FLOAT_BITS)  # (1, 2, 4, 8)
QUANT_ESTIMATORS: tuple[str, ...] = tuple(e for e in get_args(Estimator) if e != "none")  # ("ste", "gste")
DEFAULT_QUANT_ESTIMATOR: Estimator = "gste"


def is_float(bits: int) -> bool:
    """True for the float32 sentinel (no quantizer)."""
    return bits == FLOAT_BITS


def default_estimator(bits: int) -> Estimator:
    """``none`` for float32, else :data:`DEFAULT_QUANT_ESTIMATOR`."""
    return "none" if is_float(bits) else DEFAULT_QUANT_ESTIMATOR


def check_bits(bits: int, allow_float: bool = True) -> int:
    """``bits`` if it is a known width (``allow_float=False``: a quantized one), else ``ValueError``."""
    allowed = ALL_BITS if allow_float else CODE_BITS
    if bits not in allowed:
        raise ValueError(f"bits must be one of {allowed}" + ("" if allow_float else f" ({FLOAT_BITS} = float, no codes)") + f", got {bits!r}")
    return bits
