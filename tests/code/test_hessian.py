"""Hutchinson's trace estimate against exact traces; GSTE's δ formula."""

from __future__ import annotations

import pytest
import torch

from hqgnn.hessian import gste_delta, gste_delta_per_dimension, hutchinson


def test_exact_for_a_diagonal_hessian() -> None:
    # Rademacher vectors have v_k² = 1, so vᵀDv = Tr(D) for every sample
    d = torch.tensor([1.0, 2.0, -0.5, 4.0])
    x = torch.randn(4, requires_grad=True)
    est = hutchinson(0.5 * (d * x * x).sum(), [x], max_samples=5, min_samples=2)
    traces, grads, n = est.traces, est.grads, est.samples
    assert abs(traces[0] - float(d.sum())) < 1e-5
    torch.testing.assert_close(grads[0], d * x.detach())
    assert n == 2  # zero variance: stops at min_samples


def test_matches_the_exact_trace_of_a_small_quadratic() -> None:
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(12, 12, generator=gen)
    a = m @ m.T / 12 + torch.diag(torch.rand(12, generator=gen) * 3)  # SPD, Tr(A) = exact
    x = torch.randn(12, requires_grad=True)
    est = hutchinson(0.5 * x @ a @ x, [x], max_samples=2000, min_samples=50, rtol=0.01, generator=gen)
    traces, n = est.traces, est.samples
    exact = float(torch.trace(a))
    assert abs(traces[0] - exact) / exact < 0.05
    assert 50 <= n <= 2000


def test_block_traces_of_two_inputs() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, requires_grad=True)
    y = torch.randn(5, requires_grad=True)
    loss = 1.5 * (x**2).sum() + 0.5 * (y**2).sum() + x.sum() * y.sum()  # blocks 3I, I, coupled by ones
    traces = hutchinson(loss, [x, y], max_samples=4000, min_samples=100, rtol=0.01, generator=gen).traces
    assert abs(traces[0] - 9.0) < 0.5 and abs(traces[1] - 5.0) < 0.5


def test_gste_delta_formula() -> None:
    g = torch.tensor([1.0, -1.0, 3.0, -3.0])
    std = float(g.std())
    assert abs(gste_delta(8.0, 4, g) - (8.0 / 4) / (3 * std)) < 1e-9
    assert gste_delta(-8.0, 4, g) == 0.0  # negative curvature: no correction
    assert gste_delta(8.0, 4, torch.zeros(4)) == 0.0


def test_diagonal_is_exact_for_a_diagonal_hessian_and_sums_to_the_trace() -> None:
    d = torch.tensor([[1.0, 2.0, -0.5], [4.0, 0.0, 3.0]])
    x = torch.randn(2, 3, requires_grad=True)
    est = hutchinson(0.5 * (d * x * x).sum(), [x], max_samples=6, min_samples=3, diagonal=True)
    assert est.diagonals is not None
    torch.testing.assert_close(est.diagonals[0], d)  # v_k² = 1: every sample is exact
    assert abs(est.traces[0] - float(est.diagonals[0].sum())) < 1e-5


def test_diagonal_matches_the_exact_diagonal_of_a_dense_quadratic() -> None:
    gen = torch.Generator().manual_seed(2)
    m = torch.randn(10, 10, generator=gen)
    a = m @ m.T / 10 + torch.diag(torch.rand(10, generator=gen) * 3 + 1)
    x = torch.randn(10, requires_grad=True)
    est = hutchinson(0.5 * x @ a @ x, [x], max_samples=4000, min_samples=4000, generator=gen, diagonal=True)
    assert est.diagonals is not None and est.samples == 4000
    torch.testing.assert_close(est.diagonals[0], torch.diagonal(a), atol=0.1, rtol=0.05)  # off-diagonal noise ~ 1/sqrt(k)


def test_gste_delta_per_dimension_is_the_table_formula_column_by_column() -> None:
    gen = torch.Generator().manual_seed(3)
    diag = torch.rand(50, 4, generator=gen)
    diag[:, 2] -= 2.0  # negative curvature in one column: no correction there
    grad = torch.randn(50, 4, generator=gen)
    grad[:, 3] = 0.5  # no gradient spread: 0
    delta = gste_delta_per_dimension(diag, grad)
    assert delta.shape == (4,)
    for j in range(4):
        assert abs(float(delta[j]) - gste_delta(float(diag[:, j].sum()), 50, grad[:, j])) < 1e-6
    assert float(delta[2]) == 0.0 and float(delta[3]) == 0.0 and float(delta[0]) > 0
    with pytest.raises(ValueError, match="same"):
        gste_delta_per_dimension(diag, grad[:, :3])
