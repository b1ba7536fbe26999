"""Like-for-like comparison of two code models on one validation split (the publish gate's math).

The champion (the published codes of a width) was trained on an older snapshot; the challenger
on tonight's. Their dense indices differ, so rows are matched by ORIGINAL id, and both are scored
on the same users, the same candidate items and the same held-out interactions:

- **users**: tonight's valid users that the champion knows (a user it has never seen has no
  champion row; folded-in users count as known, they have one);
- **items**: both rankings run over the items both models know. An item new tonight has no
  champion row: it is removed from BOTH rankings and its valid interactions from the truth (so
  the challenger is neither rewarded nor penalised for items the champion cannot rank);
- **masking**: tonight's train interactions of those users (on those items), for both.

Users left with no valid interaction on a common item carry no signal and are skipped, as in
:func:`hqgnn.metrics.evaluate_ranking`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hqgnn.codes import CodeTable
from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import evaluate_ranking
from hqgnn.retrieval import Retriever

RULE = ("scored on tonight's valid split: users both models know (matched by original id), ranking over items both "
        "know (items unknown to the champion removed from both rankings and from the truth), tonight's train masked")


@dataclass(frozen=True)
class CodeModel:
    """A code model as the gate sees it: user and item code tables and their original ids by row."""

    users: CodeTable
    items: CodeTable
    user_ids: np.ndarray  # [num_users] original ids
    item_ids: np.ndarray  # [num_items]


@dataclass(frozen=True)
class Comparison:
    """Both models' metrics on the common ground, and how much of tonight's split that is."""

    champion: dict[str, float]
    challenger: dict[str, float]
    users_compared: int  # valid users with >= 1 valid interaction on a common item
    valid_users: int  # valid users tonight
    items_common: int
    items_new: int  # tonight's items the champion does not know (excluded from both rankings)
    valid_interactions_compared: int
    valid_interactions: int


def align(new_ids: np.ndarray, old_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ids present in both: int64 ``(new_rows [m], old_rows [m])``, ascending in ``new_rows``."""
    old_pos = {str(x): k for k, x in enumerate(old_ids)}
    pairs = [(k, old_pos[str(x)]) for k, x in enumerate(new_ids) if str(x) in old_pos]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.asarray(pairs, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def restrict(m: InteractionMatrix, rows: np.ndarray, cols: np.ndarray) -> InteractionMatrix:
    """The submatrix ``m[rows][:, cols]`` ``[len(rows), len(cols)]`` (rows and cols: int64 indices of ``m``)."""
    row_pos = torch.full((m.num_users,), -1, dtype=torch.int64)
    row_pos[torch.as_tensor(rows)] = torch.arange(len(rows))
    col_pos = torch.full((m.num_items,), -1, dtype=torch.int64)
    col_pos[torch.as_tensor(cols)] = torch.arange(len(cols))
    u, i = row_pos[m.rows()], col_pos[m.indices]
    keep = (u >= 0) & (i >= 0)
    return InteractionMatrix.from_pairs(u[keep], i[keep], len(rows), len(cols))


def compare(
    champion: CodeModel,
    challenger: CodeModel,
    valid: InteractionMatrix,
    train: InteractionMatrix,
    ks: Sequence[int] = (20, 50),
) -> Comparison:
    """Score ``champion`` and ``challenger`` on the common ground of ``valid`` (module docstring).

    ``challenger``'s rows are tonight's split indices (``valid``/``train`` are
    ``[len(challenger.user_ids), len(challenger.item_ids)]``); the champion's are its own.
    """
    if valid.num_users != len(challenger.user_ids) or valid.num_items != len(challenger.item_ids):
        raise ValueError(f"valid is {valid.num_users} x {valid.num_items} but the challenger has "
                         f"{len(challenger.user_ids)} users x {len(challenger.item_ids)} items")
    u_new, u_old = align(challenger.user_ids, champion.user_ids)
    i_new, i_old = align(challenger.item_ids, champion.item_ids)
    truth, seen = restrict(valid, u_new, i_new), restrict(train, u_new, i_new)
    champ = Retriever(champion.users, champion.items, "score")
    chall = Retriever(challenger.users, challenger.items, "score")
    old_items, new_items = torch.as_tensor(i_old), torch.as_tensor(i_new)

    def champion_scores(b: torch.Tensor) -> torch.Tensor:
        return champ.scores(u_old[b.numpy()])[:, old_items]

    def challenger_scores(b: torch.Tensor) -> torch.Tensor:
        return chall.scores(u_new[b.numpy()])[:, new_items]

    if truth.nnz == 0:
        empty = {f"{name}@{k}": float("nan") for k in ks for name in ("recall", "ndcg", "precision", "hit_rate")}
        metrics_champ, metrics_chall = {**empty, "users": 0.0}, {**empty, "users": 0.0}
    else:
        metrics_champ = evaluate_ranking(champion_scores, truth, (seen,), ks)
        metrics_chall = evaluate_ranking(challenger_scores, truth, (seen,), ks)
    return Comparison(
        champion=metrics_champ, challenger=metrics_chall, users_compared=int(metrics_chall["users"]),
        valid_users=int((valid.row_lengths() > 0).sum()), items_common=len(i_new),
        items_new=len(challenger.item_ids) - len(i_new), valid_interactions_compared=truth.nnz,
        valid_interactions=valid.nnz,
    )
