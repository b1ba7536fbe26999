"""ITQ rotation (hqgnn.rotation): orthogonal, deterministic, lowers the sign-code loss."""

from __future__ import annotations

import pytest
import torch

from hqgnn.rotation import itq_rotation, quantization_loss, rotate_parameter


def anisotropic(n: int = 2000, d: int = 16, seed: int = 0) -> torch.Tensor:
    """Rows whose variance sits in a few correlated directions: sign codes of the raw axes waste bits."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -2, d)
    mix, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    return (torch.randn(n, d, generator=g) * scales) @ mix.T


def test_rotation_is_orthogonal_and_seeded() -> None:
    x = anisotropic()
    r = itq_rotation(x, iterations=20, seed=1)
    assert r.shape == (16, 16) and r.dtype == x.dtype
    assert torch.allclose(r @ r.T, torch.eye(16), atol=1e-5)
    assert torch.equal(r, itq_rotation(x, iterations=20, seed=1))
    assert not torch.equal(r, itq_rotation(x, iterations=20, seed=2))


def test_rotation_keeps_inner_products_and_lowers_the_sign_loss() -> None:
    x = anisotropic()
    r = itq_rotation(x, iterations=30)
    assert torch.allclose((x @ r) @ (x @ r).T, x @ x.T, atol=1e-4)
    start = itq_rotation(x, iterations=0)  # the seeded random start
    assert quantization_loss(x @ r) < quantization_loss(x @ start)
    assert quantization_loss(x @ r) < quantization_loss(x)


def test_rotate_parameter_rotates_the_table_and_adams_moments() -> None:
    table = torch.nn.Parameter(anisotropic(n=50, d=8))
    adam = torch.optim.Adam([table], lr=0.01)
    rotate_parameter(table, torch.eye(8), adam)  # no step taken yet: no moments to rotate
    assert adam.state.get(table, {}) == {}
    table.square().sum().backward()
    adam.step()
    before, m, v = table.detach().clone(), adam.state[table]["exp_avg"].clone(), adam.state[table]["exp_avg_sq"].clone()
    r = itq_rotation(before, iterations=5)
    rotate_parameter(table, r, adam)
    assert torch.equal(table.detach(), before @ r)
    assert torch.equal(adam.state[table]["exp_avg"], m @ r)
    assert torch.equal(adam.state[table]["exp_avg_sq"], v @ r.square())
    assert bool((adam.state[table]["exp_avg_sq"] >= 0).all())


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="rot must be"):
        rotate_parameter(torch.nn.Parameter(torch.zeros(3, 4)), torch.eye(3))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        itq_rotation(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="iterations"):
        itq_rotation(torch.randn(5, 4), iterations=-1)
