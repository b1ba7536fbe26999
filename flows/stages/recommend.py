"""Stage `recommend`: top-K original item ids for an original user id from ``codes/current``.

Reads only the published code version and the train split of its snapshot (no model, no
checkpoint): the user's row, every item code, the user's train items (masked). Ranking is the
model's code score (``rank_by="score"``, what evaluation's ``codes`` row measures); 1-bit codes
can also rank by pure Hamming distance (``rank_by="hamming"``, FAISS, = the SQL query).
The user's train items are found by original id (user id -> snapshot index -> item ids -> code
rows), so fold-in versions (users appended after the parent's rows) mask the right items.
``recommend_items`` answers ``--items ID,ID,...`` for an anonymous list (fold-in math).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from flows.code_versions import CODE_FILES, CodeVersion, read_code_version
from flows.errors import InputError
from flows.integrity import verify_split
from flows.workdir import WorkDir
from hqgnn.fold_in import recommend_for_items
from hqgnn.interactions import InteractionMatrix
from hqgnn.retrieval import RankBy, Retriever
from hqgnn.warm_start import match_rows


@dataclass(frozen=True)
class Recommendation:
    """Top-K items of one user from one code version."""

    user_id: str
    version: str
    bits: int
    rank_by: str
    item_ids: tuple[str, ...]
    scores: tuple[float, ...]


def recommend(workdir: WorkDir, user_id: str, k: int = 20, rank_by: RankBy = "score", print_result: bool = True,
              version: str | None = None) -> Recommendation:
    """Top-``k`` item ids for ``user_id`` (an original id), excluding the user's train items
    (``version``: a code version folder name; default ``codes/current``)."""
    if k <= 0:
        raise InputError(f"--k must be positive, got {k}")
    codes = read_code_version(workdir.code_version(version))
    retriever = Retriever(codes.users, codes.items, rank_by)  # checks rank_by against the widths
    row = np.flatnonzero(codes.user_ids == str(user_id))
    if row.size == 0:
        raise InputError(f"unknown user {user_id!r}: not in {codes.path / CODE_FILES['user']} "
                         "(ids are the original user ids of the split's id map)")
    user_idx = int(row[0])
    seen = _train_items(workdir, codes, str(user_id))
    got, scores = retriever.recommend(user_idx, k, seen)
    rec = Recommendation(user_id, codes.path.name, codes.bits, rank_by,
                         tuple(str(codes.item_ids[i]) for i in got), tuple(float(s) for s in scores))
    if print_result:
        _print(rec)
    return rec


def recommend_items(workdir: WorkDir, item_ids: list[str], k: int = 20, rank_by: RankBy = "score", print_result: bool = True,
                    version: str | None = None) -> Recommendation:
    """Top-``k`` item ids for an anonymous list of original item ids (``--items``), the given items
    excluded: the list is folded in like a new user (:func:`hqgnn.fold_in.recommend_for_items`).
    Unknown ids are skipped (named on standard error); none known is an :class:`InputError`."""
    if k <= 0:
        raise InputError(f"--k must be positive, got {k}")
    wanted = [str(x).strip() for x in item_ids if str(x).strip()]
    if not wanted:
        raise InputError("--items: give at least one item id, e.g. --items i1,i7")
    codes = read_code_version(workdir.code_version(version))
    rows = match_rows(np.asarray(wanted, dtype=object), codes.item_ids)
    unknown = [w for w, r in zip(wanted, rows.tolist(), strict=True) if r < 0]
    if len(unknown) == len(wanted):
        raise InputError(f"--items: none of {wanted[:5]} is an item of {codes.path / CODE_FILES['item']} (original item ids)")
    if unknown:
        print(f"recommend --items: skipped unknown item id(s) {unknown[:10]}", file=sys.stderr)
    got, scores = recommend_for_items(rows[rows >= 0], codes.items, k, _item_degrees(workdir, codes), rank_by, codes.user_bits)
    rec = Recommendation("(items " + ",".join(wanted[:5]) + ")", codes.path.name, codes.bits, rank_by,
                         tuple(str(codes.item_ids[i]) for i in got), tuple(float(s) for s in scores))
    if print_result:
        _print(rec)
    return rec


def _print(rec: Recommendation) -> None:
    what = "hamming" if rec.rank_by == "hamming" else "score"
    print(f"rank\titem_id\t{what}")
    for r, (item, s) in enumerate(zip(rec.item_ids, rec.scores, strict=True), 1):
        print(f"{r}\t{item}\t{int(s) if rec.rank_by == 'hamming' else round(s, 6)}")


def _split_dir(workdir: WorkDir, manifest: dict) -> Path:
    path = workdir.splits / str(manifest["snapshot"])
    if not (path / "train.parquet").is_file() and manifest.get("split_dir"):
        path = Path(manifest["split_dir"])
    if not (path / "train.parquet").is_file():
        raise InputError(f"the split of the published codes is missing: {path / 'train.parquet'} (snapshot {manifest.get('snapshot')})")
    verify_split(path)  # its files against the snapshot's manifest (hashed once per process)
    return path


def _train_items(workdir: WorkDir, codes: CodeVersion, user_id: str) -> InteractionMatrix:
    """The user's train items in the snapshot of the code version as a 1 x num_items matrix of
    code rows (row 0 is the user, matching the one-user retriever). Matched by original ids, so
    it holds for fold-in versions, whose user rows are not the snapshot's indices."""
    split = _split_dir(workdir, codes.manifest)
    users = pq.read_table(split / "users.parquet", columns=["user_idx", "user_id"], filters=[("user_id", "=", user_id)])
    num_items = len(codes.items)
    if users.num_rows == 0:
        return InteractionMatrix.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), 1, num_items)
    user_idx = int(users.column("user_idx")[0].as_py())
    t = pq.read_table(split / "train.parquet", columns=["user_idx", "item_idx"], filters=[("user_idx", "=", user_idx)])
    split_items = np.array(pc.cast(t.column("item_idx"), "int64").to_numpy(), dtype=np.int64)
    item_map = pq.read_table(split / "items.parquet", columns=["item_idx", "item_id"])
    id_of = dict(zip(item_map.column("item_idx").to_pylist(), item_map.column("item_id").to_pylist(), strict=True))
    rows = match_rows(np.asarray([id_of[int(i)] for i in split_items], dtype=object), codes.item_ids).numpy()
    rows = rows[rows >= 0]
    return InteractionMatrix.from_pairs(np.zeros(len(rows), dtype=np.int64), rows, 1, num_items)


def _item_degrees(workdir: WorkDir, codes: CodeVersion) -> torch.Tensor:
    """float32 ``[num_items]``: each code row's train interactions (``n_train`` of the snapshot's id map, by id)."""
    t = pq.read_table(_split_dir(workdir, codes.manifest) / "items.parquet", columns=["item_id", "n_train"])
    rows = match_rows(np.asarray(t.column("item_id").to_pylist(), dtype=object), codes.item_ids)
    out = torch.zeros(len(codes.items))
    known = rows >= 0
    out[rows[known]] = torch.tensor(t.column("n_train").to_numpy(), dtype=torch.float32)[known]
    return out
