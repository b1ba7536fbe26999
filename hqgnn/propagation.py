"""LightGCN propagation ``E = mean(E0, ÂE0, …, Â^L E0)`` with a hand-written symmetric backward.

Why hand-written: the whole encoder is one fixed polynomial of the adjacency,
``E = P(Â) E0`` with ``P(z) = (1 + z + … + z^L) / (L + 1)``. ``Â`` is symmetric, so ``P(Â)`` is
symmetric and the backward is ``dE0 = P(Â) dE`` — the forward again, applied to the gradient.
torch's default autograd instead differentiates each ``sparse_csr @ dense`` by transposing the
sparse matrix (a COO sort) and keeps every layer's output for the backward. Here both passes
are L fused ``addmm`` calls over the one CSR matrix (Horner's rule:
``acc ← E0 + Â acc``), with no transpose, no saved activations and no gradient for ``Â``'s
values. Measured here at Gowalla size (70 k nodes, 1.6 M non-zeros, d 64, 3 layers, 2 cores):
109 ms forward+backward for a per-layer symmetric backward vs 734 ms with torch's default
sparse autograd (method.md §1); ``bench/train_speed.py`` times the whole BPR step.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _SymmetricPolynomial(torch.autograd.Function):
    """``Y = P(A) X`` with ``P(z) = (1 + z + … + z^L) / (L + 1)`` for a constant symmetric sparse
    ``A``; the backward is ``dX = P(A) dY`` (``P(A)`` is symmetric), computed the same way."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor, layers: int) -> Tensor:
        ctx.adj, ctx.layers = adj, layers  # constants: nothing saved for their gradients
        return _polynomial(adj, x, layers)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[None, Tensor, None]:
        return None, _polynomial(ctx.adj, grad_out.contiguous(), ctx.layers), None


def _polynomial(adj: Tensor, x: Tensor, layers: int) -> Tensor:
    """``(x + Âx + … + Â^L x) / (L + 1)`` by Horner's rule: L fused ``addmm`` calls."""
    acc = x
    scale = 1.0 / (layers + 1)
    for layer in range(layers):
        last = layer == layers - 1
        # acc <- x + adj @ acc; the last step also folds in the 1 / (L + 1) of the mean.
        acc = torch.addmm(x, adj, acc, beta=scale if last else 1.0, alpha=scale if last else 1.0)
    return acc if layers else x.clone()


def lightgcn_propagate(adj: Tensor, x0: Tensor, layers: int) -> Tensor:
    """``mean(x0, Âx0, …, Â^L x0)`` ``[N, d]`` for a symmetric sparse CSR ``adj`` ``[N, N]``
    (the normalised adjacency) and dense ``x0`` ``[N, d]``; differentiable in ``x0`` only.

    The caller guarantees that ``adj`` is symmetric (the backward relies on it).

    Example:
        >>> import torch
        >>> adj = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).to_sparse_csr()
        >>> x = torch.tensor([[1.0], [3.0]], requires_grad=True)
        >>> out = lightgcn_propagate(adj, x, layers=1)  # (x + Âx) / 2
        >>> out
        tensor([[2.],
                [2.]], grad_fn=<_SymmetricPolynomialBackward>)
        >>> out[0].sum().backward()
        >>> x.grad
        tensor([[0.5000],
                [0.5000]])
    """
    return _SymmetricPolynomial.apply(adj, x0, layers)
