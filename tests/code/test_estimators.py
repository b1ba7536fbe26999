"""STE / GSTE backward against the formula computed explicitly."""

from __future__ import annotations

import pytest
import torch

from hqgnn.estimators import straight_through
from hqgnn.quant import fake_quantize


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("delta", [0.0, 0.3, 2.0])
def test_backward_equals_the_gste_formula_elementwise(bits: int, delta: float) -> None:
    gen = torch.Generator().manual_seed(bits)
    x = torch.randn(20, 8, generator=gen).requires_grad_(True)
    g = torch.randn(20, 8, generator=gen)
    y = straight_through(x, bits, delta)
    y.backward(g)
    x_hat = fake_quantize(x.detach(), bits)
    expected = torch.empty_like(g)
    for r in range(20):  # naive loop, one element at a time
        for c in range(8):
            sign = 1.0 if g[r, c] > 0 else (-1.0 if g[r, c] < 0 else 0.0)
            expected[r, c] = g[r, c] * (1 + delta * sign * (x[r, c].item() - x_hat[r, c].item()))
    torch.testing.assert_close(y.detach(), x_hat, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, expected)


def test_delta_zero_is_exactly_the_ste() -> None:
    x = torch.randn(10, 4).requires_grad_(True)
    g = torch.randn(10, 4)
    straight_through(x, 1, 0.0).backward(g)
    assert torch.equal(x.grad, g)


def test_gste_differs_from_ste_and_rejects_negative_delta() -> None:
    x = torch.randn(10, 4).requires_grad_(True)
    g = torch.randn(10, 4)
    straight_through(x, 1, 0.5).backward(g)
    assert not torch.equal(x.grad, g)
    with pytest.raises(ValueError, match="delta"):
        straight_through(x, 1, -0.1)


def test_a_delta_per_dimension_scales_each_column_by_its_own_delta() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(12, 4, generator=gen).requires_grad_(True)
    g = torch.randn(12, 4, generator=gen)
    delta = torch.tensor([0.0, 0.3, 1.0, 2.0])
    straight_through(x, 1, delta).backward(g)
    x_hat = fake_quantize(x.detach(), 1)
    expected = torch.empty_like(g)
    for r in range(12):  # naive loop: element (r, c) uses column c's δ
        for c in range(4):
            sign = 1.0 if g[r, c] > 0 else -1.0
            expected[r, c] = g[r, c] * (1 + delta[c] * sign * (x[r, c].item() - x_hat[r, c].item()))
    torch.testing.assert_close(x.grad, expected)
    assert torch.equal(x.grad[:, 0], g[:, 0])  # δ_0 = 0: that column is the plain STE


def test_a_constant_delta_vector_equals_the_table_delta_and_bad_vectors_are_rejected() -> None:
    x = torch.randn(6, 3)
    g = torch.randn(6, 3)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    straight_through(a, 2, 0.4).backward(g)
    straight_through(b, 2, torch.full((3,), 0.4)).backward(g)
    torch.testing.assert_close(a.grad, b.grad)
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        straight_through(x, 1, torch.zeros(4))
    with pytest.raises(ValueError, match="delta must be >= 0"):
        straight_through(x, 1, torch.tensor([0.1, -0.1, 0.0]))
