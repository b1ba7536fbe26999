"""The LightGCN graph: symmetric normalised bipartite adjacency of the train split.

Nodes ``0 .. num_users-1`` are users, ``num_users .. num_users+num_items-1`` are items.
``Â = D^-1/2 A D^-1/2`` with ``A = [[0, R], [R^T, 0]]`` and ``R`` the train interactions.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch_geometric.utils import to_torch_csr_tensor

from hqgnn.interactions import InteractionMatrix


def bipartite_edge_index(train: InteractionMatrix) -> Tensor:
    """int64 ``[2, 2 * nnz]``: both directions of every user–item edge (items offset by num_users)."""
    users = train.rows()
    items = train.indices + train.num_users
    return torch.cat([torch.stack([users, items]), torch.stack([items, users])], dim=1)


def normalized_adjacency(train: InteractionMatrix, device: torch.device | str = "cpu") -> Tensor:
    """float32 sparse CSR ``[N, N]`` (``N = num_users + num_items``, int32 indices): ``D^-1/2 A D^-1/2``.

    Isolated nodes (degree 0) get empty rows, so their propagated embeddings are zero.
    """
    n = train.num_users + train.num_items
    edge_index = bipartite_edge_index(train)
    deg = torch.bincount(edge_index[0], minlength=n).to(torch.float32)
    inv_sqrt = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
    weight = inv_sqrt[edge_index[0]] * inv_sqrt[edge_index[1]]
    with warnings.catch_warnings():  # torch's "sparse CSR is beta" notice, once per process
        warnings.filterwarnings("ignore", message=r"Sparse (CSR tensor support|invariant checks)")
        adj = to_torch_csr_tensor(edge_index, weight, size=(n, n))  # sorts by (row, col)
        # int32 indices: the CPU (MKL) and CUDA sparse kernels take them as they are; with int64
    # torch converts both index arrays on every product (~20 % of a layer's time here).
        adj = torch.sparse_csr_tensor(adj.crow_indices().int(), adj.col_indices().int(), adj.values(), adj.shape)
    return adj.to(device)
