"""LightGCN encoder (method.md §1): layer-0 embeddings propagated over ``Â``, mean of layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hqgnn.propagation import lightgcn_propagate


class LightGCNEncoder(nn.Module):
    """Layer-0 embeddings ``[num_users + num_items, dim]`` (users first) and their propagation.

    Args:
        num_users, num_items: table sizes.
        dim: embedding width (default 64).
        layers: propagation depth L (default 3); the output is ``mean(E0 … EL)``.
        init_std: std of the normal initialisation (LightGCN: 0.1).
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 64, layers: int = 3, init_std: float = 0.1) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.dim = dim
        self.layers = layers
        self.embedding = nn.Parameter(torch.randn(num_users + num_items, dim) * init_std)

    def forward(self, adj: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder outputs: users ``[num_users, dim]``, items ``[num_items, dim]``.

        ``adj``: the symmetric normalised adjacency ``[N, N]`` (:func:`hqgnn.graph.normalized_adjacency`).
        """
        out = self.propagate(adj)
        return out[: self.num_users], out[self.num_users :]

    def propagate(self, adj: Tensor) -> Tensor:
        """Encoder outputs of all nodes ``[num_users + num_items, dim]`` (users first)."""
        return lightgcn_propagate(adj, self.embedding, self.layers)

    def layer0(self) -> tuple[Tensor, Tensor]:
        """Layer-0 embeddings: users ``[num_users, dim]``, items ``[num_items, dim]``."""
        return self.embedding[: self.num_users], self.embedding[self.num_users :]

    def model_args(self) -> dict[str, int]:
        """Constructor arguments (stored in checkpoints)."""
        return {"num_users": self.num_users, "num_items": self.num_items, "dim": self.dim, "layers": self.layers}
