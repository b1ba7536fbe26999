"""Stage `foldin` (issue 16): codes for users who arrived after the last training, without retraining.

extract (the published codes of a width, the snapshot with the new users) -> compute
(:func:`hqgnn.fold_in.fold_in_codes`: LightGCN's one-hop over each new user's train items, with
the published item codes and the items' train degrees, then for 1 bit ``refine_rounds`` rounds
of user-code refinement against those item codes, then the model's quantizer) -> write (a NEW version
folder ``codes/<stamp>-foldin-<run>/``, temp then rename) -> validate (the code contracts, the id
invariants, and that every row of the parent version is byte-identical) -> publish.

- New users: ids in ``splits/<snapshot>/users.parquet`` not in the published ``users.parquet``.
  Their TRAIN interactions are folded in (valid/test stay held out, as for a trained user), on
  items the published model knows; a user with none of those gets no code (counted).
- The version keeps every user and item row of its parent (same order, same bytes) and appends
  the new users; its manifest names the parent version, the snapshot the users came from and
  the counts. Never an in-place edit: the parent version stays on disk, ``rollback`` finds it.
- Publish: ``codes/current-<b>bit`` moves to the new version, and ``codes/current`` too when it
  pointed at the parent. The metric gate has nothing to decide (no existing row changes, the
  items are the parent's), so the gate record says so; the contracts are checked as for export.
- Item side: the published item codes, dequantized. Measured on Gowalla (``bench/foldin_eval.py``,
  BENCHMARKS.md issue 16): folding in over the run's float item outputs instead scored lower
  (91.1 % vs 93.8 % of the retrained users' Recall@20); the refinement rounds close the rest
  (4 rounds, the default: 97.4 % at 7.9 ms per user; 8 rounds: 101.8 % at 15.8 ms).
- ``num_users`` in the manifest counts every row of the version: the parent's users plus the
  new ones (``foldin.users_from_parent`` + ``foldin.new_users``), as ``users.parquet`` holds them.
- Nothing published yet, or no new user: nothing is written (the result says why).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from rich.console import Console

from flows.code_versions import (
    CODE_CONTRACTS,
    CODE_FILES,
    CodeVersion,
    code_values_wanted,
    contract_params,
    file_consistency_failures,
    read_code_table,
    read_code_version,
    side_bits,
    write_code_table,
)
from flows.config import FoldInConfig
from flows.errors import DataContractError
from flows.integrity import file_record
from flows.publish import publish_version, width_pointer
from flows.split_files import load_split
from flows.stages.export import published_version
from flows.workdir import WorkDir, atomic_dir, file_sha256, switch_pointer
from hqgnn.codes import CodeTable
from hqgnn.comparison import restrict
from hqgnn.export import code_table_arrow
from hqgnn.files import atomic_write_json
from hqgnn.fold_in import fold_in_codes
from hqgnn.interactions import InteractionMatrix
from hqgnn.warm_start import match_rows

METHOD = ("LightGCN one-hop fold-in: e_u = sum over the user's train items of e_i / sqrt(|N(u)| |N(i)|), "
          "e_i = the published item codes dequantized, N(i) = the item's train interactions in the snapshot; "
          "1 bit: then refine_rounds rounds of user-code refinement against the item codes (hqgnn.code_refinement); "
          "then the model's quantizer")


@dataclass(frozen=True)
class FoldInResult:
    """What `hqgnn foldin` did."""

    version: str | None  # the new version (None: nothing written)
    path: Path | None
    parent: str | None
    new_users: int
    skipped_users: int  # new users with no train item the published model knows
    reason: str
    seconds: float
    ms_per_user: float


def foldin(workdir: WorkDir, cfg: FoldInConfig, console: Console | None = None) -> FoldInResult:
    """Give codes to the users of ``cfg.snapshot`` that the published codes of ``cfg.bits`` lack."""
    console = console or Console(stderr=True)
    start = time.perf_counter()
    parent_dir = _parent(workdir, cfg.bits)
    if parent_dir is None:
        return _nothing(console, start, None, "no published codes yet (run `hqgnn export` first)")
    parent = read_code_version(parent_dir)
    split = load_split(workdir.split(cfg.snapshot))
    rows = match_rows(split.user_ids, parent.user_ids)
    new = torch.nonzero(rows < 0).flatten()
    if new.numel() == 0:
        return _nothing(console, start, parent_dir.name, f"every user of snapshot {split.snapshot} has a code in {parent_dir.name}")

    t0 = time.perf_counter()
    item_rows = match_rows(split.item_ids, parent.item_ids)  # tonight's item idx -> parent's row (-1: unknown)
    degree = _item_degrees(split.train, item_rows, len(parent.items))
    sub = _rows_on_known_items(split.train, new, item_rows, len(parent.items))
    has_items = sub.row_lengths() > 0
    n_new = int(has_items.sum())
    if n_new == 0:
        return _nothing(console, start, parent_dir.name, f"{new.numel()} new user(s), none with a train item the published codes know")
    refine = cfg.refine_rounds if parent.user_bits == 1 else 0  # refinement moves 1-bit user codes only
    with_items = torch.nonzero(has_items).flatten().numpy()
    # the item side the service ranks with, dequantized: all of it for refinement (a round ranks every
    # item), else only the new users' items (the one-hop reads nothing else; 256 MB less at 1 M items)
    cols = np.arange(len(parent.items)) if refine else np.unique(sub.indices.numpy())  # users without items add no entries
    item_codes = torch.from_numpy(parent.items.subset(cols).dequantize())
    added = fold_in_codes(restrict(sub, with_items, cols), item_codes, parent.user_bits, degree[torch.from_numpy(cols)], refine)
    added_ids = split.user_ids[new[has_items].numpy()]
    compute_s = time.perf_counter() - t0

    users = _concat(parent.users, added)
    user_ids = np.concatenate([parent.user_ids, added_ids.astype(object)])
    version = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-foldin-{parent.manifest.get('run', 'codes')}"
    final = workdir.codes / version
    with atomic_dir(final) as tmp:
        tmp.chmod(0o755)
        for kind, table, ids in (("user", users, user_ids), ("item", parent.items, parent.item_ids)):
            values = code_values_wanted(kind, parent.user_bits, parent.bits)  # as the export wrote them
            write_code_table(tmp / CODE_FILES[kind], code_table_arrow(kind, ids, table, with_values=values))
        _validate(tmp, parent, users, user_ids, workdir.data_docs)
        ms = 1000 * compute_s / n_new
        atomic_write_json(tmp / "manifest.json", _manifest(version, parent, split, tmp, n_new, new.numel() - n_new, ms, refine))
    current = workdir.codes / "current"
    if not current.exists() or current.resolve() == parent_dir.resolve():
        publish_version(workdir, final, parent.bits)  # current-<b>bit and current, journalled (flows.publish)
    else:  # codes/current serves another width: only this width's pointer moves
        switch_pointer(width_pointer(workdir, parent.bits), final)
    seconds = time.perf_counter() - start
    console.print(f"[bold]foldin[/]: published {version}: {n_new} new user(s) folded into {parent_dir.name} "
                  f"({new.numel() - n_new} without a known item), {ms:.3f} ms/user", highlight=False)
    return FoldInResult(version, final, parent_dir.name, n_new, int(new.numel() - n_new), "published", seconds, ms)


def _parent(workdir: WorkDir, bits: int | None) -> Path | None:
    if bits is not None:
        return published_version(workdir, bits)
    current = workdir.codes / "current"
    return current.resolve() if current.is_symlink() and (current / "manifest.json").is_file() else None


def _nothing(console: Console, start: float, parent: str | None, reason: str) -> FoldInResult:
    console.print(f"[bold]foldin[/]: nothing to do: {reason}", highlight=False)
    return FoldInResult(None, None, parent, 0, 0, reason, time.perf_counter() - start, float("nan"))


def _item_degrees(train: InteractionMatrix, item_rows: torch.Tensor, n_parent_items: int) -> torch.Tensor:
    """float32 ``[n_parent_items]``: train interactions of each published item in the snapshot (0 if absent)."""
    counts = torch.bincount(train.indices, minlength=train.num_items).float()
    out = torch.zeros(n_parent_items)
    known = item_rows >= 0
    out[item_rows[known]] = counts[known]
    return out


def _rows_on_known_items(train: InteractionMatrix, users: torch.Tensor, item_rows: torch.Tensor, n_parent_items: int) -> InteractionMatrix:
    """``[len(users), n_parent_items]``: the train items of ``users``, as rows of the published item table."""
    starts, ends = train.indptr[users], train.indptr[users + 1]
    lengths = ends - starts
    owner = torch.repeat_interleave(torch.arange(users.numel()), lengths)
    offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    cols = item_rows[train.indices[torch.repeat_interleave(starts, lengths) + offsets]]
    keep = cols >= 0
    return InteractionMatrix.from_pairs(owner[keep], cols[keep], users.numel(), n_parent_items)


def _concat(a: CodeTable, b: CodeTable) -> CodeTable:
    if (a.bits, a.dim) != (b.bits, b.dim):
        raise ValueError(f"cannot append {b.bits}-bit dim-{b.dim} codes to {a.bits}-bit dim-{a.dim} codes")
    packed, scale = np.concatenate([a.packed, b.packed]), np.concatenate([a.scale, b.scale])
    return CodeTable.from_packed(packed, scale, a.bits, a.dim)  # packed-only: unpacked on demand


def _validate(folder: Path, parent: CodeVersion, users: CodeTable, user_ids: np.ndarray, docs: Path | None) -> None:
    """The code contracts, the id invariants, and the parent's rows unchanged; raises DataContractError."""
    from flows.contracts import validate

    bits, dim = side_bits(parent.manifest), parent.users.dim
    for kind, ids, table in (("user", user_ids, users), ("item", parent.item_ids, parent.items)):
        path = folder / CODE_FILES[kind]
        validate(CODE_CONTRACTS[kind], path, contract_params(kind, len(ids), bits[kind], dim), docs)
        failures = file_consistency_failures(path, kind, table, ids)
        if failures:
            raise DataContractError(CODE_CONTRACTS[kind], failures)
    for kind, old in (("user", parent.users), ("item", parent.items)):
        back, _ = read_code_table(folder / CODE_FILES[kind], kind, bits[kind], dim)
        n = len(old)
        if not (np.array_equal(back.packed[:n], old.packed) and np.array_equal(back.scale[:n], old.scale)):
            raise DataContractError(CODE_CONTRACTS[kind], [f"{CODE_FILES[kind]}: the parent's first {n} rows changed in the fold-in version"])


def _manifest(version: str, parent: CodeVersion, split: Any, folder: Path, n_new: int, skipped: int, ms: float,
              refine_rounds: int) -> dict[str, Any]:
    pm = parent.manifest
    keep = ("run", "model", "bits", "user_bits", "dim", "estimator", "code_bytes", "ranking")
    return {
        **{k: pm[k] for k in keep if k in pm},
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "num_users": len(parent.users) + n_new,
        "num_items": len(parent.items),
        "snapshot": split.snapshot,  # where the new users' interactions (and recommend's seen items) come from
        "split_dir": str(split.path),
        "snapshot_hashes": {"train.parquet": file_sha256(split.path / "train.parquet"), "users.parquet": file_sha256(split.path / "users.parquet")},
        "files": {name: file_record(folder / name) for name in CODE_FILES.values()},
        "metrics": {"valid_codes": pm.get("metrics", {}).get("valid_codes", {}), "note": f"the parent's ({parent.path.name}); its rows are unchanged"},
        "foldin": {
            "parent_version": parent.path.name, "parent_snapshot": pm.get("snapshot"), "users_from_parent": len(parent.users),
            "new_users": n_new, "skipped_users": skipped, "method": METHOD, "refine_rounds": refine_rounds, "ms_per_user": ms,
            "new_user_ids_sample": [str(x) for x in pq.read_table(folder / CODE_FILES["user"], columns=["user_id"])
                                    .column("user_id").to_pylist()[len(parent.users):][:5]],
        },
        "gate": {
            "passed": True, "reason": f"fold-in of {n_new} new user(s) into {parent.path.name}: every parent row unchanged (verified), contracts pass",
            "metric": None, "value": None, "compared_to": parent.path.name, "compared_value": None,
            "split": {"snapshot": split.snapshot, "split_dir": str(split.path)}, "force": False,
        },
    }

