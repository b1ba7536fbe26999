"""Warm start: the layer-0 table of a new run built from a previous run's, rows matched by original id.

Dense indices change between snapshots (k-core, new users and items), so a previous run's
layer-0 rows are carried by ORIGINAL id. Rows of users and items new to the snapshot are
initialised from what the train graph says about them (``new_rows="neighbours"``, the default):

1. a new item: the mean of the layer-0 rows of its train users that were carried;
2. a new user: the mean of the layer-0 rows of its train items (carried, or set in step 1);
3. a new item none of whose users was carried: the mean of its users' rows from step 2;
4. anything still without a neighbour: the LightGCN random start (normal, std ``init_std``).

Why the neighbour mean: LightGCN's output of a node is a normalised sum over its neighbourhood,
so the mean of the neighbours' rows is where one propagation step would put it: its first
scores are already those of the items it interacted with, where a random row starts at chance
(measured against ``new_rows="random"`` in ``bench/nightly_replay.py``). Rows of the previous
run whose id is gone from the snapshot are dropped. ``carry_users=False`` carries only the item
rows: every user is then new, its row the mean of its items' (step 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from hqgnn.interactions import InteractionMatrix

NewRows = Literal["neighbours", "random"]


@dataclass(frozen=True)
class WarmStart:
    """A layer-0 table ``embedding`` ``[num_users + num_items, dim]`` (users first) and its origin."""

    embedding: Tensor
    users_carried: int
    users_new: int
    users_dropped: int
    items_carried: int
    items_new: int
    items_dropped: int
    new_rows: str

    def counts(self) -> dict[str, int | str]:
        """Rows carried / new / dropped per side (``config.json``, ``summary.json``)."""
        return {"users_carried": self.users_carried, "users_new": self.users_new, "users_dropped": self.users_dropped,
                "items_carried": self.items_carried, "items_new": self.items_new, "items_dropped": self.items_dropped,
                "new_rows": self.new_rows}


def match_rows(new_ids: np.ndarray, old_ids: np.ndarray) -> Tensor:
    """int64 ``[len(new_ids)]``: the row of each new id among ``old_ids``, -1 where it is new."""
    old_pos = {str(x): k for k, x in enumerate(old_ids)}
    return torch.tensor([old_pos.get(str(x), -1) for x in new_ids], dtype=torch.int64)


def _neighbour_mean(src: Tensor, src_known: Tensor, dst_of_edge: Tensor, src_of_edge: Tensor, n_dst: int) -> tuple[Tensor, Tensor]:
    """Mean of the known source rows over each destination's edges: ``[n_dst, d]`` and bool ``[n_dst]`` (has one)."""
    keep = src_known[src_of_edge]
    dst, s = dst_of_edge[keep], src_of_edge[keep]
    total = torch.zeros(n_dst, src.shape[1], dtype=src.dtype).index_add_(0, dst, src[s])
    count = torch.zeros(n_dst, dtype=src.dtype).index_add_(0, dst, torch.ones(dst.numel(), dtype=src.dtype))
    return total / count.clamp_min(1)[:, None], count > 0


def warm_start(
    prev_users: Tensor,
    prev_items: Tensor,
    prev_user_ids: np.ndarray,
    prev_item_ids: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    train: InteractionMatrix,
    new_rows: NewRows = "neighbours",
    init_std: float = 0.1,
    seed: int = 0,
    carry_users: bool = True,
) -> WarmStart:
    """The new layer-0 table (module docstring).

    Args:
        prev_users, prev_items: the previous run's layer-0 rows ``[U0, d]``, ``[I0, d]``.
        prev_user_ids, prev_item_ids: their original ids ``[U0]``, ``[I0]``.
        user_ids, item_ids: the new snapshot's ids ``[U]``, ``[I]`` (its dense order).
        train: the new snapshot's train interactions ``[U, I]``.
        new_rows: ``"neighbours"`` (mean of the train neighbours' rows) or ``"random"``.
        init_std, seed: the random start of rows without a neighbour (LightGCN: std 0.1).
        carry_users: False carries only the item rows (every user row from its items).
    Returns:
        :class:`WarmStart` with ``embedding`` float32 ``[U + I, d]`` on the CPU.
    """
    if prev_users.shape[1] != prev_items.shape[1]:
        raise ValueError(f"previous user and item rows differ in width: {prev_users.shape[1]} vs {prev_items.shape[1]}")
    if (train.num_users, train.num_items) != (len(user_ids), len(item_ids)):
        raise ValueError(f"train is {train.num_users} x {train.num_items} but there are {len(user_ids)} user and {len(item_ids)} item ids")
    if new_rows not in ("neighbours", "random"):
        raise ValueError(f"new_rows must be 'neighbours' or 'random', got {new_rows!r}")
    dim = prev_users.shape[1]
    gen = torch.Generator().manual_seed(seed)
    users = torch.randn(len(user_ids), dim, generator=gen) * init_std
    items = torch.randn(len(item_ids), dim, generator=gen) * init_std
    u_src, i_src = match_rows(user_ids, prev_user_ids), match_rows(item_ids, prev_item_ids)
    if not carry_users:
        u_src = torch.full_like(u_src, -1)
    u_known, i_known = u_src >= 0, i_src >= 0
    users[u_known] = prev_users.detach().float().cpu()[u_src[u_known]]
    items[i_known] = prev_items.detach().float().cpu()[i_src[i_known]]
    if new_rows == "neighbours":
        edge_u, edge_i = train.rows(), train.indices
        mean, has = _neighbour_mean(users, u_known, edge_i, edge_u, len(item_ids))  # 1. new items from carried users
        set_i = ~i_known & has
        items[set_i] = mean[set_i]
        i_set = i_known | set_i
        mean, has = _neighbour_mean(items, i_set, edge_u, edge_i, len(user_ids))  # 2. new users from items
        set_u = ~u_known & has
        users[set_u] = mean[set_u]
        mean, has = _neighbour_mean(users, u_known | set_u, edge_i, edge_u, len(item_ids))  # 3. the remaining new items
        rest = ~i_set & has
        items[rest] = mean[rest]
    carried_u, carried_i = int(u_known.sum()), int(i_known.sum())
    return WarmStart(
        embedding=torch.cat([users, items]).contiguous(),
        users_carried=carried_u, users_new=len(user_ids) - carried_u, users_dropped=len(prev_user_ids) - carried_u,
        items_carried=carried_i, items_new=len(item_ids) - carried_i, items_dropped=len(prev_item_ids) - carried_i,
        new_rows=new_rows,
    )
