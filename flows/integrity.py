"""Published data proves itself: a reader checks a snapshot, run or code version against its
manifest before use, and every damaged file is reported by name with the way out.

- :func:`verify_split` — ``splits/<snapshot>/``: ``manifest.json`` readable with its keys, every
  file it lists present with its recorded SHA-256.
- :func:`verify_run` — ``models/<run>/``: ``config.json`` readable; a finished run (one with
  ``summary.json``) has checkpoints matching the sizes and hashes recorded there.
- :func:`verify_code_version` — ``codes/<version>/``: ``manifest.json`` readable with ``bits``,
  ``dim`` and ``files``; every code file present with its recorded SHA-256.

Each takes a path, returns the manifest (or summary) it checked, or raises :class:`InputError`
naming the file. Cost: the SHA-256 of each file is computed **once per process** and cached
under ``(path, inode, size, mtime_ns)``, so a rewritten file is hashed again and a long-lived
reader (``hqgnn serve``) pays once per version; sizes are compared first (free). At Gowalla size
a snapshot is ~10 MB of Parquet and a 1-bit code version ~1.5 MB: see BENCHMARKS.md
("Verified reads") for the measured cost.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from flows.errors import InputError
from flows.workdir import file_sha256

SPLIT_KEYS = ("snapshot", "num_users", "num_items", "files")
CODE_KEYS = ("version", "bits", "dim", "files")
_hash_cache: dict[tuple[str, int, int, int], str] = {}
_cache_guard = threading.Lock()


def cached_sha256(path: Path) -> str:
    """SHA-256 of ``path``, once per process per (inode, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_guard:
        hit = _hash_cache.get(key)
    if hit is None:
        hit = file_sha256(path)
        with _cache_guard:
            _hash_cache[key] = hit
    return hit


def clear_hash_cache() -> None:
    """Forget every cached hash (tests; ``hqgnn doctor`` re-hashes everything)."""
    with _cache_guard:
        _hash_cache.clear()


def read_manifest(path: Path, keys: tuple[str, ...], producer: str) -> dict[str, Any]:
    """A JSON object from ``path`` holding ``keys``; else an InputError naming the file and ``producer``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} is missing: the folder is incomplete; run `hqgnn doctor --repair`, or `{producer}` again") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not readable JSON ({e}): the file is damaged; run `hqgnn doctor --repair`, or `{producer}` again") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}: the file is damaged; run `hqgnn doctor --repair`")
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(f"{path} lacks {', '.join(map(repr, missing))}: the file is damaged or not written by `{producer}`; "
                         "run `hqgnn doctor --repair`")
    return data


def verify_files(folder: Path, files: Any, manifest_path: Path, producer: str) -> None:
    """Every ``{name: {"sha256": ..., "bytes"?: ...}}`` entry present in ``folder`` with that size and hash."""
    if not isinstance(files, dict) or not files:
        raise InputError(f"{manifest_path}: 'files' must map file names to their hashes; the manifest is damaged")
    for name, info in sorted(files.items()):
        path = folder / name
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            raise InputError(f"{manifest_path}: no sha256 recorded for {name}; the manifest is damaged")
        if not path.is_file():
            raise InputError(f"{path} is missing (listed in {manifest_path}): run `hqgnn doctor --repair`, or `{producer}` again")
        size = info.get("bytes")
        if isinstance(size, int) and path.stat().st_size != size:
            raise InputError(f"{path} is damaged: {path.stat().st_size} bytes, the manifest says {size}; run `hqgnn doctor --repair`")
        if cached_sha256(path) != info["sha256"]:
            raise InputError(f"{path} is damaged: its SHA-256 differs from the one in {manifest_path.name}; run `hqgnn doctor --repair`")


def verify_split(path: Path) -> dict[str, Any]:
    """Check ``splits/<snapshot>/`` against its manifest; returns the manifest (see module doc)."""
    path = Path(path)
    manifest = read_manifest(path / "manifest.json", SPLIT_KEYS, "hqgnn prepare")
    verify_files(path, manifest["files"], path / "manifest.json", "hqgnn prepare")
    return manifest


def verify_code_version(path: Path) -> dict[str, Any]:
    """Check ``codes/<version>/`` against its manifest; returns the manifest (see module doc)."""
    path = Path(path)
    manifest = read_manifest(path / "manifest.json", CODE_KEYS, "hqgnn export")
    for key in ("bits", "dim"):
        if not isinstance(manifest[key], int) or manifest[key] <= 0:
            raise InputError(f"{path / 'manifest.json'}: {key!r} must be a positive integer, got {manifest[key]!r}; the manifest is damaged")
    verify_files(path, manifest["files"], path / "manifest.json", "hqgnn export")
    return manifest


def verify_run(path: Path) -> dict[str, Any]:
    """Check ``models/<run>/``: its config, and for a finished run its checkpoints against the sizes
    and hashes recorded in ``summary.json``; returns the summary (``{}`` while it is unfinished)."""
    path = Path(path)
    read_manifest(path / "config.json", ("config", "snapshot", "split_dir", "model_args"), "hqgnn train")
    if not (path / "summary.json").exists():
        return {}
    summary = read_manifest(path / "summary.json", ("run", "status"), "hqgnn train")
    if "files" in summary:  # runs finished before checkpoints were hashed have none
        verify_files(path, summary["files"], path / "summary.json", "hqgnn train")
    return summary


def file_record(path: Path) -> dict[str, Any]:
    """``{"bytes": ..., "sha256": ...}`` of a file, as the manifests record it (and caches the hash)."""
    return {"bytes": os.path.getsize(path), "sha256": cached_sha256(path)}
