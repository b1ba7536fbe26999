"""Tiny generated splits and trained-run folders for the export / evaluation / SQL tests.

A planted low-rank model: users and items get latent vectors, each user interacts with its
best-scoring items, interactions are split at random. Embeddings equal to the latent vectors
rank well (high recall); random embeddings rank badly: enough to exercise the publish gate.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from flows.config import TrainConfig
from flows.split_files import write_split
from flows.workdir import WorkDir, switch_pointer
from hqgnn.checkpoint import save_checkpoint


def planted(num_users: int = 60, num_items: int = 120, dim: int = 64, per_user: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Latent user/item vectors and a train/valid/test split of each user's best items."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(num_users, dim)).astype(np.float32)
    i = rng.normal(size=(num_items, dim)).astype(np.float32)
    best = np.argsort(-(u @ i.T), axis=1)[:, :per_user]
    pairs: dict[str, tuple[list[int], list[int]]] = {s: ([], []) for s in ("train", "valid", "test")}
    for user in range(num_users):
        items = rng.permutation(best[user])
        for name, chunk in (("train", items[:8]), ("valid", items[8:10]), ("test", items[10:])):
            pairs[name][0].extend([user] * len(chunk))
            pairs[name][1].extend(chunk.tolist())
    # every item in train at least once (no cold items): give leftovers to user 0's train
    seen = set(pairs["train"][1])
    for item in range(num_items):
        if item not in seen:
            pairs["train"][0].append(item % num_users)
            pairs["train"][1].append(item)
    split = {s: (np.array(a), np.array(b)) for s, (a, b) in pairs.items()}
    return u, i, split


def make_split(workdir: WorkDir, split: dict, num_users: int, num_items: int, snapshot: str = "snap1") -> Path:
    """Write ``splits/<snapshot>/`` and point ``splits/current`` at it."""
    # drop valid/test pairs that are also in train (leftover assignment above)
    train = set(zip(*(a.tolist() for a in split["train"]), strict=True))
    clean = {"train": split["train"]}
    for s in ("valid", "test"):
        keep = [k for k, p in enumerate(zip(*(a.tolist() for a in split[s]), strict=True)) if p not in train]
        clean[s] = (split[s][0][keep], split[s][1][keep])
    path = write_split(workdir.splits / snapshot, clean, num_users, num_items, snapshot)
    switch_pointer(workdir.splits / "current", path)
    return path


def make_run(workdir: WorkDir, name: str, split_dir: Path, user_emb: np.ndarray, item_emb: np.ndarray, bits: int,
             float_users: bool = False) -> Path:
    """A finished run folder as `hqgnn train` writes it (config.json, best.pt, summary.json), pointed to by models/latest."""
    run_dir = workdir.models / name
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(bits=bits, dim=user_emb.shape[1], epochs=1, float_users=float_users)
    n_u, n_i = user_emb.shape[0], item_emb.shape[0]
    (run_dir / "config.json").write_text(json.dumps({
        "run": name, "config": cfg.model_dump(mode="json"), "snapshot": split_dir.name,
        "split_dir": os.path.relpath(split_dir, run_dir),
        "model_args": {"num_users": n_u, "num_items": n_i, "dim": user_emb.shape[1], "layers": 0},
    }))
    save_checkpoint(run_dir / "best.pt", {
        "model_args": {"num_users": n_u, "num_items": n_i, "dim": user_emb.shape[1], "layers": 0},
        "config": cfg.model_dump(mode="json"), "epoch": 1, "valid": {"recall@20": 0.0},
        "user_emb": torch.from_numpy(user_emb), "item_emb": torch.from_numpy(item_emb),
    })
    (run_dir / "summary.json").write_text(json.dumps({"run": name, "status": "completed"}))  # a finished run
    switch_pointer(workdir.models / "latest", run_dir)
    return run_dir
