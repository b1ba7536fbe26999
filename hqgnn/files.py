"""Atomic file writes (temporary sibling, fsync, rename(2)): a reader never sees half a file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

_UMASK: int | None = None


def file_mode() -> int:
    """The mode ``open()`` would give a new file: ``0o666`` less the process umask (read once)."""
    global _UMASK
    if _UMASK is None:
        mask = os.umask(0o022)  # os.umask can only be read by setting it; restored at once
        os.umask(mask)
        _UMASK = mask
    return 0o666 & ~_UMASK


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and rename(2). The file gets the
    mode a plain ``open()`` would (umask honoured; mkstemp alone makes it 0600, unreadable by
    other accounts that read the Parquet files beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a failed write(2) names no file: name ours
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON (sorted keys, indented, paths and tuples as plain values) written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())
