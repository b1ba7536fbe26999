"""One served code version, loaded and verified once, then read by every request, never changed.

A :class:`LoadedVersion` holds what the service needs to answer from ``codes/<version>/``:
the code tables (through :class:`hqgnn.retrieval.Retriever`, the ranking `hqgnn recommend`
uses), the original ids both ways, and the train items of the split snapshot the codes were
exported from (seen items, loaded once per version as a CSR matrix). It is immutable: a hot
swap builds a new one beside it and replaces the reference (:mod:`flows.serving.swap`), so a
request that picked up the old one finishes on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import Tensor

from flows.code_versions import CODE_FILES, check_code_version, read_code_version, version_manifest
from flows.errors import InputError
from flows.workdir import file_sha256
from hqgnn.fold_in import recommend_for_items
from hqgnn.interactions import InteractionMatrix
from hqgnn.retrieval import Retriever
from hqgnn.warm_start import match_rows


class IdMap:
    """Original ids <-> dense indices of one side, compact: the ids as an Arrow string array in
    index order plus an int32 sort permutation, looked up by binary search (about
    ``8 + len(id)`` bytes per id; a dict of Python strings costs ~150 B per id, which at 1 M
    items outweighs the 1-bit codes twelvefold).

    ``ids``: the original ids, ``[n]``, by dense index (any sequence of strings).
    """

    def __init__(self, ids: np.ndarray | list[str] | pa.Array) -> None:
        arr = ids if isinstance(ids, pa.Array) else pa.array([str(x) for x in ids], pa.string())
        self.ids = arr.cast(pa.string())
        self.order = np.asarray(pc.sort_indices(self.ids).to_numpy(), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int) -> str:
        """The original id of dense index ``idx``."""
        return str(self.ids[int(idx)].as_py())

    def take(self, idx: np.ndarray) -> list[str]:
        """Original ids of dense indices ``idx`` ``[m]``, in order."""
        return self.ids.take(pa.array(np.asarray(idx, dtype=np.int64))).to_pylist()

    def index(self, original: str) -> int | None:
        """Dense index of an original id, or None when it is not in the map."""
        lo, hi = 0, len(self.order)
        while lo < hi:  # leftmost position whose id is >= original
            mid = (lo + hi) // 2
            if self.ids[int(self.order[mid])].as_py() < original:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.order) and self.ids[int(self.order[lo])].as_py() == original:
            return int(self.order[lo])
        return None

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.order.nbytes)


@dataclass(frozen=True)
class Ranked:
    """Top-K answer: original ids and the model's scores, best first."""

    ids: list[str]
    scores: list[float]


@dataclass(frozen=True, eq=False)
class LoadedVersion:
    """A verified code version ready to rank (see module docstring)."""

    name: str
    path: Path
    manifest: dict[str, Any]
    retriever: Retriever  # user codes x item codes, rank_by="score"; item rows: retriever.item_rows
    user_ids: IdMap  # original ids <-> dense user indices
    item_ids: IdMap
    train: InteractionMatrix  # [num_users, num_items]: the seen items, by code row
    item_degree: Tensor  # float32 [num_items]: each item's train interactions (fold-in's normalisation)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def bits(self) -> int:
        """The version's width (its item codes')."""
        return self.retriever.bits

    @property
    def user_bits(self) -> int:
        """The users' width: ``bits``, or 32 for a float-users version."""
        return self.retriever.user_bits

    @property
    def dim(self) -> int:
        return self.retriever.dim

    def describe(self) -> dict[str, Any]:
        """What ``GET /version`` shows of it."""
        return {
            "version": self.name, "bits": self.bits, "user_bits": self.user_bits, "dim": self.dim,
            "snapshot": self.manifest.get("snapshot"), "run": self.manifest.get("run"),
            "loaded_at": self.loaded_at,
            "rows": {"users": len(self.user_ids), "items": len(self.item_ids), "train_pairs": self.train.nnz},
        }

    def seen_row(self, user: int) -> InteractionMatrix:
        """The train items of dense user ``user`` as the ``[1, num_items]`` matrix
        :meth:`Retriever.recommend` takes (row 0 is this user), as ``hqgnn recommend`` builds it."""
        lo, hi = int(self.train.indptr[user]), int(self.train.indptr[user + 1])
        items = self.train.indices[lo:hi].numpy()
        return InteractionMatrix.from_pairs(np.zeros(len(items), dtype=np.int64), items, 1, len(self.item_ids))

    def recommend(self, user: int, k: int, exclude_seen: bool = True) -> Ranked:
        """Top-``k`` items of dense user ``user``: :meth:`Retriever.recommend`, item for item."""
        seen = self.seen_row(user) if exclude_seen else _no_items(len(self.item_ids))
        got, scores = self.retriever.recommend(user, k, seen)
        return Ranked(self.item_ids.take(got), [float(s) for s in scores])

    def recommend_many(self, users: list[int], k: int, exclude_seen: bool = True) -> list[Ranked]:
        """:meth:`recommend` for several dense users in one :meth:`Retriever.topk` call (the seen
        items: rows of the train matrix). Same items, order and scores as :meth:`recommend` when
        the retriever is batch-invariant (:attr:`hqgnn.retrieval.Retriever.batch_invariant`; see
        :mod:`flows.serving.batch`)."""
        u = np.asarray(users, dtype=np.int64)
        got, scores = self.retriever.topk(u, k, [self.train] if exclude_seen else [])
        out = []
        for row, user in enumerate(u):
            keep = got[row] >= 0
            out.append(Ranked(self.item_ids.take(got[row][keep]),
                              [float(s) for s in scores[row][keep] * self.retriever.users.scale[user]]))
        return out

    def similar(self, item: int, k: int) -> Ranked:
        """Top-``k`` items for item ``item`` by the same code score (its own code as the query),
        the item itself left out."""
        me = InteractionMatrix.from_pairs(np.zeros(1, dtype=np.int64), np.array([item]), 1, len(self.item_ids))
        got, scores = self.retriever.with_queries(self.retriever.item_rows(np.array([item]))).recommend(0, k, me)
        return Ranked(self.item_ids.take(got), [float(s) for s in scores])


    def recommend_for_items(self, items: list[int], k: int) -> Ranked:
        """Top-``k`` for an anonymous user who interacted with dense ``items`` (fold-in: the
        user's code from these items' codes, ranked like a known user, the items themselves
        excluded; :func:`hqgnn.fold_in.recommend_for_items`, as ``hqgnn recommend --items``)."""
        got, scores = recommend_for_items(torch.as_tensor(items, dtype=torch.int64), self.retriever, k, self.item_degree)
        return Ranked(self.item_ids.take(got), [float(x) for x in scores])


def _no_items(num_items: int) -> InteractionMatrix:
    return InteractionMatrix.from_pairs(np.empty(0, np.int64), np.empty(0, np.int64), 1, num_items)


def train_split_path(workdir_root: Path, manifest: dict[str, Any], version_path: Path) -> Path:
    """``splits/<snapshot>/train.parquet`` of the codes' snapshot (or the manifest's
    ``split_dir``, as `hqgnn recommend` looks it up); InputError naming both when missing."""
    snapshot = str(manifest.get("snapshot"))
    path = Path(workdir_root) / "splits" / snapshot / "train.parquet"
    if not path.is_file() and manifest.get("split_dir"):
        path = Path(manifest["split_dir"]) / "train.parquet"
    if not path.is_file():
        raise InputError(
            f"{version_path.name}: the train split of its snapshot {snapshot!r} is missing "
            f"({Path(workdir_root) / 'splits' / snapshot / 'train.parquet'}); copy it beside the codes "
            "(the service excludes each user's train items)"
        )
    return path


def load_version(workdir_root: Path, path: Path, verify: bool = True, scaled_index_min_items: int = 100_000) -> LoadedVersion:
    """Verify (hashes, contracts: :func:`check_code_version`) and load ``codes/<version>/``.

    ``scaled_index_min_items``: passed to :class:`Retriever` (from which catalog size the 1-bit
    score top-K uses the bucketed FAISS index; both paths give the same ranking).
    Raises InputError (naming the file) for anything that would make a wrong or partial answer.
    """
    path = Path(path).resolve()
    manifest = version_manifest(path)
    if verify:
        check_code_version(path)
    train_path = train_split_path(workdir_root, manifest, path)
    recorded = (manifest.get("snapshot_hashes") or {}).get("train.parquet")
    if verify and recorded and file_sha256(train_path) != recorded:
        raise InputError(f"{train_path}: SHA-256 differs from the one {path.name}'s manifest recorded: "
                         "the split changed after the codes were exported; re-export")
    try:
        codes = read_code_version(path)
    except ValueError as e:
        raise InputError(str(e)) from e
    # From the bucketed index's size on, the index holds the only copy of the item codes
    # (16 B/item at d = 64); below, the packed-only table (12 B/item). Nothing keeps `codes`.
    retriever = Retriever(codes.users, codes.items, "score", scaled_index_min_items=scaled_index_min_items)
    train, degree = _seen_and_degrees(train_path.parent, codes.user_ids, codes.item_ids)
    loaded = LoadedVersion(
        name=path.name, path=path, manifest=manifest, retriever=retriever,
        user_ids=_id_map(path, "user", len(codes.users)), item_ids=_id_map(path, "item", len(codes.items)),
        train=train, item_degree=degree,
    )
    del codes  # the object-array ids of read_code_version (the IdMaps replace them) and, with the
    # bucketed index, the packed item codes it copied
    release_freed_memory()
    return loaded


def release_freed_memory() -> None:
    """Hand memory freed after a load back to the OS (Arrow's pool and glibc keep it otherwise:
    ~80 MB after loading 1 M items), so a long-running service's RSS follows what it holds."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _id_map(path: Path, kind: str, n: int) -> IdMap:
    """The id column of ``<kind>s.parquet`` as an :class:`IdMap` (rows in dense-index order, as
    :func:`read_code_table` returned them)."""
    t = pq.read_table(path / CODE_FILES[kind], columns=[f"{kind}_idx", f"{kind}_id"])
    order = pc.sort_indices(t.column(f"{kind}_idx"))
    ids = t.column(f"{kind}_id").take(order).combine_chunks()
    if len(ids) != n:
        raise InputError(f"{path / CODE_FILES[kind]}: {len(ids)} ids for {n} codes")
    return IdMap(ids)


def _seen_and_degrees(split_dir: Path, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[InteractionMatrix, Tensor]:
    """The snapshot's train pairs as code rows ``[num_users, num_items]`` and each code item's
    train count ``[num_items]`` (float32), matched by original id as `hqgnn recommend` matches
    them, so a fold-in version (users appended to its parent's rows) masks the right items."""
    t = pq.read_table(split_dir / "train.parquet", columns=["user_idx", "item_idx"])
    users = np.array(pc.cast(t.column("user_idx"), "int64").to_numpy(), dtype=np.int64)
    items = np.array(pc.cast(t.column("item_idx"), "int64").to_numpy(), dtype=np.int64)
    split_users = pq.read_table(split_dir / "users.parquet", columns=["user_idx", "user_id"]).sort_by("user_idx")
    split_items = pq.read_table(split_dir / "items.parquet", columns=["item_idx", "item_id", "n_train"]).sort_by("item_idx")
    user_row = match_rows(np.asarray(split_users.column("user_id").to_pylist(), dtype=object), user_ids).numpy()
    item_row = match_rows(np.asarray(split_items.column("item_id").to_pylist(), dtype=object), item_ids).numpy()
    u, i = user_row[users], item_row[items]
    keep = (u >= 0) & (i >= 0)
    seen = InteractionMatrix.from_pairs(u[keep], i[keep], len(user_ids), len(item_ids))
    degree = torch.zeros(len(item_ids))
    known = item_row >= 0
    degree[torch.from_numpy(item_row[known])] = torch.tensor(split_items.column("n_train").to_numpy(), dtype=torch.float32)[known]
    return seen, degree


