"""The fast LightGCN propagation against PyG's LightGCN / LGConv and a dense naive reference."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import LGConv
from torch_geometric.nn.models import LightGCN

from hqgnn.encoder import LightGCNEncoder
from hqgnn.graph import bipartite_edge_index, normalized_adjacency
from hqgnn.interactions import InteractionMatrix
from hqgnn.propagation import lightgcn_propagate


def tiny_train(seed: int = 0, n_u: int = 9, n_i: int = 7, nnz: int = 25) -> InteractionMatrix:
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, n_u, (nnz,), generator=g)
    i = torch.randint(0, n_i, (nnz,), generator=g)
    return InteractionMatrix.from_pairs(u.numpy(), i.numpy(), n_u, n_i)


def test_adjacency_is_symmetric_normalised_bipartite() -> None:
    train = tiny_train()
    n = train.num_users + train.num_items
    a = torch.zeros(n, n)
    for u, i in zip(train.rows().tolist(), train.indices.tolist(), strict=True):
        a[u, train.num_users + i] = a[train.num_users + i, u] = 1.0
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    expected = inv[:, None] * a * inv[None, :]
    got = normalized_adjacency(train).to_dense()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got, got.T)


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_matches_pyg_lightgcn_outputs_and_gradients(layers: int) -> None:
    train = tiny_train(seed=layers)
    n, dim = train.num_users + train.num_items, 5
    edge_index = bipartite_edge_index(train)
    pyg = LightGCN(n, dim, num_layers=layers)
    ours = LightGCNEncoder(train.num_users, train.num_items, dim, layers)
    with torch.no_grad():
        ours.embedding.copy_(pyg.embedding.weight)
    upstream = torch.randn(n, dim, generator=torch.Generator().manual_seed(1))

    ref = pyg.get_embedding(edge_index)
    (ref * upstream).sum().backward()
    users, items = ours(normalized_adjacency(train))
    out = torch.cat([users, items])
    (out * upstream).sum().backward()

    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.embedding.grad, pyg.embedding.weight.grad, rtol=1e-5, atol=1e-6)


def test_one_layer_matches_lgconv_and_gradient() -> None:
    train = tiny_train(seed=3)
    n = train.num_users + train.num_items
    x_ref = torch.randn(n, 4, requires_grad=True)
    x = x_ref.detach().clone().requires_grad_(True)
    ref = LGConv()(x_ref, bipartite_edge_index(train))
    # one layer of the mean is (x + Âx) / 2, so Âx = 2·out − x
    out = 2 * lightgcn_propagate(normalized_adjacency(train), x, layers=1) - x
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    w = torch.randn(n, 4)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def test_isolated_nodes_propagate_to_zero_layers() -> None:
    train = InteractionMatrix.from_pairs([0, 1], [0, 0], num_users=3, num_items=2)  # user 2, item 1 isolated
    x = torch.ones(5, 2)
    out = lightgcn_propagate(normalized_adjacency(train), x, layers=2)
    torch.testing.assert_close(out[2], x[2] / 3)  # only layer 0 survives
    torch.testing.assert_close(out[4], x[4] / 3)
