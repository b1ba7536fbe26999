"""Prefect's temporary API server dies with the process that started it (kill -9 included).

``hqgnn run`` without ``PREFECT_API_URL`` runs in Prefect's ephemeral mode: Prefect starts
``python -m uvicorn ... prefect.server.api.server:create_app`` as a child process
(``prefect.server.api.server.SubprocessASGIServer``) and stops it from an ``atexit`` hook, which
never runs when the parent is killed: the server (~220 MB) was reparented to init and lived on.

:func:`guard_ephemeral_server` makes Prefect start that child through this module instead:
``python -m flows.orphan_guard -m uvicorn ARGS...`` runs uvicorn in the same process with a
watchdog thread that sends the process SIGTERM (uvicorn's graceful shutdown) as soon as its
parent is gone (``os.getppid()`` changes), and SIGKILL 5 s later if it is still there. A parent
death signal (``PR_SET_PDEATHSIG``) would fire when the *thread* that forked exits, which in
Prefect may be a short-lived worker thread, so the watchdog polls instead (twice a second).
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import threading
import time
import types
from typing import Any

POLL_S = 0.5
GRACE_S = 5.0


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os.kill(os.getpid(), signal.SIGKILL)


def _guarded_popen(args: Any, *popen_args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` for Prefect's server module: ``python -m uvicorn`` runs under the guard."""
    if isinstance(args, list) and len(args) >= 3 and args[1:3] == ["-m", "uvicorn"]:
        args = [args[0], "-m", __name__, *args[1:]]
    return subprocess.Popen(args, *popen_args, **kwargs)


def guard_ephemeral_server() -> None:
    """Make Prefect's ephemeral server (if this process starts one) run under the guard. Idempotent;
    touches only the ``subprocess`` name inside ``prefect.server.api.server``."""
    from prefect.server.api import server

    if getattr(server.subprocess, "_hqgnn_guard", False):
        return
    shim = types.ModuleType("subprocess")
    shim.__dict__.update(vars(subprocess))
    shim.Popen = _guarded_popen  # type: ignore[attr-defined]
    shim._hqgnn_guard = True  # type: ignore[attr-defined]
    server.subprocess = shim


def main(argv: list[str]) -> None:
    """``python -m flows.orphan_guard -m MODULE ARGS...``: run MODULE as ``__main__`` under the watchdog."""
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: python -m flows.orphan_guard -m MODULE [ARGS...]")
    threading.Thread(target=_watch, args=(os.getppid(),), name="orphan-guard", daemon=True).start()
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
