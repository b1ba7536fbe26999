"""b-bit codes: valid ranges, round-trip error bounds, and the same values as the model's forward."""

from __future__ import annotations

import pytest
import torch

from hqgnn.quant import QuantizedTable, code_range, fake_quantize, quantize


def table(seed: int = 0, n: int = 50, dim: int = 16) -> torch.Tensor:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    x[0, :3] = 0.0  # exact zeros
    x[1] *= 25.0  # a large-norm row
    x[2, 0] = 40.0  # an outlier inside a row (gets clipped for b > 1)
    return x


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_codes_in_valid_range_and_dtypes(bits: int) -> None:
    q = quantize(table(bits), bits)
    lo, hi = code_range(bits)
    assert q.codes.dtype == torch.int8 and q.scale.dtype == torch.float32
    assert q.codes.shape == (50, 16) and q.scale.shape == (50,)
    assert int(q.codes.min()) >= lo and int(q.codes.max()) <= hi
    assert bool((q.scale > 0).all())
    if bits == 1:
        assert set(q.codes.unique().tolist()) <= {-1, 1}
    else:
        assert q.codes.unique().numel() > 2 ** (bits - 1)  # the range is actually used


def test_one_bit_is_sign_with_mean_abs_scale_and_zero_to_plus_one() -> None:
    x = table()
    q = quantize(x, 1)
    torch.testing.assert_close(q.scale, x.abs().mean(1))
    assert bool((q.codes[0, :3] == 1).all())
    expected = torch.where(x >= 0, 1, -1).to(torch.int8)
    assert torch.equal(q.codes, expected)
    # mean|x| is the L2-optimal scale for sign codes: nudging it either way is worse
    err = lambda s: ((x - s[:, None] * q.codes.float()) ** 2).sum()  # noqa: E731
    assert err(q.scale) < err(q.scale * 1.05) and err(q.scale) < err(q.scale * 0.95)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_round_trip_error_within_the_bit_width_bound(bits: int) -> None:
    x = table(bits)
    q = quantize(x, bits)
    x_hat = q.dequantize()
    s = q.scale[:, None]
    lo, hi = code_range(bits)
    inside = (x >= (lo - 0.5) * s) & (x <= (hi + 0.5) * s)
    err = (x - x_hat).abs()
    assert bool((err[inside] <= s.expand_as(x)[inside] / 2 * (1 + 1e-5)).all())
    # clipped values land on the extreme code, error = distance to it
    outside = ~inside
    assert bool(outside[2, 0])  # the outlier is clipped
    extreme = torch.where(x > 0, hi * s, lo * s)
    torch.testing.assert_close(x_hat[outside], extreme[outside])
    # more bits, smaller error on ordinary rows
    if bits > 2:
        coarser = quantize(x, bits // 2).dequantize()
        assert (x[3:] - x_hat[3:]).pow(2).mean() < (x[3:] - coarser[3:]).pow(2).mean()


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_quantize_is_exactly_the_forward_pass(bits: int) -> None:
    x = table(bits + 10)
    torch.testing.assert_close(quantize(x, bits).dequantize(), fake_quantize(x, bits), rtol=0, atol=0)


def test_dequantize_and_bad_bits() -> None:
    q = QuantizedTable(torch.tensor([[1, -1], [-1, -1]], dtype=torch.int8), torch.tensor([0.5, 2.0]), 1)
    torch.testing.assert_close(q.dequantize(), torch.tensor([[0.5, -0.5], [-2.0, -2.0]]))
    with pytest.raises(ValueError, match="bits must be one of"):
        quantize(torch.ones(2, 2), 3)
    with pytest.raises(ValueError, match=r"\[n, dim\]"):
        quantize(torch.ones(4), 1)
