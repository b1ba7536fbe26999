"""LightGCN-format folders (``train.txt``, ``test.txt``: one ``user item item …`` line per user), numpy only.

The file reader of the benchmarks that must run where the application's readers cannot (a GPU
machine without prefect or duckdb: ``bench/gpu_check.py``). Ids are used as they are (0-based
indices); blank lines and lines with a user but no item are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``user item item …`` lines of ``path`` → parallel int64 arrays of users and items ``[nnz]``."""
    users, items = [], []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            ids = np.asarray(parts, dtype=np.int64)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: expected integer ids, got {line[:80]!r}") from e
        users.append(np.full(ids.size - 1, ids[0]))
        items.append(ids[1:])
    if not users:
        raise ValueError(f"{path}: no 'user item …' line with at least one item")
    return np.concatenate(users), np.concatenate(items)


def read_folder(folder: Path, max_users: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (users, items), "test": (users, items)}`` of a LightGCN-format folder.

    ``max_users``: keep only users ``< max_users`` (a quick subsample; item ids are kept).
    """
    out = {}
    for name in ("train", "test"):
        path = Path(folder) / f"{name}.txt"
        if not path.is_file():
            raise ValueError(f"{folder}: missing {name}.txt (a LightGCN-format folder holds train.txt and test.txt)")
        u, i = read_pairs(path)
        if max_users is not None:
            keep = u < max_users
            u, i = u[keep], i[keep]
        out[name] = (u, i)
    return out


def carve_valid(users: np.ndarray, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """bool masks ``[nnz]`` (train, valid) of the pairs whose users are ``users`` ``[nnz]``: ``ratio``
    of each user's pairs (rounded at random) go to valid, at least one stays in train; seeded, as
    ``bench/quality.py``'s ``prepare_split``."""
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    n_users = int(users.max()) + 1
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(users.size), users))  # shuffled within each user
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(users.size, dtype=np.int64)
    rank[order] = np.arange(users.size) - starts[users[order]]
    n_valid = np.minimum(np.floor(counts * ratio + rng.random(n_users)).astype(np.int64), counts - 1)
    valid = rank < n_valid[users]
    return ~valid, valid
