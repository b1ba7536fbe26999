"""Reading (and, for tests and benchmarks, writing) a split snapshot folder into :class:`hqgnn.dataset.SplitData`.

Layout of ``splits/<snapshot>/`` (written by ``hqgnn prepare``):
``train.parquet``, ``valid.parquet``, ``test.parquet`` (``user_idx int32, item_idx int32,
timestamp int64`` nullable), ``users.parquet`` (``user_idx int32, user_id string, n_train int32``),
``items.parquet`` (``item_idx int32, item_id string, n_train int32``) and ``manifest.json``
(``snapshot``, ``num_users``, ``num_items``, …).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.errors import InputError
from hqgnn.dataset import SPLITS, SplitData
from hqgnn.files import atomic_write_json
from hqgnn.interactions import InteractionMatrix

REQUIRED_FILES = (*(f"{s}.parquet" for s in SPLITS), "users.parquet", "items.parquet", "manifest.json")


def load_split(split_dir: Path) -> SplitData:
    """Read a split folder; a missing file or column, or an index out of range, is an :class:`InputError`."""
    split_dir = Path(split_dir)
    missing = [f for f in REQUIRED_FILES if not (split_dir / f).is_file()]
    if missing:
        raise InputError(f"split folder {split_dir} is missing {', '.join(missing)} (run `hqgnn prepare` first)")
    from flows.integrity import verify_split

    manifest = verify_split(split_dir)  # sizes and hashes against the manifest, before use
    for key in ("num_users", "num_items"):
        if not isinstance(manifest.get(key), int) or manifest[key] <= 0:
            raise InputError(f"{split_dir / 'manifest.json'}: {key!r} must be a positive integer, got {manifest.get(key)!r}")
    n_u, n_i = manifest["num_users"], manifest["num_items"]
    user_ids = _id_map(split_dir / "users.parquet", "user_idx", "user_id", n_u)
    item_ids = _id_map(split_dir / "items.parquet", "item_idx", "item_id", n_i)
    mats = {s: _interactions(split_dir / f"{s}.parquet", n_u, n_i) for s in SPLITS}
    return SplitData(
        train=mats["train"], valid=mats["valid"], test=mats["test"], num_users=n_u, num_items=n_i,
        user_ids=user_ids, item_ids=item_ids, snapshot=str(manifest.get("snapshot", split_dir.name)),
        path=split_dir, manifest=manifest,
    )


def read_id_maps(split_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Original user and item ids by dense index (``users.parquet``, ``items.parquet``), without the interactions."""
    split_dir = Path(split_dir)
    manifest = json.loads((split_dir / "manifest.json").read_text())
    return (_id_map(split_dir / "users.parquet", "user_idx", "user_id", int(manifest["num_users"])),
            _id_map(split_dir / "items.parquet", "item_idx", "item_id", int(manifest["num_items"])))


def _columns(path: Path, names: tuple[str, ...]) -> pa.Table:
    schema_names = pq.read_schema(path).names
    absent = [c for c in names if c not in schema_names]
    if absent:
        raise InputError(f"{path}: missing column(s) {absent}; found {schema_names}")
    return pq.read_table(path, columns=list(names))


def _interactions(path: Path, n_u: int, n_i: int) -> InteractionMatrix:
    t = _columns(path, ("user_idx", "item_idx"))
    u = t.column("user_idx").to_numpy(zero_copy_only=False).astype(np.int64)
    i = t.column("item_idx").to_numpy(zero_copy_only=False).astype(np.int64)
    try:
        return InteractionMatrix.from_pairs(u, i, n_u, n_i)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from e


def _id_map(path: Path, idx_col: str, id_col: str, n: int) -> np.ndarray:
    t = _columns(path, (idx_col, id_col))
    idx = t.column(idx_col).to_numpy(zero_copy_only=False).astype(np.int64)
    if idx.size != n or not np.array_equal(np.sort(idx), np.arange(n)):
        raise InputError(f"{path}: column {idx_col!r} must hold each of 0..{n - 1} exactly once (manifest), got {idx.size} rows")
    ids = np.asarray(t.column(id_col).to_pylist(), dtype=object)
    out = np.empty(n, dtype=object)
    out[idx] = ids
    return out


def write_split(
    split_dir: Path,
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    num_users: int,
    num_items: int,
    snapshot: str | None = None,
    user_ids: Sequence[str] | None = None,
    item_ids: Sequence[str] | None = None,
) -> Path:
    """Write a split folder in the layout above from ``{"train": (users, items), "valid": …, "test": …}``.

    For tests and benchmarks (``hqgnn prepare`` writes the real ones); original ids by dense
    index are ``user_ids`` / ``item_ids`` (default ``u<idx>`` / ``i<idx>``). The manifest records
    every file's size and hash, as prepare's does.
    """
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        u, i = (np.asarray(a) for a in pairs[name])
        table = pa.table({
            "user_idx": pa.array(u, pa.int32()), "item_idx": pa.array(i, pa.int32()),
            "timestamp": pa.nulls(len(u), pa.int64()),
        })
        pq.write_table(table, split_dir / f"{name}.parquet")
    tu, ti = (np.asarray(a) for a in pairs["train"])
    for kind, n, col, given in (("user", num_users, tu, user_ids), ("item", num_items, ti, item_ids)):
        counts = np.bincount(col.astype(np.int64), minlength=n).astype(np.int32)
        ids = [f"{kind[0]}{k}" for k in range(n)] if given is None else [str(x) for x in given]
        if len(ids) != n:
            raise ValueError(f"{kind}_ids: {len(ids)} ids for {n} {kind}s")
        pq.write_table(pa.table({
            f"{kind}_idx": pa.array(np.arange(n), pa.int32()),
            f"{kind}_id": pa.array(ids, pa.string()),
            "n_train": pa.array(counts, pa.int32()),
        }), split_dir / f"{kind}s.parquet")
    from flows.integrity import file_record

    files = {f"{name}.parquet": file_record(split_dir / f"{name}.parquet") for name in (*SPLITS, "users", "items")}
    atomic_write_json(split_dir / "manifest.json", {"snapshot": snapshot or split_dir.name, "num_users": num_users,
                                                    "num_items": num_items, "files": files})
    return split_dir
