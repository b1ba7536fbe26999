"""Code version folders (``codes/<version>/``): the Parquet files of the export format
(:mod:`hqgnn.export`) written and read back, a whole version read with its manifest, and the
check a version passes before it is served or rolled back to (:func:`check_code_version`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.errors import InputError
from flows.integrity import CODE_KEYS, read_manifest, verify_code_version
from hqgnn.bits import ALL_BITS
from hqgnn.codes import CodeTable, code_bytes
from hqgnn.export import code_table_from_arrow, consistency_failures

CODE_FILES = {"user": "users.parquet", "item": "items.parquet"}
CODE_CONTRACTS = {"user": "user_codes", "item": "item_codes"}


def write_code_table(path: Path, table: pa.Table) -> None:
    """Write one side's table (dictionary encoding on, so small code values are bit-packed)."""
    pq.write_table(table, path, compression="zstd", use_dictionary=True)


def code_values_wanted(kind: str, user_bits: int, item_bits: int) -> bool | None:
    """``with_values`` of :func:`hqgnn.export.code_table_arrow` for one side of a version: True for
    the items of a float-users version (their SQL inner product needs the signs as a list, also at
    1 bit), else None (the format's default: ``code_values`` for b >= 2)."""
    return True if kind == "item" and user_bits != item_bits else None


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

CODE_CONTRACTS = {"user": "user_codes", "item": "item_codes"}


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
        """The version's width: its item codes' (a ``float_users`` version's users are 32 bits)."""
        return self.items.bits

    @property
    def user_bits(self) -> int:
        """The users' width: ``bits``, or 32 for a ``float_users`` version."""
        return self.users.bits


def read_code_version(path: Path) -> CodeVersion:
    """Read ``codes/<version>/`` (manifest.json, users.parquet, items.parquet)."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise InputError(f"{path} has no manifest.json: not a code version written by `hqgnn export`")
    manifest = verify_code_version(path)  # sizes and hashes against the manifest, before use
    bits, dim = side_bits(manifest), int(manifest["dim"])
    users, user_ids = read_code_table(path / CODE_FILES["user"], "user", bits["user"], dim)
    items, item_ids = read_code_table(path / CODE_FILES["item"], "item", bits["item"], dim)
    return CodeVersion(path, manifest, users, items, user_ids, item_ids)


def side_bits(manifest: dict[str, Any]) -> dict[str, int]:
    """Width of each side of a version, ``{"user": ..., "item": ...}``: the manifest's ``bits``
    for both, except the users of a ``float_users`` version (``user_bits`` 32; versions written
    before it existed have no ``user_bits``)."""
    bits = int(manifest["bits"])
    return {"user": int(manifest.get("user_bits", bits)), "item": bits}


def contract_params(kind: str, n: int, bits: int, dim: int) -> dict[str, Any]:
    """Parameters of the ``user_codes`` / ``item_codes`` contracts for ``n`` rows of ``bits`` x ``dim`` codes."""
    return {f"num_{kind}s": n, "bits": bits, "dim": dim, "code_bytes": code_bytes(bits, dim), "known_bits": list(ALL_BITS)}


def version_manifest(path: Path) -> dict[str, Any]:
    """``<path>/manifest.json`` of a code version (an InputError naming the file when it is not one)."""
    return read_manifest(Path(path) / "manifest.json", CODE_KEYS, "hqgnn export")


def check_code_version(path: Path, contracts: bool = True, docs: Path | None = None) -> dict[str, Any]:
    """Check ``codes/<version>/`` before serving or rolling back to it; returns its manifest.

    Its files against the manifest (:func:`flows.integrity.verify_code_version`: sizes and SHA-256,
    so a truncated copy or a file changed after export is caught) and, with ``contracts``, the
    ``user_codes`` / ``item_codes`` data contracts on the Parquet files, as ``hqgnn export`` checks
    them. Raises InputError (a failed contract: DataContractError) naming the file.
    """
    from flows.contracts import validate  # GX: imported only when a version is checked

    manifest = verify_code_version(path)
    if contracts:
        for kind, name in CODE_FILES.items():
            count = manifest.get(f"num_{kind}s")
            n = count if isinstance(count, int) else pq.read_metadata(Path(path) / name).num_rows
            validate(CODE_CONTRACTS[kind], Path(path) / name, contract_params(kind, n, side_bits(manifest)[kind], int(manifest["dim"])), docs)
    return manifest
