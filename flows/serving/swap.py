"""Hot swap: watch ``codes/current``, load and verify a new version in the background, switch.

:class:`VersionHolder` keeps the served :class:`~flows.serving.version.LoadedVersion` in one
attribute. A request reads it once (``holder.current``) and uses only that object, so replacing
the reference (a single atomic store under the GIL) switches *between* requests: requests in
flight finish on the old version, which is freed when the last of them drops it.

:class:`Watcher` is a daemon thread that polls the target of the ``codes/current`` symlink
(``os.readlink``, every ``poll_s`` seconds: one system call, no inotify dependency). When the
target changes it loads and verifies the new version beside the old one; on success it swaps,
on failure the version is *refused*: logged, recorded (``holder.refused``, shown by ``GET
/version``) and not retried until ``current`` moves again, while the old version keeps serving.
Each uvicorn worker process runs its own watcher.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flows.serving.version import LoadedVersion, release_freed_memory

log = logging.getLogger("hqgnn.serve")


@dataclass(frozen=True)
class Refusal:
    """A version the service would not serve, and why."""

    version: str
    reason: str
    at: str

    def describe(self) -> dict[str, str]:
        return {"version": self.version, "reason": self.reason, "at": self.at}


class VersionHolder:
    """The served version (``current``, None until one loads), the last refusal, swap counters."""

    def __init__(self) -> None:
        self.current: LoadedVersion | None = None
        self.refused: Refusal | None = None
        self.swaps = 0
        self.on_change: list[Callable[[LoadedVersion, bool], None]] = []  # (new, replaced one)
        self.on_refuse: list[Callable[[Refusal], None]] = []

    def swap(self, new: LoadedVersion) -> None:
        """Serve ``new`` from the next request on (one reference store)."""
        old = self.current
        self.current = new
        self.swaps += old is not None
        for hook in self.on_change:
            hook(new, old is not None)
        log.info("serving code version %s (%d bits, %d items)%s", new.name, new.bits, len(new.item_ids),
                 f", was {old.name}" if old is not None else "")

    def refuse(self, version: str, reason: str) -> None:
        self.refused = Refusal(version, reason, datetime.now(UTC).isoformat(timespec="seconds"))
        for hook in self.on_refuse:
            hook(self.refused)
        log.error("refused code version %s: %s; still serving %s", version, reason,
                  self.current.name if self.current is not None else "nothing")


def pointer_target(pointer: Path) -> Path | None:
    """Where the ``codes/current`` symlink points (absolute), or None when it does not exist."""
    try:
        return (pointer.parent / os.readlink(pointer)).resolve()
    except (FileNotFoundError, OSError):
        return None


class Watcher:
    """Polls ``pointer`` and swaps ``holder`` to each new target that ``load`` accepts.

    ``load(path) -> LoadedVersion`` must raise for a version that may not be served (its
    message becomes the refusal's reason).
    """

    def __init__(self, pointer: Path, holder: VersionHolder, load: Callable[[Path], LoadedVersion], poll_s: float = 1.0) -> None:
        self.pointer, self.holder, self.load, self.poll_s = pointer, holder, load, poll_s
        self._seen: Path | None = None  # the last target acted on (served or refused)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """One poll: load the new target when ``current`` moved (blocking; the thread calls it)."""
        target = pointer_target(self.pointer)
        if target is None or target == self._seen:
            return
        self._seen = target
        start = time.perf_counter()
        try:
            new = self.load(target)
        except Exception as e:  # any failure refuses the version; the old one keeps serving
            self.holder.refuse(target.name, " ".join(str(e).split()) or type(e).__name__)  # one line
            return
        self.holder.swap(new)
        release_freed_memory()  # the old version, once its last request finished
        log.info("loaded and verified %s in %.2fs", new.name, time.perf_counter() - start)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hqgnn-version-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # never let the watcher die: log, keep polling
                log.exception("version watcher: unexpected error; still serving the last good version")
            self._stop.wait(self.poll_s)
