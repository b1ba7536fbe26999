"""Stage `recommend`: top-K original item ids for an original user id from ``codes/current``.

Reads only the published code version and the train split of its snapshot (no model, no
checkpoint): the user's row, every item code, the user's train items (masked). Ranking is the
model's code score (``rank_by="score"``, what evaluation's ``codes`` row measures); 1-bit codes
can also rank by pure Hamming distance (``rank_by="hamming"``, FAISS, = the SQL query).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.code_versions import CODE_FILES, read_code_version
from flows.errors import InputError
from flows.integrity import verify_split
from flows.workdir import WorkDir
from hqgnn.interactions import InteractionMatrix
from hqgnn.retrieval import RankBy, Retriever


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
    codes = read_code_version(workdir.code_version())
    retriever = Retriever(codes.users, codes.items, rank_by)  # checks rank_by against the widths
    row = np.flatnonzero(codes.user_ids == str(user_id))
    if row.size == 0:
        raise InputError(f"unknown user {user_id!r}: not in {codes.path / CODE_FILES['user']} "
                         "(ids are the original user ids of the split's id map)")
    user_idx = int(row[0])
    seen = _train_items(workdir, codes.manifest, user_idx, len(codes.items))
    got, scores = retriever.recommend(user_idx, k, seen)
    rec = Recommendation(user_id, codes.path.name, codes.bits, rank_by,
                         tuple(str(codes.item_ids[i]) for i in got), tuple(float(s) for s in scores))
    if print_result:
        what = "hamming" if rank_by == "hamming" else "score"
        print(f"rank\titem_id\t{what}")
        for r, (item, s) in enumerate(zip(rec.item_ids, rec.scores, strict=True), 1):
            print(f"{r}\t{item}\t{int(s) if rank_by == 'hamming' else round(s, 6)}")
    return rec


def _train_items(workdir: WorkDir, manifest: dict, user_idx: int, num_items: int) -> InteractionMatrix:
    """The user's train items (split snapshot the codes were exported from) as a 1 x num_items
    matrix: row 0 is the user, matching the one-user retriever."""
    path = workdir.splits / str(manifest["snapshot"]) / "train.parquet"
    if not path.is_file() and manifest.get("split_dir"):
        path = Path(manifest["split_dir"]) / "train.parquet"
    if not path.is_file():
        raise InputError(f"the split of the published codes is missing: {path} (snapshot {manifest.get('snapshot')})")
    verify_split(path.parent)  # its train.parquet against the snapshot's manifest (hashed once per process)
    t = pq.read_table(path, columns=["user_idx", "item_idx"], filters=[("user_idx", "=", user_idx)])
    items = np.array(pc.cast(t.column("item_idx"), "int64").to_numpy(), dtype=np.int64)
    return InteractionMatrix.from_pairs(np.zeros(len(items), dtype=np.int64), items, 1, num_items)
