"""The DuckDB warehouse: one connection per stage run, and one runner for every ``sql/<stage>.sql``.

SQL files hold ``$named`` parameters; :func:`run_sql` binds exactly the ones a statement uses
(values are never formatted into SQL). A file may hold several statements separated by ``;`` at
the end of a line; each is executed in order with its own parameters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from flows.paths import sql_dir

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_COMMENT = re.compile(r"--[^\n]*")
_STATEMENT_END = re.compile(r";\s*(?:\n|$)")


def default_threads() -> int:
    """DuckDB threads: ``HQGNN_DUCKDB_THREADS`` or every core."""
    return int(os.environ.get("HQGNN_DUCKDB_THREADS", os.cpu_count() or 1))


def default_memory_limit() -> str:
    """DuckDB memory limit: ``HQGNN_DUCKDB_MEMORY`` or 2GB (the rest of a 4 GB budget is Arrow's)."""
    return os.environ.get("HQGNN_DUCKDB_MEMORY", "2GB")


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse file (created on first use), UTC session, bounded threads and memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        con.execute("set TimeZone = 'UTC'")
        _set(con, "threads", str(default_threads()))
        _set(con, "memory_limit", default_memory_limit())
        _set(con, "temp_directory", str(path.parent / ".duckdb-tmp"))
        _set(con, "preserve_insertion_order", "false")
        yield con
    finally:
        con.close()


def _set(con: duckdb.DuckDBPyConnection, name: str, value: str) -> None:
    """``SET name = 'value'`` (DuckDB's SET takes no prepared parameters; names and values are ours)."""
    con.execute(f"set {name} = {_quote(value)}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_text(stage: str) -> str:
    """The text of ``sql/<stage>.sql``."""
    path = sql_dir() / f"{stage}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file for stage {stage!r}: {path}")
    return path.read_text()


def statements(text: str) -> list[str]:
    """Split a SQL file into statements (``;`` at a line end), dropping empty ones."""
    return [s.strip() for s in _STATEMENT_END.split(text) if _COMMENT.sub("", s).strip()]


def run_sql(con: duckdb.DuckDBPyConnection, stage: str, **params: Any) -> duckdb.DuckDBPyConnection:
    """Execute every statement of ``sql/<stage>.sql`` with its ``$named`` parameters.

    Raises ``ValueError`` when a statement needs a parameter that was not given, or a given
    parameter is used by no statement (a typo). Returns the connection (results of the last
    statement can be fetched from it).
    """
    stmts = statements(sql_text(stage))
    used: set[str] = set()
    for stmt in stmts:
        names = set(_PARAM.findall(_COMMENT.sub("", stmt)))
        missing = sorted(names - set(params))
        if missing:
            raise ValueError(f"sql/{stage}.sql needs parameter(s) {missing}")
        used |= names
        con.execute(stmt, {k: params[k] for k in names} if names else None)
    unused = sorted(set(params) - used)
    if unused:
        raise ValueError(f"sql/{stage}.sql does not use parameter(s) {unused}")
    return con


def query(con: duckdb.DuckDBPyConnection, stage: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """A one-statement SELECT file (``sql/<stage>.sql``) as a relation (``.df()``, ``.to_arrow_table()``)."""
    (stmt,) = statements(sql_text(stage))
    names = set(_PARAM.findall(_COMMENT.sub("", stmt)))
    if names != set(params):
        raise ValueError(f"sql/{stage}.sql uses parameters {sorted(names)}, got {sorted(params)}")
    return con.sql(stmt, params=params or None)
