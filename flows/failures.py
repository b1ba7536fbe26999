"""Every expected failure as one line naming the file and the next step (the CLI's error boundary).

:func:`explain` turns an exception into that line: hqgnn's own errors (bad input, a failed
contract, the publish gate, the work-directory lock, a damaged file) already say it; OS errors
(no space left, permission denied, a missing file), DuckDB's (the warehouse open elsewhere, a
damaged database file) and Arrow's (an unreadable Parquet file) get the file and the way out
added here. Anything else is a bug: one line that says so and how to see the traceback.
"""

from __future__ import annotations

import errno

from flows.errors import DataContractError, HqgnnError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)
DEBRIS = "the last good outputs are untouched; `hqgnn doctor --repair` removes what the failed command left"


def explain(e: BaseException) -> str:
    """One line (a contract failure keeps its list of failed expectations) describing ``e`` and what to do."""
    if isinstance(e, DataContractError):
        return str(e)
    if isinstance(e, HqgnnError):
        return _first_line(e)
    os_error = None if isinstance(e, ValueError) else _os_error(e)  # a ValueError already names its file
    if os_error is not None:
        return _explain_os(os_error)
    text = _first_line(e)
    if "No space left on device" in str(e):
        return f"no space left on device ({text}): free space on the work directory's disk, then rerun the same command; {DEBRIS}"
    module = type(e).__module__ or ""
    if module.startswith("duckdb") or module.startswith("_duckdb"):
        return _explain_duckdb(e, text)
    if isinstance(e, ValueError):  # our boundary errors (and Arrow's ArrowInvalid) name what was wrong
        return text
    return f"unexpected {type(e).__name__}: {text} -- a bug: rerun with --debug for the traceback and report it"


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    lines = text.splitlines()
    return lines[0] + (" ..." if len(lines) > 1 else "")


def _os_error(e: BaseException) -> OSError | None:
    """``e`` or the first OSError in its cause/context chain (a library may wrap one)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _explain_os(e: OSError) -> str:
    where = e.filename if e.filename is not None else "?"
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}"
    reason = e.strerror or str(e)
    if e.errno in NO_SPACE:
        return (f"{reason}: {where}: free space on that disk (or move the work directory), then rerun the same command; "
                f"{DEBRIS}")
    if e.errno in NOT_ALLOWED:
        return (f"{reason}: {where}: the work directory (or this file) is not writable by this user: "
                "check its owner and mode with `ls -l`, or run as the work directory's owner")
    if e.errno == errno.ENOENT:
        return f"{reason}: {where}" if where != "?" else _first_line(e)
    return f"{reason}: {where} (errno {e.errno}): check the disk and the file, then rerun; {DEBRIS}"


def _explain_duckdb(e: BaseException, text: str) -> str:
    msg = str(e)
    if "lock" in msg.lower() and ("Conflicting lock" in msg or "Could not set lock" in msg):
        return (f"the warehouse is open in another process ({text}): close that process "
                "(a duckdb shell, a notebook), or let it finish, then rerun")
    if "not a valid DuckDB database file" in msg or "Corrupt" in msg or "corrupt" in msg:
        return f"the warehouse file is damaged ({text}): restore warehouse.duckdb from a backup, or re-ingest into a new work directory"
    return f"warehouse error: {type(e).__name__}: {text}"
