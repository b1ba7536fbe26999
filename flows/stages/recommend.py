"""Stage `recommend` (issue 4): top-K original item ids for an original user id from ``codes/current``.

Reads only the published code version and the train split of its snapshot (no model, no
checkpoint): the user's row, every item code, the user's train items (masked). Ranking is the
model's code score (``rank_by="score"``, what evaluation's ``codes`` row measures); 1-bit codes
can also rank by pure Hamming distance (``rank_by="hamming"``, FAISS, = the SQL query).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hqgnn.errors import InputError
from hqgnn.export import CODE_FILES, read_code_table
from hqgnn.interactions import InteractionMatrix
from hqgnn.retrieval import RANK_BY, RankBy, Retriever
from hqgnn.workdir import WorkDir


@dataclass(frozen=True)
class Recommendation:
    """Top-K items of one user from one code version."""

    user_id: str
    version: str
    bits: int
    rank_by: str
    item_ids: tuple[str, ...]
    scores: tuple[float, ...]


def recommend(workdir: WorkDir, user_id: str, k: int = 20, rank_by: RankBy = "score", print_result: bool = True) -> Recommendation:
    """Top-``k`` item ids for ``user_id`` (an original id), excluding the user's train items."""
    if k <= 0:
        raise InputError(f"--k must be positive, got {k}")
    if rank_by not in RANK_BY:
        raise InputError(f"--rank-by must be one of {RANK_BY}, got {rank_by!r}")
    folder = workdir.code_version()
    version = folder.name
    manifest = json.loads((folder / "manifest.json").read_text())
    bits, dim = int(manifest["bits"]), int(manifest["dim"])
    if rank_by == "hamming" and bits != 1:
        raise InputError(f"--rank-by hamming needs 1-bit codes; codes/current ({folder.name}) has {bits} bits")
    user_idx = _user_index(folder / CODE_FILES["user"], user_id)
    users, _ = read_code_table(folder / CODE_FILES["user"], "user", bits, dim)
    items, item_ids = read_code_table(folder / CODE_FILES["item"], "item", bits, dim)
    seen = _train_items(workdir, manifest, user_idx, len(items))
    got, scores = Retriever(users.subset(np.array([user_idx])), items, rank_by).topk(np.array([0]), k, [seen])
    keep = got[0] >= 0
    rec = Recommendation(
        user_id, version, bits, rank_by,
        tuple(str(item_ids[i]) for i in got[0][keep]),
        tuple(float(s) * (1.0 if rank_by == "hamming" else float(users.scale[user_idx])) for s in scores[0][keep]),
    )
    if print_result:
        what = "hamming" if rank_by == "hamming" else "score"
        print(f"rank\titem_id\t{what}")
        for r, (item, s) in enumerate(zip(rec.item_ids, rec.scores, strict=True), 1):
            print(f"{r}\t{item}\t{int(s) if rank_by == 'hamming' else round(s, 6)}")
    return rec


def _user_index(path: Path, user_id: str) -> int:
    t = pq.read_table(path, columns=["user_idx", "user_id"], filters=[("user_id", "=", str(user_id))])
    if t.num_rows == 0:
        raise InputError(f"unknown user {user_id!r}: not in {path} (ids are the original user ids of the split's id map)")
    return int(t.column("user_idx")[0].as_py())


def _train_items(workdir: WorkDir, manifest: dict, user_idx: int, num_items: int) -> InteractionMatrix:
    """The user's train items (split snapshot the codes were exported from) as a 1 x num_items
    matrix: row 0 is the user, matching the one-user retriever."""
    path = workdir.splits / str(manifest["snapshot"]) / "train.parquet"
    if not path.is_file() and manifest.get("split_dir"):
        path = Path(manifest["split_dir"]) / "train.parquet"
    if not path.is_file():
        raise InputError(f"the split of the published codes is missing: {path} (snapshot {manifest.get('snapshot')})")
    t = pq.read_table(path, columns=["user_idx", "item_idx"], filters=[("user_idx", "=", user_idx)])
    items = np.array(pc.cast(t.column("item_idx"), "int64").to_numpy(), dtype=np.int64)
    return InteractionMatrix.from_pairs(np.zeros(len(items), dtype=np.int64), items, 1, num_items)
