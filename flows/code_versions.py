"""Code version folders (``codes/<version>/``): the Parquet files of the export format
(:mod:`hqgnn.export`) written and read back, and a whole version read with its manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.errors import InputError
from flows.integrity import verify_code_version
from hqgnn.codes import CodeTable
from hqgnn.export import code_table_from_arrow, consistency_failures

CODE_FILES = {"user": "users.parquet", "item": "items.parquet"}


def write_code_table(path: Path, table: pa.Table) -> None:
    """Write one side's table (dictionary encoding on, so small code values are bit-packed)."""
    pq.write_table(table, path, compression="zstd", use_dictionary=True)


def read_code_table(path: Path, kind: str, bits: int, dim: int) -> tuple[CodeTable, np.ndarray]:
    """Read ``users.parquet``/``items.parquet``: the codes and the original ids, by dense index."""
    try:
        t = pq.read_table(path, columns=[f"{kind}_idx", f"{kind}_id", "code", "scale"])
        return code_table_from_arrow(t, kind, bits, dim)
    except (OSError, pa.ArrowException, ValueError, KeyError) as e:
        raise InputError(f"{path}: cannot read the {kind} codes: {e}") from e


def file_consistency_failures(path: Path, kind: str, table: CodeTable, ids: np.ndarray) -> list[str]:
    """:func:`hqgnn.export.consistency_failures` of one written file, each failure naming it."""
    return [f"{path.name}: {f}" for f in consistency_failures(pq.read_table(path), kind, table, ids)]


@dataclass(frozen=True)
class CodeVersion:
    """One exported version read back: manifest, code tables and original ids by dense index."""

    path: Path
    manifest: dict[str, Any]
    users: CodeTable
    items: CodeTable
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def bits(self) -> int:
        return self.users.bits


def read_code_version(path: Path) -> CodeVersion:
    """Read ``codes/<version>/`` (manifest.json, users.parquet, items.parquet)."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise InputError(f"{path} has no manifest.json: not a code version written by `hqgnn export`")
    manifest = verify_code_version(path)  # sizes and hashes against the manifest, before use
    bits, dim = int(manifest["bits"]), int(manifest["dim"])
    users, user_ids = read_code_table(path / CODE_FILES["user"], "user", bits, dim)
    items, item_ids = read_code_table(path / CODE_FILES["item"], "item", bits, dim)
    return CodeVersion(path, manifest, users, items, user_ids, item_ids)
