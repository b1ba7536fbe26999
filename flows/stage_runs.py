"""What every stage flow shares: skipping a stage whose inputs did not change, and retrying
transient I/O errors. Plain Python, no Prefect: the stage flows call it, one line each.

**Skipping.** A stage's key is the SHA-256 of its name, config and the content hashes of what it
reads (raw files, the split snapshot's manifest, the run's config and summary). The result of a
run is pickled under ``<workdir>/.cache/stages/<stage>/<key>.pkl`` (written atomically; it
vanishes with the work directory it describes). Same key again: the stored result is returned
and the stage function is not called. ``force=True`` reruns and overwrites.

**Retries.** Only OS-level I/O errors and a DuckDB file held by another process are worth a
retry (:func:`is_transient`); bad input, a failed contract or a refused publish gate fail at once
with their own message.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from pydantic import BaseModel

import hqgnn
from flows.errors import HqgnnError
from flows.workdir import WorkDir, file_sha256
from hqgnn.files import atomic_write_bytes

T = TypeVar("T")
CACHE_DIR = Path(".cache") / "stages"
IO_RETRIES = 2
IO_RETRY_DELAY_S = 2.0
# OS errors that a retry cannot fix: the file is not there, or we may not read it.
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


@dataclass(frozen=True)
class StageOutcome:
    """What one stage flow did. ``result`` is the stage function's own result (paths, ids,
    hashes); ``skipped`` is true when its inputs were unchanged and the stored result served."""

    stage: str
    result: Any
    skipped: bool
    seconds: float

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "ran"


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: OS-level I/O errors and a DuckDB file held by another process.

    Never for hqgnn's own errors (bad input, contract, publish gate) or a missing/forbidden file.
    """
    if isinstance(exc, (HqgnnError, ValueError, *_PERMANENT_OS_ERRORS)):
        return False
    return isinstance(exc, OSError | duckdb.IOException)


def with_io_retries(fn: Callable[[], T], what: str, logger: logging.Logger | logging.LoggerAdapter[Any]) -> T:
    """``fn()``, retried up to :data:`IO_RETRIES` times after a transient error (:func:`is_transient`)."""
    for attempt in range(IO_RETRIES + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == IO_RETRIES or not is_transient(exc):
                raise
            logger.warning("%s: transient error (%s); retry %d of %d in %.0f s", what, exc, attempt + 1, IO_RETRIES, IO_RETRY_DELAY_S)
            time.sleep(IO_RETRY_DELAY_S)
    raise AssertionError("unreachable")


def stage_key(stage: str, workdir: WorkDir, cfg: BaseModel, inputs: dict[str, str]) -> str:
    """SHA-256 of what a stage's output depends on: its config, its inputs' content hashes, the
    work directory and hqgnn's version."""
    payload = {"stage": stage, "workdir": str(workdir.root), "config": cfg.model_dump(mode="json"),
               "inputs": inputs, "version": hqgnn.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def run_stage(
    stage: str, workdir: WorkDir, cfg: BaseModel, inputs: dict[str, str], fn: Callable[[], Any],
    force: bool, logger: logging.Logger | logging.LoggerAdapter[Any], retry: bool = False,
) -> StageOutcome:
    """``fn()`` unless a run with the same key (:func:`stage_key`) stored its result; ``retry``:
    transient I/O errors are retried (:func:`with_io_retries`)."""
    t0 = time.perf_counter()
    stored = workdir.root / CACHE_DIR / stage / f"{stage_key(stage, workdir, cfg, inputs)}.pkl"
    if not force and stored.is_file():
        with contextlib.suppress(Exception):  # an unreadable entry (older code, damaged) just reruns
            result = pickle.loads(stored.read_bytes())
            logger.info("%s: skipped, inputs unchanged (same content hashes and config); reusing %s. "
                        "Pass force=True (hqgnn run --force) to rerun.", stage, describe(result))
            return StageOutcome(stage, result, True, time.perf_counter() - t0)
    result = with_io_retries(fn, stage, logger) if retry else fn()
    atomic_write_bytes(stored, pickle.dumps(result))
    return StageOutcome(stage, result, False, time.perf_counter() - t0)


def describe(result: Any) -> str:
    """A short human description of a stage result: its identifying fields."""
    for name in ("snapshot", "run", "version", "batch_ids", "path"):
        value = getattr(result, name, None)
        if isinstance(value, tuple | list):
            value = ", ".join(map(str, value)) or None
        if value is not None:
            return f"{name} {value}"
    return type(result).__name__


def dir_hashes(folder: Path, names: tuple[str, ...] = ("manifest.json", "config.json", "summary.json")) -> dict[str, str]:
    """Content hashes of the named files of an output folder (a manifest records the hashes of
    everything else; a run's config and summary change whenever it is trained), or of every
    top-level file when none of them exists."""
    picked = [folder / n for n in names if (folder / n).is_file()]
    if not picked:
        picked = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return {p.name: file_sha256(p) for p in picked}


def hash_files(files: tuple[str, ...]) -> dict[str, str]:
    """SHA-256 of each file's bytes, keyed by path (the key of ingestion)."""
    return {f: file_sha256(Path(f)) for f in files}


def list_drop_folder(folder: str, pattern: str) -> tuple[str, ...]:
    """Files in ``folder`` (not recursive, hidden files skipped) whose name matches ``pattern``, sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"drop folder {root} does not exist")
    return tuple(
        str(p.resolve())
        for p in sorted(root.iterdir())
        if p.is_file() and not p.name.startswith(".") and fnmatch.fnmatch(p.name, pattern)
    )
