"""One writer per work directory: ``<workdir>/.hqgnn.lock``, an OS file lock (``filelock``, flock(2)).

Every command and flow that writes the work directory holds it for its whole run::

    with workdir_lock(wd, "export", wait=wait):
        export(wd, cfg)

- **A second writer fails at once** with :class:`WorkdirLockedError`, one line naming the holder
  (command, pid, host, start time, written into the lock file by the holder), or waits up to
  ``wait`` seconds (``math.inf``: until it is free).
- **No stale locks**: the kernel drops an flock when its process dies (kill -9 included); the
  holder line left in the file by a killed process is overwritten by the next holder.
- **Re-entrant per process**: ``hqgnn run`` holds the lock and calls the stage flows and stage
  functions in the same process; a nested ``workdir_lock`` on the same directory only counts.
  Worker processes started by a holder (torchrun ranks of ``train --nproc``, the Dask workers of
  ``sweep``) never take it: their parent holds it for them.
- **Readers never take it** (``recommend``, the SQL queries, serving): they read published,
  immutable version folders through atomically switched pointers.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from flows.errors import HqgnnError
from flows.workdir import WorkDir

LOCK_NAME = ".hqgnn.lock"


class WorkdirLockedError(HqgnnError):
    """Another process holds the work directory's lock."""


@dataclass
class _Held:
    lock: FileLock
    command: str
    depth: int


_held: dict[Path, _Held] = {}  # resolved work-directory root -> this process's hold
_guard = threading.Lock()


def lock_path(workdir: WorkDir | Path) -> Path:
    """``<workdir>/.hqgnn.lock``."""
    root = workdir.root if isinstance(workdir, WorkDir) else Path(workdir)
    return root / LOCK_NAME


def holder(workdir: WorkDir | Path) -> dict[str, object] | None:
    """What the lock file says about its (last) holder: command, pid, host, started; None if unreadable.

    The file is rewritten by every holder; after a killed holder it describes that dead process,
    so this is meaningful only while the lock is actually held."""
    try:
        data = json.loads(lock_path(workdir).read_text() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(info: dict[str, object] | None) -> str:
    """``hqgnn train (pid 4242 on host-a, since 2026-01-02T03:04:05Z)`` or ``an unknown process``."""
    if not info:
        return "another process (no holder recorded yet)"
    return f"`hqgnn {info.get('command', '?')}` (pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('started', '?')})"


def held_here(workdir: WorkDir | Path) -> bool:
    """True when this process holds the lock of ``workdir``."""
    root = (workdir.root if isinstance(workdir, WorkDir) else Path(workdir)).resolve()
    return root in _held


@contextmanager
def workdir_lock(workdir: WorkDir | Path, command: str, wait: float | None = None) -> Iterator[None]:
    """Hold the work directory's lock for the ``with`` block (see module doc).

    ``wait``: ``None`` or 0 fails at once when another process holds it; ``N`` waits up to N
    seconds; ``math.inf`` waits until it is free. Raises :class:`WorkdirLockedError` naming the
    holder and the way out. Re-entrant within one process.
    """
    root_given = workdir.root if isinstance(workdir, WorkDir) else Path(workdir)
    root_given.mkdir(parents=True, exist_ok=True)
    root = root_given.resolve()
    with _guard:
        mine = _held.get(root)
        if mine is not None:
            mine.depth += 1
    if mine is not None:
        try:
            yield
        finally:
            with _guard:
                mine.depth -= 1
        return

    record = json.dumps({
        "command": command, "pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }).encode()

    def write_holder(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)

    timeout = -1.0 if wait is not None and math.isinf(wait) else float(wait or 0)
    lock = FileLock(root / LOCK_NAME, timeout=timeout, thread_local=False, poll_interval=0.2, on_acquired=write_holder)
    try:
        lock.acquire()
    except Timeout:
        who = describe_holder(holder(root))
        waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
        raise WorkdirLockedError(
            f"work directory {root} is in use by {who}{waited}: wait for it to finish, "
            f"or pass --wait [SECONDS] to queue behind it (lock file {root / LOCK_NAME})"
        ) from None
    with _guard:
        _held[root] = _Held(lock, command, 1)
    try:
        yield
    finally:
        with _guard:
            del _held[root]
        lock.release()

