"""Run ``hqgnn`` with a fault planted: ``HQGNN_FAULT=<kind>:<arg> python -m fault_inject <hqgnn args>``.

The process SIGKILLs itself (no cleanup, no atexit, no finally: what ``kill -9`` or a power cut
does) at the planted moment:

- ``delay:SECONDS`` — that long after the heavy imports (a seeded random moment inside the stage);
- ``call:MODULE:QUALNAME:N`` — on entering the N-th call of a function (``hqgnn.trainer:Trainer.step:5``
  is mid-epoch);
- ``replace:NAME:N`` — just before the N-th ``os.replace`` onto a file named NAME (``current`` is
  between export's two pointer switches);
- ``torn:SUBSTRING:N`` — at the N-th ``fsync`` of a file whose path holds SUBSTRING, after cutting it
  to half its size (a checkpoint torn mid-write).

``HQGNN_FAULT_CLOCK=FILE`` records the seconds from the planted moment's clock start to a normal
exit, so a test can draw delays inside a stage's real duration. Used by ``tests/code/test_faults.py``
and ``bench/fault_injection.py``; never imported by hqgnn itself.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _nth(n: int, match: Callable[..., bool]) -> Callable[..., bool]:
    seen = [0]

    def hit(*args: Any) -> bool:
        if match(*args):
            seen[0] += 1
            return seen[0] == n
        return False

    return hit


def install(spec: str) -> None:
    """Plant the fault ``spec`` (see module doc) in this process."""
    kind, _, arg = spec.partition(":")
    if kind == "delay":
        t = threading.Timer(float(arg), _die)
        t.daemon = True
        t.start()
    elif kind == "call":
        module, qualname, n = arg.split(":")
        owner: Any = importlib.import_module(module)
        *path, name = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name)
        hit = _nth(int(n), lambda *a: True)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if hit():
                _die()
            return original(*args, **kwargs)

        setattr(owner, name, wrapper)
    elif kind == "replace":
        name, n = arg.rsplit(":", 1)
        real_replace = os.replace
        hit = _nth(int(n), lambda src, dst: os.path.basename(os.fspath(dst)) == name)

        def replace(src: Any, dst: Any, *a: Any, **k: Any) -> None:
            if hit(src, dst):
                _die()
            real_replace(src, dst, *a, **k)

        os.replace = replace  # type: ignore[assignment]
    elif kind == "torn":
        sub, n = arg.rsplit(":", 1)
        real_fsync = os.fsync
        hit = _nth(int(n), lambda fd: sub in os.readlink(f"/proc/self/fd/{fd}"))

        def fsync(fd: int) -> None:
            if hit(fd):
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                _die()
            real_fsync(fd)

        os.fsync = fsync  # type: ignore[assignment]
    elif kind != "none":
        raise SystemExit(f"HQGNN_FAULT: unknown kind {kind!r}")


def main() -> None:
    import duckdb  # noqa: F401 - the heavy imports come first: delays count from the stage's start
    import pyarrow.parquet  # noqa: F401
    import torch  # noqa: F401

    import flows.cli

    clock = os.environ.get("HQGNN_FAULT_CLOCK")
    start = time.perf_counter()
    if clock:
        atexit.register(lambda: Path(clock).write_text(f"{time.perf_counter() - start:.3f}\n"))
    install(os.environ.get("HQGNN_FAULT", "none:"))
    sys.argv = ["hqgnn", *sys.argv[1:]]
    flows.cli.main()


if __name__ == "__main__":
    main()
