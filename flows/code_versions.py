"""Reading a published code version folder (``codes/<version>/``) back into code tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flows.errors import InputError
from flows.integrity import verify_code_version
from hqgnn.codes import CodeTable
from hqgnn.export import CODE_FILES, read_code_table


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
