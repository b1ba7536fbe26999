"""A tiny planted split folder shared by the training, distributed and sweep tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flows.split_files import write_split
from hqgnn.synthetic import SyntheticSpec, generate_interactions

N_USERS, N_ITEMS = 60, 80


def tiny_split(root: Path) -> Path:
    """A planted split (users prefer one of 4 topics) written as an hqgnn split folder."""
    spec = SyntheticSpec(num_users=N_USERS, num_items=N_ITEMS, mean_events_per_user=12, num_topics=4,
                         topic_affinity=0.9, zipf_exponent=0.5, min_events_per_user=6, seed=5)
    t = generate_interactions(spec)
    u = np.array([int(s[1:]) for s in t.column("user_id").to_pylist()])
    i = np.array([int(s[1:]) for s in t.column("item_id").to_pylist()])
    key = np.unique(u * N_ITEMS + i)
    u, i = key // N_ITEMS, key % N_ITEMS
    r = np.random.default_rng(5).random(u.size)
    parts = {"train": r < 0.7, "valid": (r >= 0.7) & (r < 0.85), "test": r >= 0.85}
    split = write_split(root / "splits" / "tiny", {k: (u[m], i[m]) for k, m in parts.items()}, N_USERS, N_ITEMS)
    os.symlink("tiny", root / "splits" / "current")
    return split
