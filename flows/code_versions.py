"""Reading a published code version folder (``codes/<version>/``) back into code tables, and
checking one before it is served or rolled back to (:func:`verify_code_version`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flows.errors import DataContractError, InputError
from flows.workdir import file_sha256
from hqgnn.codes import CodeTable, code_bytes
from hqgnn.export import CODE_FILES, read_code_table

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
        return self.users.bits


def read_code_version(path: Path) -> CodeVersion:
    """Read ``codes/<version>/`` (manifest.json, users.parquet, items.parquet)."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise InputError(f"{path} has no manifest.json: not a code version written by `hqgnn export`")
    manifest = json.loads(mpath.read_text())
    bits, dim = int(manifest["bits"]), int(manifest["dim"])
    users, user_ids = read_code_table(path / CODE_FILES["user"], "user", bits, dim)
    items, item_ids = read_code_table(path / CODE_FILES["item"], "item", bits, dim)
    return CodeVersion(path, manifest, users, items, user_ids, item_ids)


def read_manifest(path: Path) -> dict[str, Any]:
    """``<path>/manifest.json`` as a dict; InputError naming the file when missing or not JSON."""
    mpath = Path(path) / "manifest.json"
    if not mpath.is_file():
        raise InputError(f"{path} has no manifest.json: not a code version written by `hqgnn export`")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{mpath}: not a readable JSON manifest ({e}); re-export the version") from e
    if not isinstance(manifest, dict):
        raise InputError(f"{mpath}: expected a JSON object, got {type(manifest).__name__}; re-export the version")
    return manifest


def verify_code_version(path: Path, contracts: bool = True) -> None:
    """Check ``codes/<version>/`` before serving or rolling back to it; return, or raise.

    1. the manifest names ``bits``, ``dim``, ``num_users``, ``num_items`` and, under ``files``,
       a ``sha256`` (and, when recorded, a ``size`` in bytes) for each Parquet file;
    2. each file exists with that size and SHA-256 (a truncated copy or a file changed after
       export is caught here);
    3. ``contracts``: the ``user_codes`` / ``item_codes`` data contracts on the Parquet files
       (GX on DuckDB, as `hqgnn export` checks them).

    Raises InputError naming the file and what differs (DataContractError, an InputError too
    for the caller, lists the failed expectations).
    """
    path = Path(path)
    manifest = read_manifest(path)
    try:
        bits, dim = int(manifest["bits"]), int(manifest["dim"])
        counts = {"user": int(manifest["num_users"]), "item": int(manifest["num_items"])}
        files = manifest["files"]
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path / 'manifest.json'}: missing or malformed field {e}; re-export the version") from e
    for kind, name in CODE_FILES.items():
        fpath, want = path / name, files.get(name) if isinstance(files, dict) else None
        if not isinstance(want, dict) or "sha256" not in want:
            raise InputError(f"{path / 'manifest.json'}: no sha256 recorded for {name}; re-export the version")
        if not fpath.is_file():
            raise InputError(f"{fpath}: missing (the manifest lists it); copy the whole version folder again")
        size = fpath.stat().st_size
        if "size" in want and int(want["size"]) != size:
            raise InputError(f"{fpath}: {size} bytes, the manifest says {want['size']}: a partial copy? copy the version folder again")
        if file_sha256(fpath) != want["sha256"]:
            raise InputError(f"{fpath}: SHA-256 differs from the manifest: the file changed after export; re-export or copy it again")
        if contracts:
            _check_contract(fpath, kind, counts[kind], bits, dim)


class CodeContractError(InputError):
    """A code file of a version violates its data contract (the message lists every failure)."""


def _check_contract(fpath: Path, kind: str, n: int, bits: int, dim: int) -> None:
    from flows.contracts import validate  # GX: imported only when a version is checked

    params = {f"num_{kind}s": n, "bits": bits, "dim": dim, "code_bytes": code_bytes(bits, dim)}
    try:
        validate(CODE_CONTRACTS[kind], fpath, params)
    except DataContractError as e:
        raise CodeContractError(f"{fpath}: {e}") from e
